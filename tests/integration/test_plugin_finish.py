"""The plugin's end of run (pants_oci_cache.finish) against a real daemon started by the
launcher with the embedded default (an OCI image layout in its directory): the export per
`export_on_finish` and the summary line. Pants itself is not needed here; the real-Pants
tests are in test_pants_plugin.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List

import grpc
import pytest

from oci_cache.daemon.launcher import DaemonHandle, ensure_daemon
from oci_cache.daemon.settings import DaemonSettings
from oci_cache.daemon_state import read_daemon_state
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from pants_oci_cache.finish import finish_run
from pants_oci_cache.run_state import RunStart
from reapi_client import ReapiClient, digest_of

SOURCE_ROOT = str(Path(__file__).resolve().parents[2] / "src" / "python")


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[DaemonSettings]:
    (tmp_path / "repo").mkdir()
    made = DaemonSettings(
        repo_root=str(tmp_path / "repo"), state_dir=str(tmp_path / "state"), python=sys.executable,
        pythonpath=(SOURCE_ROOT,),
    )
    yield made
    for directory in (tmp_path / "state").glob("*"):
        state = read_daemon_state(directory)
        if state is not None:
            try:
                os.kill(state.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def one_hit_and_one_miss(handle: DaemonHandle) -> None:
    auth = [("authorization", f"Bearer {handle.token}")]
    channel = grpc.insecure_channel(handle.address[len("grpc://"):])
    try:
        client = ReapiClient(channel, metadata=auth)
        output = b"an output" * 1000
        client.upload_blobs({(digest_of(output).hash, len(output)): output})
        action = digest_of(b"an action")
        result = re_pb2.ActionResult(output_files=[re_pb2.OutputFile(path="out", digest=digest_of(output))])
        client.action_cache.UpdateActionResult(
            re_pb2.UpdateActionResultRequest(action_digest=action, action_result=result), metadata=auth
        )
        client.action_cache.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action), metadata=auth)
        assert client.read_blob(digest_of(output)) == output
        with pytest.raises(grpc.RpcError):
            client.action_cache.GetActionResult(
                re_pb2.GetActionResultRequest(action_digest=digest_of(b"unknown")), metadata=auth
            )
    finally:
        channel.close()


def test_wait_exports_to_the_embedded_layout_and_summarizes_the_run(settings: DaemonSettings) -> None:
    handle = ensure_daemon(settings)
    start = RunStart(handle)
    one_hit_and_one_miss(handle)
    line, ok = finish_run(start, "wait", terminal=False)
    layout = handle.directory / "cache-image"
    assert ok, line
    assert re.fullmatch(
        r"oci-cache: 1 hit, 1 miss, 8\.8KiB read, 8\.8KiB written; exported 1 entry \(1 new layer, \S+ uploaded, "
        rf"0 reused\) to type=local,dest={re.escape(str(layout))},mode=max in \d+\.\ds",
        line,
    ), line
    assert (layout / "index.json").is_file()

    # The next run starts from the counters as they are now: it counts only its own calls.
    again = RunStart(ensure_daemon(settings))
    line, ok = finish_run(again, "off", terminal=False)
    assert ok and line == 'oci-cache: 0 hits, 0 misses, 0B read, 0B written; export off (`export_on_finish = "off"`)'
    line, ok = finish_run(again, "background", terminal=False)
    assert ok and line.endswith("export started in the background (`oci-cache status` shows when it is done)"), line


def test_a_daemon_gone_before_the_end_of_the_run(settings: DaemonSettings) -> None:
    handle = ensure_daemon(settings)
    os.kill(handle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line, ok = finish_run(RunStart(handle), "wait", terminal=False)
        if not ok:
            break
        time.sleep(0.05)
    assert not ok and line.startswith("oci-cache: the export failed, the daemon did not answer"), line
    with pytest.raises(ValueError, match="wait, background, off"):
        finish_run(RunStart(handle), "later")


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_cache_from_that_cannot_be_imported_is_a_warning_in_the_summary(
    settings: DaemonSettings, tmp_path: Path
) -> None:
    """A broken cache-from reaches the console (the summary line, logged as a warning),
    not only daemon.log; a ref with no image yet is not a failure."""
    unreachable = f"type=registry,ref=127.0.0.1:{_closed_port()}/team/app:cache"
    empty_layout = f"type=local,src={tmp_path / 'no-layout-yet'}"
    settings = dataclasses.replace(
        settings, cache_from=(unreachable, empty_layout), cache_to=(f"type=local,dest={tmp_path / 'out'}",)
    )
    handle = ensure_daemon(settings)
    client = handle.client()
    deadline = time.monotonic() + 30
    while len(client.status().imports) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    states = {state.entry: state for state in client.status().imports}
    assert states[unreachable].failed and "127.0.0.1" in states[unreachable].problem
    assert states[empty_layout].missing and not states[empty_layout].failed

    line, ok = finish_run(RunStart(handle), "off", terminal=False)
    assert not ok, line
    assert f"; cache-from {unreachable} FAILED to import: " in line
    assert "(no hits from it)" in line
    assert empty_layout not in line


class SilentRegistry:
    """Accepts connections on 127.0.0.1 and never answers: a registry that stalls."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()


def test_a_wait_export_to_a_stalled_registry_ends_the_run_at_the_wait_limit(
    settings: DaemonSettings, tmp_path: Path
) -> None:
    registry = SilentRegistry()
    settings = dataclasses.replace(settings, cache_to=(f"type=registry,ref={registry.host}/team/app:cache",))
    handle = ensure_daemon(settings)
    try:
        one_hit_and_one_miss(handle)
        started = time.monotonic()
        line, ok = finish_run(RunStart(handle), "wait", terminal=False, wait_limit=1.5)
        waited = time.monotonic() - started
        assert not ok and 1.5 <= waited < 10, (waited, line)
        assert re.search(r"; the export is still running after \d+s \(`export_wait_limit`\); the daemon finishes it", line), line
        assert re.match(r"oci-cache: 1 hit, 1 miss, ", line), line
        assert handle.client().status().uptime_seconds > 0  # the daemon goes on, exporting
    finally:
        os.kill(handle.pid, signal.SIGKILL)  # its exports would stall for the read timeout
        registry.close()
