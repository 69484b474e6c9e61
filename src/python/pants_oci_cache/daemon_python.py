"""Which interpreter runs the daemon, and with which PYTHONPATH.

The plugin's own code runs in Pants' interpreter, which has none of the daemon's
dependencies (grpcio, protobuf, zstandard, urllib3) unless the plugin was installed
as a wheel through `[GLOBAL].plugins`. In order:

1. `[oci-cache] python`, when set;
2. Pants' own interpreter (`sys.executable`), when those dependencies are importable
   here (a `[GLOBAL].plugins` install): PYTHONPATH then lists the directories they
   were found in;
3. the interpreter named on the `#!` line of an `oci-cache` script on the PATH (of
   the environment Pants was started in): a virtualenv with pants-oci-cache installed.

In every case PYTHONPATH starts with the directory this plugin's `oci_cache` package
was loaded from, so that the daemon runs the same code as the plugin (an in-repo
`pythonpath` install runs the repository's copy).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

import oci_cache

DAEMON_DEPENDENCIES = ("grpc", "google.protobuf", "zstandard", "urllib3")


class NoDaemonPython(Exception):
    pass


def oci_cache_source_root() -> str:
    """The sys.path entry this process imported `oci_cache` from."""
    return str(Path(oci_cache.__file__).resolve().parent.parent)


def daemon_python(configured: str, env: Mapping[str, str]) -> Tuple[str, Tuple[str, ...]]:
    """(interpreter, PYTHONPATH entries) for the daemon; raises NoDaemonPython."""
    source_root = oci_cache_source_root()
    if configured:
        return os.path.expanduser(configured), (source_root,)
    here = _dependency_roots()
    if here is not None:
        return sys.executable, _unique((source_root, *here))
    script_python = _interpreter_of_script("oci-cache", env.get("PATH", ""))
    if script_python is not None:
        return script_python, (source_root,)
    raise NoDaemonPython(
        "no Python interpreter with the daemon's dependencies (grpcio, protobuf, zstandard, urllib3) was "
        "found: install the plugin with `[GLOBAL] plugins = [\"pants-oci-cache\"]` (which brings them "
        "into Pants' own interpreter), set `[oci-cache] python` to one (e.g. a virtualenv where "
        "`pip install pants-oci-cache` was run), or put such a virtualenv's `oci-cache` on the PATH "
        "(docs/pants.md, sections 2 and 3)"
    )


def _dependency_roots() -> Optional[Tuple[str, ...]]:
    """The sys.path entries the daemon's dependencies are importable from here, or None
    when one of them is not (looked up, not imported)."""
    roots: List[str] = []
    for name in DAEMON_DEPENDENCIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None or spec.origin is None:
            return None
        depth = len(name.split("."))
        origin = Path(spec.origin)
        # .../site-packages/google/protobuf/__init__.py -> .../site-packages
        root = origin.parents[depth] if origin.name.startswith("__init__.") else origin.parents[depth - 1]
        roots.append(str(root))
    return tuple(roots)


def _interpreter_of_script(name: str, path: str) -> Optional[str]:
    for directory in path.split(os.pathsep):
        if not directory:
            continue
        candidate = os.path.join(directory, name)
        if not os.access(candidate, os.X_OK):
            continue
        try:
            with open(candidate, "rb") as script:
                first_line = script.readline(4096)
        except OSError:
            continue
        if not first_line.startswith(b"#!"):
            continue
        words = first_line[2:].decode("utf-8", errors="replace").split()
        if words and "python" in os.path.basename(words[0]) and os.access(words[0], os.X_OK):
            return words[0]
    return None


def _unique(entries: Tuple[str, ...]) -> Tuple[str, ...]:
    seen: List[str] = []
    for entry in entries:
        if entry not in seen:
            seen.append(entry)
    return tuple(seen)


__all__: List[str] = ["DAEMON_DEPENDENCIES", "NoDaemonPython", "daemon_python", "oci_cache_source_root"]
