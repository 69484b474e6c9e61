"""What the daemon's Control service does, independent of the transport.

`DaemonControl` answers GetStatus, Export and Shutdown with the control.proto
messages; `control_service` (gRPC) and `control_http` (JSON over HTTP/1.1, for
clients without grpcio) are thin adapters over it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence

from oci_cache.export_report import ExportReport
from oci_cache.reapi import control_pb2
from oci_cache.server.activity import Activity
from oci_cache.server.export_runner import CoalescingExport
from oci_cache.store.metrics import StoreMetrics

if TYPE_CHECKING:  # the stack's modules are imported when serve opens it
    from oci_cache.cache_image.serving_stack import StackStatus


@dataclass
class DaemonIdentity:
    """What the daemon is: fixed once it listens (address and control_url are filled in then)."""

    state_dir: str
    version: str
    cache_from: Sequence[str] = ()
    cache_to: Sequence[str] = ()
    config_fingerprint: str = ""
    idle_timeout_seconds: float = 0.0  # 0: never
    address: str = ""
    control_url: str = ""
    pid: int = field(default_factory=os.getpid)
    started_monotonic: float = field(default_factory=time.monotonic)


class DaemonControl:
    def __init__(
        self,
        identity: DaemonIdentity,
        metrics: StoreMetrics,
        activity: Activity,
        exporter: Optional[CoalescingExport],
        request_shutdown: Callable[[bool], None],
        stack_status: Callable[[], "StackStatus"],
    ) -> None:
        self.identity = identity
        self._metrics = metrics
        self._activity = activity
        self._exporter = exporter
        self._request_shutdown = request_shutdown
        self._stack_status = stack_status

    def status(self) -> control_pb2.StatusResponse:
        identity = self.identity
        counters = self._metrics.snapshot()
        response = control_pb2.StatusResponse(
            address=identity.address,
            pid=identity.pid,
            state_dir=identity.state_dir,
            cache_from=list(identity.cache_from),
            cache_to=list(identity.cache_to),
            action_cache_hits=counters.action_cache_hits,
            action_cache_misses=counters.action_cache_misses,
            bytes_read=counters.bytes_read,
            bytes_written=counters.bytes_written,
            blobs_read=counters.blobs_read,
            blobs_written=counters.blobs_written,
            action_results_written=counters.action_results_written,
            uptime_seconds=time.monotonic() - identity.started_monotonic,
            version=identity.version,
            config_fingerprint=identity.config_fingerprint,
            idle_seconds=self._activity.idle_seconds(),
            idle_timeout_seconds=identity.idle_timeout_seconds,
            export_running=self._exporter is not None and self._exporter.running,
            exports_completed=self._exporter.completed if self._exporter is not None else 0,
            control_url=identity.control_url,
        )
        stack = self._stack_status()
        response.local_store_bytes = stack.local_store.bytes_used
        response.local_store_max_bytes = stack.local_store.max_bytes
        if stack.pending_export_entries is not None:
            response.pending_export_entries = stack.pending_export_entries
        for state in stack.imports:
            response.imports.add(
                entry=state.entry,
                manifest_digest=state.manifest_digest,
                problem=state.problem,
                missing=state.missing,
            )
        return response

    def export(self, request: control_pb2.ExportRequest) -> control_pb2.ExportResponse:
        """Blocks until the export is done (unless request.background)."""
        if self._exporter is None:
            return control_pb2.ExportResponse(nothing_to_export_to=True, ok=True)
        if request.background:
            self._exporter.start_in_background()
            return control_pb2.ExportResponse(started_in_background=True, ok=True)
        return export_response(self._exporter.run())

    def shutdown(self, request: control_pb2.ShutdownRequest) -> control_pb2.ShutdownResponse:
        self._request_shutdown(request.skip_export)
        return control_pb2.ShutdownResponse()


def export_response(report: ExportReport) -> control_pb2.ExportResponse:
    return control_pb2.ExportResponse(
        targets=[
            control_pb2.ExportTarget(
                entry=target.entry,
                ok=target.ok,
                message=target.message,
                entries=target.entries,
                bytes_uploaded=target.bytes_uploaded,
                layers_uploaded=target.layers_uploaded,
                layers_reused=target.layers_reused,
                manifest_digest=target.manifest_digest,
                ignored_error=target.ignored_error,
            )
            for target in report.targets
        ],
        seconds=report.seconds,
        ok=report.ok,
    )


__all__: List[str] = ["DaemonControl", "DaemonIdentity", "export_response"]
