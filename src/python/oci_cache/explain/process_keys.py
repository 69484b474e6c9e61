"""One key for "the same process" that Pants' plugin and the daemon both compute.

    process_key(argv, env, output_files, output_directories)   # 'pk1:…' (SHA-256, hex)

Pants' workunit of a process carries its definition (argv, env, outputs, description)
but not its action digest; the Command Pants uploads carries the same argv (a
`./__pants_wrapper__` first under remote execution with append-only caches), the same
environment plus Pants' own `PANTS_CACHE_KEY_*` variables, and the sorted outputs.
Both sides drop those differences and hash the rest, so the daemon can attach each
description to its miss. Only the digest crosses the (loopback) wire: no value in clear.
Standard library only: the plugin runs it inside Pants.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Mapping, Optional, Sequence, Tuple

PANTS_WRAPPER = "./__pants_wrapper__"
PANTS_RESERVED_ENV_PREFIX = "PANTS_CACHE_KEY_"


def process_key(
    argv: Sequence[str],
    env: Iterable[Tuple[str, str]],
    output_files: Iterable[str] = (),
    output_directories: Iterable[str] = (),
) -> str:
    arguments = list(argv[1:]) if argv and argv[0] == PANTS_WRAPPER else list(argv)
    variables = sorted((str(n), str(v)) for n, v in env if not str(n).startswith(PANTS_RESERVED_ENV_PREFIX))
    document = [arguments, variables, sorted(map(str, output_files)), sorted(map(str, output_directories))]
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return "pk1:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def process_key_of_definition(definition: str) -> Optional[str]:
    """The key of a Pants process definition (the JSON of a `process` workunit's
    metadata["definition"]), or None when it does not look like one."""
    try:
        process = json.loads(definition)
        argv = process["argv"]
        env: Mapping[str, str] = process.get("env") or {}
        if not isinstance(argv, list) or not isinstance(env, dict):
            return None
        return process_key(
            [str(a) for a in argv],
            env.items(),
            _paths(process.get("output_files")),
            _paths(process.get("output_directories")),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _paths(value: object) -> Tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(str(p) for p in value)


__all__ = ["process_key", "process_key_of_definition"]
