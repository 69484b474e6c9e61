"""Quiets grpc.aio's report of an answer to a call that had already ended.

When a client cancels a call (or its deadline passes, or grpc core refuses a
message over the receive limit) while the handler is still working, the handler's
answer cannot be sent, and grpc.aio logs an ERROR with a traceback:
`ExecuteBatchError raised in core by servicer method [...]`. The client already
has its status and the server is fine, so the record alarms readers of daemon.log
for nothing. This filter turns it into one DEBUG line of our own and counts it.
"""

from __future__ import annotations

import logging
import threading
from typing import List

GRPC_AIO_LOGGER = "grpc._cython.cygrpc"
_ENDED_CALL_MARKER = "ExecuteBatchError raised in core by servicer method"

logger = logging.getLogger(__name__)


class EndedCallLogFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.quieted = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        if _ENDED_CALL_MARKER not in message:
            return True
        with self._lock:
            self.quieted += 1
        logger.debug("a client ended a call before its answer could be sent (%s)", message)
        return False


_installed: List[EndedCallLogFilter] = []
_install_lock = threading.Lock()


def install_ended_call_log_filter() -> EndedCallLogFilter:
    """Adds the filter to grpc.aio's logger once per process; returns it."""
    with _install_lock:
        if not _installed:
            quiet = EndedCallLogFilter()
            logging.getLogger(GRPC_AIO_LOGGER).addFilter(quiet)
            _installed.append(quiet)
        return _installed[0]


__all__ = ["EndedCallLogFilter", "GRPC_AIO_LOGGER", "install_ended_call_log_filter"]
