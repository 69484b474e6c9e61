"""The daemon's control plane in-process, over a real gRPC server and a real local store:
the Control service (gRPC and JSON over HTTP), the counters, the bearer token, export
requests, Shutdown and the idle timeout (server/daemon_runtime.py and friends).

The export behind it is a recording callable standing where issue 3's OCI export plugs in
(`ServingStack.export`); what is tested here is when and how often the daemon calls it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, List, Optional

import grpc
import pytest

from oci_cache.cache_image.serving_stack import ServingStack
from oci_cache.daemon.control_client import ControlClient, ControlError
from oci_cache.export_report import ExportReport, ExportTargetReport
from oci_cache.reapi import control_pb2, control_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.server.daemon_control import DaemonIdentity
from oci_cache.server.daemon_runtime import REASON_IDLE, REASON_SHUTDOWN, DaemonRuntime
from oci_cache.server.grpc_server import ServerOptions, build_server
from oci_cache.store.completeness import CompletenessCheckingActionCache
from oci_cache.store.local_store import LocalStore
from reapi_client import ReapiClient, digest_of

TOKEN = "s3cret-token"
AUTH = [("authorization", f"Bearer {TOKEN}")]


class RecordingExport:
    def __init__(self, seconds: float = 0.0) -> None:
        self.calls = 0
        self.seconds = seconds

    def __call__(self) -> ExportReport:
        self.calls += 1
        time.sleep(self.seconds)
        return ExportReport(
            [ExportTargetReport(entry="type=local,dest=/layout", ok=True, entries=self.calls, bytes_uploaded=10)],
            seconds=self.seconds,
        )


class Daemon:
    """A DaemonRuntime around a real server and store; `wait()` runs on a thread."""

    def __init__(self, tmp_path: Path, export: Optional[RecordingExport], idle_timeout: float = 0.0) -> None:
        self.store = LocalStore(tmp_path / "store", 1 << 30)
        self.stop_event = threading.Event()
        identity = DaemonIdentity(
            state_dir=str(tmp_path),
            version="9.9.9",
            cache_from=["type=local,src=/layout"],
            cache_to=["type=local,dest=/layout"],
            config_fingerprint="fp-123",
            idle_timeout_seconds=idle_timeout,
        )
        stack = ServingStack(self.store, self.store, CompletenessCheckingActionCache(self.store, self.store), export=export)
        self.runtime = DaemonRuntime(identity, stack, self.stop_event, bearer_token=TOKEN, control_http=True)
        self.server, port = build_server(
            self.runtime.blobs,
            self.runtime.action_cache,
            "127.0.0.1:0",
            self.runtime.server_options(ServerOptions(bearer_token=TOKEN)),
        )
        self.server.start()
        self.address = f"grpc://127.0.0.1:{port}"
        self.control_url = self.runtime.started(self.address)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.control = control_pb2_grpc.ControlStub(self.channel)
        self.reason: List[str] = []
        self.final_report: List[Optional[ExportReport]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.reason.append(self.runtime.wait())
        self.final_report.append(self.runtime.stop(self.server, grace=1.0))

    def wait_stopped(self, timeout: float = 10.0) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self.stop_event.set()
        self.wait_stopped()
        self.channel.close()
        self.store.close()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    made: List[Daemon] = []

    def make(export: Optional[RecordingExport] = None, idle_timeout: float = 0.0) -> Daemon:
        daemon = Daemon(tmp_path / f"d{len(made)}", export, idle_timeout)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.close()


def test_status_counts_what_clients_did(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(RecordingExport())
    client = ReapiClient(daemon.channel, metadata=AUTH)
    output = b"output file" * 100
    client.upload_blobs({(digest_of(output).hash, digest_of(output).size_bytes): output})
    action = digest_of(b"action")
    cache = client.action_cache
    with pytest.raises(grpc.RpcError) as miss:
        cache.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action), metadata=AUTH)
    assert miss.value.code() == grpc.StatusCode.NOT_FOUND
    result = re_pb2.ActionResult(output_files=[re_pb2.OutputFile(path="out", digest=digest_of(output))])
    cache.UpdateActionResult(re_pb2.UpdateActionResultRequest(action_digest=action, action_result=result), metadata=AUTH)
    for _ in range(2):
        cache.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action), metadata=AUTH)
        assert client.read_blob(digest_of(output)) == output

    status = daemon.control.GetStatus(control_pb2.GetStatusRequest(), metadata=AUTH, timeout=10)
    assert (status.action_cache_hits, status.action_cache_misses, status.action_results_written) == (2, 1, 1)
    assert (status.blobs_written, status.bytes_written) == (1, len(output))
    assert (status.blobs_read, status.bytes_read) == (2, 2 * len(output))
    assert status.address == daemon.address and status.pid > 0 and status.state_dir == daemon.runtime.identity.state_dir
    assert list(status.cache_from) == ["type=local,src=/layout"] and list(status.cache_to) == ["type=local,dest=/layout"]
    assert status.version == "9.9.9" and status.config_fingerprint == "fp-123"
    assert status.local_store_max_bytes == 1 << 30 and status.local_store_bytes > len(output)
    assert not status.HasField("pending_export_entries")  # this store cannot tell
    assert status.uptime_seconds > 0 and status.idle_seconds < 5 and status.control_url == daemon.control_url

    # The JSON endpoint says the same.
    http_status = ControlClient(daemon.control_url, TOKEN).status()
    assert (http_status.action_cache_hits, http_status.action_cache_misses, http_status.bytes_read) == (
        2,
        1,
        2 * len(output),
    )
    assert http_status.pid == status.pid and http_status.config_fingerprint == "fp-123"
    assert http_status.pending_export_entries is None


def test_control_needs_the_token_on_both_transports(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory()
    for metadata in ([], [("authorization", "Bearer wrong")]):
        with pytest.raises(grpc.RpcError) as denied:
            daemon.control.GetStatus(control_pb2.GetStatusRequest(), metadata=metadata, timeout=10)
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as denied:
            daemon.control.Shutdown(control_pb2.ShutdownRequest(), metadata=metadata, timeout=10)
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for token in (None, "wrong"):
        with pytest.raises(ControlError, match="401"):
            ControlClient(daemon.control_url, token).shutdown()
    assert not daemon.stop_event.is_set()


def test_http_endpoint_rejects_unknown_paths_and_bad_bodies(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory()

    def call(method: str, path: str, body: bytes = b"") -> int:
        request = urllib.request.Request(
            daemon.control_url + path, data=body if method == "POST" else None, method=method,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                json.loads(response.read())
                return int(response.status)
        except urllib.error.HTTPError as error:
            assert "error" in json.loads(error.read())
            return int(error.code)

    assert call("GET", "/v1/status") == 200
    assert call("GET", "/v1/nothing") == 404
    assert call("POST", "/v1/status") == 404
    assert call("POST", "/v1/export", b"{not json") == 400
    assert call("POST", "/v1/export", b'{"background": "maybe"}') == 400


def test_export_calls_the_stacks_export(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    export = RecordingExport()
    daemon = daemon_factory(export)
    response = daemon.control.Export(control_pb2.ExportRequest(), metadata=AUTH, timeout=10)
    assert response.ok and not response.nothing_to_export_to
    assert [(t.entry, t.ok, t.entries) for t in response.targets] == [("type=local,dest=/layout", True, 1)]
    result = ControlClient(daemon.control_url, TOKEN).export()
    assert result.ok and result.targets[0].entries == 2 and export.calls == 2
    background = ControlClient(daemon.control_url, TOKEN).export(background=True)
    assert background.started_in_background and background.targets == ()
    deadline = time.monotonic() + 10
    while export.calls < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    status = ControlClient(daemon.control_url, TOKEN).status()
    assert status.exports_completed >= 2


def test_concurrent_export_calls_are_coalesced(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    export = RecordingExport(seconds=0.5)
    daemon = daemon_factory(export)
    results: List[int] = []

    def request() -> None:
        results.append(daemon.control.Export(control_pb2.ExportRequest(), metadata=AUTH, timeout=20).targets[0].entries)

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(20)
    assert len(results) == 6
    assert export.calls <= 3  # six requests, at most: the running export, and one after it (plus a straggler)
    assert export.calls < 6


def test_nothing_to_export_to(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    daemon = daemon_factory(None)
    response = daemon.control.Export(control_pb2.ExportRequest(), metadata=AUTH, timeout=10)
    assert response.nothing_to_export_to and response.ok and not response.targets
    daemon.control.Shutdown(control_pb2.ShutdownRequest(), metadata=AUTH, timeout=10)
    assert daemon.wait_stopped()
    assert daemon.reason == [REASON_SHUTDOWN] and daemon.final_report == [None]


def test_shutdown_stops_accepting_then_exports_once(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    export = RecordingExport()
    daemon = daemon_factory(export)
    daemon.control.Shutdown(control_pb2.ShutdownRequest(), metadata=AUTH, timeout=10)
    assert daemon.wait_stopped()
    assert daemon.reason == [REASON_SHUTDOWN]
    assert export.calls == 1 and daemon.final_report[0] is not None and daemon.final_report[0].ok
    with pytest.raises(grpc.RpcError):
        daemon.control.GetStatus(control_pb2.GetStatusRequest(), metadata=AUTH, timeout=2)
    with pytest.raises(ControlError):
        ControlClient(daemon.control_url, TOKEN).status(timeout=2)


def test_shutdown_can_skip_the_export(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    export = RecordingExport()
    daemon = daemon_factory(export)
    ControlClient(daemon.control_url, TOKEN).shutdown(skip_export=True)
    assert daemon.wait_stopped()
    assert export.calls == 0 and daemon.final_report == [None]


def test_idle_timeout_stops_the_daemon_and_calls_keep_it_alive(daemon_factory) -> None:  # type: ignore[no-untyped-def]
    export = RecordingExport()
    daemon = daemon_factory(export, idle_timeout=0.6)
    client = ReapiClient(daemon.channel, metadata=AUTH)
    busy_until = time.monotonic() + 1.2
    while time.monotonic() < busy_until:  # a call every 0.1 s, twice the timeout in total
        client.cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(blob_digests=[digest_of(b"x")]), metadata=AUTH)
        time.sleep(0.1)
        assert not daemon.stop_event.is_set()
    assert daemon.wait_stopped(timeout=5)
    assert daemon.reason == [REASON_IDLE]
    assert export.calls == 1  # the export at shutdown
