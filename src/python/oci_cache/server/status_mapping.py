"""Turns every exception a handler raises into a deliberate gRPC status.

CacheError subclasses carry their own code. Anything else is a bug or an
environment problem: it is logged with its traceback and answered with a code a
client can act on (RESOURCE_EXHAUSTED when memory or disk ran out, UNAVAILABLE
otherwise, so that clients retry or build without the cache). No request ever
gets UNKNOWN or INTERNAL.

method_handlers applies it to every method; the hot path pays one try block.
"""

from __future__ import annotations

import errno
import logging
from typing import Tuple

import grpc

from oci_cache.errors import CacheError

logger = logging.getLogger(__name__)

_CODE_BY_NAME = {code.name: code for code in grpc.StatusCode}
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_MAX_DETAILS = 1000


def status_for_exception(error: BaseException, method: str = "") -> Tuple[grpc.StatusCode, str]:
    """The status code and message for `error`; logs unexpected errors with their traceback."""
    if isinstance(error, CacheError):
        code = _CODE_BY_NAME.get(error.grpc_code_name, grpc.StatusCode.UNAVAILABLE)
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            logger.error("%s failed: %s", method or "request", error, exc_info=error)
            code = grpc.StatusCode.UNAVAILABLE
        return code, _details(str(error) or type(error).__name__)
    if isinstance(error, MemoryError) or (isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS):
        logger.error("%s failed: out of resources: %s", method or "request", error)
        return grpc.StatusCode.RESOURCE_EXHAUSTED, _details(f"server out of resources: {error}")
    logger.error("%s failed unexpectedly", method or "request", exc_info=error)
    return grpc.StatusCode.UNAVAILABLE, _details(f"server error ({type(error).__name__}): {error}")


def _details(text: str) -> str:
    return text if len(text) <= _MAX_DETAILS else text[:_MAX_DETAILS] + "..."
