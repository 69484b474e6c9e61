"""The daemon's control plane around the cache server, as `oci-cache serve` runs it.

    runtime = DaemonRuntime(identity, stack, stop_event)   # stack: cache_image.serving_stack
    server, port = build_server(runtime.blobs, runtime.action_cache, listen,
                                runtime.server_options(ServerOptions(bearer_token=token)))
    server.start()
    runtime.started(address)            # starts the HTTP control endpoint (control_http=True)
    reason = runtime.wait()             # signal, Shutdown call, or idle timeout
    runtime.stop(server)                # stop accepting, then export once

It counts what clients do (store.metrics), serves the Control service (gRPC on the
cache port and, with control_http, JSON over HTTP on a free loopback port), stamps
every call (server.activity) and
turns a Shutdown call or the idle timeout into the same stop as SIGTERM.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from oci_cache.export_report import ExportReport
from oci_cache.server.activity import Activity, ActivityInterceptor
from oci_cache.server.control_http import ControlHttpServer
from oci_cache.server.control_service import ControlService
from oci_cache.server.daemon_control import DaemonControl, DaemonIdentity
from oci_cache.server.export_runner import CoalescingExport, describe_failures
from oci_cache.server.grpc_server import CacheServer, ServerOptions
from oci_cache.store.metrics import MetricsActionCache, MetricsBlobStore, StoreMetrics

if TYPE_CHECKING:  # the stack's modules are imported when serve opens it
    from oci_cache.cache_image.opening_stack import OpeningStack
    from oci_cache.cache_image.serving_stack import ServingStack
    from oci_cache.explain.recorder import MissRecorder

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.5

REASON_SIGNAL = "signal"
REASON_SHUTDOWN = "Shutdown call"
REASON_IDLE = "idle timeout"


class DaemonRuntime:
    def __init__(
        self,
        identity: DaemonIdentity,
        stack: "ServingStack | OpeningStack",
        stop: threading.Event,
        *,
        bearer_token: Optional[str] = None,
        control_http: bool = False,
        miss_recorder: Optional["MissRecorder"] = None,
    ) -> None:
        self.identity = identity
        self.stack = stack
        self.metrics = StoreMetrics()
        self.blobs = MetricsBlobStore(stack.blobs, self.metrics)
        self.miss_recorder = miss_recorder
        action_cache = stack.action_cache
        if miss_recorder is not None:  # explain/recorder.py: every miss and upload of a run
            from oci_cache.explain.recorder import RecordingActionCache

            action_cache = RecordingActionCache(action_cache, miss_recorder)
        self.action_cache = MetricsActionCache(action_cache, self.metrics)
        self.activity = Activity()
        self.exporter = CoalescingExport(stack.export) if stack.can_export else None
        self._stop = stop
        self._reason: Optional[str] = None
        self._skip_final_export = False
        self.control = DaemonControl(
            identity,
            self.metrics,
            self.activity,
            self.exporter,
            self._request_shutdown,
            stack.status,
        )
        self._control_service = ControlService(self.control)
        self._http = (
            ControlHttpServer(self.control, self.activity, bearer_token, json_routes=_explain_routes(miss_recorder))
            if control_http
            else None
        )

    def server_options(self, options: ServerOptions) -> ServerOptions:
        """`options` plus the Control service and the activity interceptor."""
        options.extra_handlers = [*options.extra_handlers, self._control_service.handler()]
        options.extra_interceptors = [*options.extra_interceptors, ActivityInterceptor(self.activity)]
        return options

    def started(self, address: str) -> str:
        """Records the cache address and starts the HTTP control endpoint, if any; its URL ("" without)."""
        self.identity.address = address
        if self._http is not None:
            self.identity.control_url = self._http.start()
        self.activity.touch()
        return self.identity.control_url

    def wait(self) -> str:
        """Blocks until the daemon should stop; why."""
        idle_timeout = self.identity.idle_timeout_seconds
        while not self._stop.wait(POLL_SECONDS):
            if idle_timeout and self.activity.idle_seconds() >= idle_timeout and not self._export_running():
                self._reason = self._reason or REASON_IDLE
                self._stop.set()
        return self._reason or REASON_SIGNAL

    def stop(
        self, server: CacheServer, grace: float = STOP_GRACE_SECONDS, *, final_export: bool = True
    ) -> Optional[ExportReport]:
        """Stops accepting calls (running ones get `grace` seconds), then exports once
        (unless a Shutdown call said not to, or `final_export` is False: the store never
        opened). Returns the final export's report."""
        if self._http is not None:
            self._http.stop()
        server.stop(grace).wait()
        self._control_service.close()
        if not final_export:
            return None
        self._save_misses()
        if self.exporter is None or self._skip_final_export:
            return None
        logger.info("exporting before exit")
        try:
            report = self.exporter.run()
        except Exception:  # noqa: BLE001 - exiting anyway; the log says why
            logger.exception("the export at shutdown failed")
            return None
        if report.ok:
            logger.info("export at shutdown done in %.1fs", report.seconds)
        else:
            logger.warning("export at shutdown failed: %s", describe_failures(report))
        return report

    def _save_misses(self) -> None:
        """The run in progress is saved for `oci-cache explain` after the daemon is gone."""
        if self.miss_recorder is None:
            return
        try:
            self.miss_recorder.finish_run()
        except Exception:  # noqa: BLE001 - exiting anyway; the log says why
            logger.exception("saving the record of misses failed")

    def _request_shutdown(self, skip_export: bool) -> None:
        self._skip_final_export = self._skip_final_export or skip_export
        self._reason = self._reason or REASON_SHUTDOWN
        self._stop.set()

    def _export_running(self) -> bool:
        return self.exporter is not None and self.exporter.running


def _explain_routes(recorder: Optional["MissRecorder"]) -> Dict[Tuple[str, str], Callable[[bytes], Dict[str, Any]]]:
    if recorder is None:
        return {}
    from oci_cache.explain.control_routes import explain_routes

    return explain_routes(recorder)


__all__: List[str] = ["DaemonRuntime", "REASON_IDLE", "REASON_SHUTDOWN", "REASON_SIGNAL"]
