"""`oci-cache serve` answers before its store is open (a run of Pants waits for that
answer; its first cache call comes later), and a store that cannot be opened still
stops the daemon with a message and leaves no daemon.json behind."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import List

import grpc

from server_fixtures import serve_command
from oci_cache.cache_image.opening_stack import OpeningStack
from oci_cache.cli import serve_command as serve_module
from oci_cache.daemon_state import read_daemon_state
from oci_cache.reapi import control_pb2, control_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc


def wait_for_state(state_dir: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_daemon_state(state_dir)
        if state is not None:
            return state.address[len("grpc://") :]
        time.sleep(0.02)
    raise AssertionError("no daemon.json")


def test_the_daemon_answers_while_its_store_is_still_opening(tmp_path: Path) -> None:
    config = serve_module.ServeConfig(listen="127.0.0.1:0", state_dir=tmp_path / "state", max_size_bytes=1 << 30)
    config.state_dir.mkdir()
    opening = OpeningStack(
        can_export=False, has_imports=False, max_bytes=config.max_size_bytes, status_wait_seconds=0.1
    )
    may_open = threading.Event()
    stop = threading.Event()
    exit_codes: List[int] = []

    def open_when_allowed() -> bool:
        may_open.wait(30)
        opening.opened(serve_module.open_stack(config))
        return True

    server = threading.Thread(
        target=lambda: exit_codes.append(serve_module._serve_stack(config, opening, stop, open_when_allowed))
    )
    server.start()
    try:
        address = wait_for_state(config.state_dir)
        with grpc.insecure_channel(address) as channel:
            status = control_pb2_grpc.ControlStub(channel).GetStatus(control_pb2.GetStatusRequest(), timeout=5)
            assert status.address == "grpc://" + address and status.local_store_bytes == 0
            lookup = re_grpc.ActionCacheStub(channel).GetActionResult.future(
                re_pb2.GetActionResultRequest(action_digest=re_pb2.Digest(hash="ab" * 32, size_bytes=3)), timeout=30
            )
            time.sleep(0.3)
            assert not lookup.done(), "a cache call waits for the store"
            may_open.set()
            try:
                lookup.result()
                raise AssertionError("an empty store has no such action")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
    finally:
        may_open.set()
        stop.set()
        server.join(30)
    assert exit_codes == [0]
    assert read_daemon_state(config.state_dir) is None


def test_a_store_that_cannot_be_opened_stops_the_daemon_that_listened(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "store").write_text("a file where the store's directory should be")
    result = subprocess.run(serve_command(state_dir), stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert result.returncode == 1
    assert b"oci-cache serve: cannot open the store in" in result.stderr
    assert b"Traceback" not in result.stderr
    assert not (state_dir / "daemon.json").exists()
