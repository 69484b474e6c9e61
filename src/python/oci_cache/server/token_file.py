"""The daemon's bearer token file: read once at start (kept apart from the gRPC
interceptor so that reading it does not import grpc)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)


def read_token_file(path: Path) -> str:
    """The token in `path`, surrounding whitespace stripped; ValueError when empty. A file
    that group or others may read is used, with a warning (as ssh warns of a key file)."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        logger.warning(
            "token file %s is open to other users (mode %04o): anyone who can read it can use this "
            "cache; `chmod 600 %s`",
            path,
            mode,
            path,
        )
    return token


__all__ = ["read_token_file"]
