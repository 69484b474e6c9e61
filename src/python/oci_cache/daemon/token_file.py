"""The daemon's bearer token: random, created once per daemon directory, mode 0600.

It stays the same across daemon restarts, so the headers the Pants plugin returns
(and with them pantsd's scheduler) stay the same from run to run.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import List

TOKEN_BYTES = 32


def ensure_token(path: Path) -> str:
    """The token in `path`, creating the file (0600) with a new random token if it is
    missing or empty. A token file readable by others is made private again."""
    path = Path(path)
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        token = _read(path)
        if token:
            return token
        # An empty file (a writer died before writing): replace it atomically.
        return _replace(path)
    try:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return token


def _read(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return path.read_text(encoding="ascii").strip()


def _replace(path: Path) -> str:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(str(temp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return token


__all__: List[str] = ["ensure_token"]
