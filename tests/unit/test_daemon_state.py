from __future__ import annotations

import os
from pathlib import Path

from oci_cache.daemon_state import DaemonState, read_daemon_state, remove_daemon_state, write_daemon_state


def test_write_read_remove(tmp_path: Path) -> None:
    state = DaemonState("grpc://127.0.0.1:1234", os.getpid(), 1700000000.5, "0.1.0")
    path = write_daemon_state(tmp_path / "state", state)
    assert path == tmp_path / "state" / "daemon.json"
    assert read_daemon_state(tmp_path / "state") == state
    assert state.is_alive()
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["daemon.json"]  # no temp files left
    assert not remove_daemon_state(tmp_path / "state", pid=os.getpid() + 1)  # someone else's
    assert remove_daemon_state(tmp_path / "state", pid=os.getpid())
    assert read_daemon_state(tmp_path / "state") is None
    assert not remove_daemon_state(tmp_path / "state")


def test_unreadable_state_is_none(tmp_path: Path) -> None:
    (tmp_path / "daemon.json").write_text("{not json")
    assert read_daemon_state(tmp_path) is None
    (tmp_path / "daemon.json").write_text('{"address": "grpc://x:1"}')
    assert read_daemon_state(tmp_path) is None


def test_dead_pid_is_not_alive() -> None:
    assert not DaemonState("grpc://127.0.0.1:1", 2**22 + 12345, 0.0, "0").is_alive()
