"""`oci_cache.v1.Control` over gRPC: a thin adapter over DaemonControl.

Registered on the cache server's port through `ServerOptions.extra_handlers`, so
the bearer token (when the server has one) applies to it as to every other call.
GetStatus and Shutdown run on the event loop; Export waits on a small thread pool
of its own (an export can take minutes and must not hold a storage worker).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, List

import grpc

from oci_cache.reapi import control_pb2
from oci_cache.server.daemon_control import DaemonControl
from oci_cache.server.method_handlers import Dispatcher, Method, Runs, check_parsed, generic_handler

SERVICE_NAME = "oci_cache.v1.Control"
# Export calls wait here for the (coalesced) export; threads are created as needed.
EXPORT_WAITERS = 16


class ControlService:
    def __init__(self, control: DaemonControl) -> None:
        self._control = control
        self._executor = ThreadPoolExecutor(max_workers=EXPORT_WAITERS, thread_name_prefix="control")

    def get_status(self, request: Any) -> Any:
        check_parsed(request)
        return self._control.status()

    def export(self, request: Any) -> Any:
        check_parsed(request)
        return self._control.export(request)

    def shutdown(self, request: Any) -> Any:
        check_parsed(request)
        return self._control.shutdown(request)

    def handler(self) -> grpc.GenericRpcHandler:
        return generic_handler(
            SERVICE_NAME,
            [
                Method("GetStatus", self.get_status, control_pb2.GetStatusRequest, Runs.INLINE),
                Method("Export", self.export, control_pb2.ExportRequest, Runs.BLOCKING),
                Method("Shutdown", self.shutdown, control_pb2.ShutdownRequest, Runs.INLINE),
            ],
            Dispatcher(self._executor),
        )

    def close(self) -> None:
        """Stops the export waiters' pool (waiting exports finish on their own)."""
        self._executor.shutdown(wait=False)


__all__: List[str] = ["ControlService", "SERVICE_NAME"]
