"""Which interpreter runs the daemon, and with which PYTHONPATH.

The plugin's own code runs in Pants' interpreter, which has none of the daemon's
dependencies (grpcio, protobuf, zstandard, urllib3) unless the plugin was installed
as a wheel through `[GLOBAL].plugins`. In order:

1. `[oci-cache] python`, when set;
2. Pants' own interpreter (`sys.executable`: Python 3.9 for Pants 2.17-2.24, 3.11 for
   2.25-2.31, 3.14 for 2.32+), when those dependencies are importable here in versions
   the daemon works with (a `[GLOBAL].plugins` install): PYTHONPATH then lists the
   directories they were found in;
3. the interpreter named on the `#!` line of an `oci-cache` script on the PATH (of
   the environment Pants was started in): a virtualenv with pants-oci-cache installed.

In every case PYTHONPATH starts with the directory this plugin's `oci_cache` package
was loaded from, so that the daemon runs the same code as the plugin (an in-repo
`pythonpath` install runs the repository's copy).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import oci_cache

DAEMON_DEPENDENCIES = ("grpc", "google.protobuf", "zstandard", "urllib3")
# The versions the daemon works with (pyproject.toml): distribution -> (lowest, first too new).
# The generated gRPC code refuses a grpcio older than grpcio-tools 1.74.0 that made it, and a
# protobuf older than 6.31.1 or of another major version.
USABLE_VERSIONS: Dict[str, Tuple[Tuple[int, ...], Optional[Tuple[int, ...]]]] = {
    "grpcio": ((1, 74, 0), None),
    "protobuf": ((6, 31, 1), (7,)),
    "zstandard": ((0, 22), None),
    "urllib3": ((1, 26, 20), (3,)),
}


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
    unusable = unusable_versions() if here is not None else []
    if here is not None and not unusable:
        return sys.executable, _unique((source_root, *here))
    script_python = _interpreter_of_script("oci-cache", env.get("PATH", ""))
    if script_python is not None:
        return script_python, (source_root,)
    found_here = f" (Pants' own interpreter has {', '.join(unusable)})" if unusable else ""
    raise NoDaemonPython(
        "no Python interpreter with the daemon's dependencies (grpcio, protobuf, zstandard, urllib3) was "
        f"found{found_here}: install the plugin with `[GLOBAL] plugins = [\"pants-oci-cache\"]` (which brings "
        "them into Pants' own interpreter), set `[oci-cache] python` to one (e.g. a virtualenv where "
        "`pip install pants-oci-cache` was run), or put such a virtualenv's `oci-cache` on the PATH "
        "(docs/pants.md, sections 2 and 3)"
    )


def unusable_versions() -> List[str]:
    """The daemon's dependencies installed here in a version it does not work with, e.g.
    "grpcio 1.60.0 (needs >= 1.74.0)"; empty when all are usable (or not installed)."""
    found: List[str] = []
    for name, (lowest, too_new) in USABLE_VERSIONS.items():
        try:
            text = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        version = _release(text)
        if version < lowest:
            found.append(f"{name} {text} (needs >= {'.'.join(map(str, lowest))})")
        elif too_new is not None and version >= too_new:
            found.append(f"{name} {text} (needs < {'.'.join(map(str, too_new))})")
    return found


def _release(version: str) -> Tuple[int, ...]:
    """(1, 26, 20) from "1.26.20", "1.26.20.post1", "2.0.0rc1"."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else (0,)


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


__all__: List[str] = [
    "DAEMON_DEPENDENCIES",
    "USABLE_VERSIONS",
    "NoDaemonPython",
    "daemon_python",
    "oci_cache_source_root",
    "unusable_versions",
]
