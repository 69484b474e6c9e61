"""The launcher with real daemons: start, reuse, restart after kill -9, a configuration
change, concurrent launchers, failures; and `oci-cache status` / `oci-cache stop`.

Daemons started here are detached (not children of the test); each test stops the ones
it started by pid.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, List

import grpc
import pytest

from oci_cache.daemon.launcher import DaemonHandle, DaemonUnavailable, ensure_daemon
from oci_cache.daemon.settings import DaemonSettings, daemon_directory
from oci_cache.daemon_state import read_daemon_state
from reapi_client import ReapiClient, digest_of

SOURCE_ROOT = str(Path(__file__).resolve().parents[2] / "src" / "python")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Daemons:
    """Settings for this test, and every daemon pid seen, stopped at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.pids: List[int] = []
        (tmp_path / "repo").mkdir()
        self.settings = DaemonSettings(
            repo_root=str(tmp_path / "repo"),
            state_dir=str(tmp_path / "state"),
            python=sys.executable,
            pythonpath=(SOURCE_ROOT,),
            idle_timeout="10m",
        )

    def ensure(self, settings: DaemonSettings = None, **kwargs: float) -> DaemonHandle:  # type: ignore[assignment]
        handle = ensure_daemon(settings or self.settings, **kwargs)
        if handle.pid not in self.pids:
            self.pids.append(handle.pid)
        return handle

    def stop_all(self) -> None:
        for pid in self.pids:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if not wait_gone(pid, 10):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 10)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    made = Daemons(tmp_path)
    yield made
    made.stop_all()


def cli(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [sys.executable, "-m", "oci_cache.cli.main", *args], capture_output=True, text=True, timeout=120
    )


def test_start_then_reuse(daemons: Daemons) -> None:
    first = daemons.ensure()
    assert first.started and first.address.startswith("grpc://127.0.0.1:") and alive(first.pid)
    directory = daemon_directory(daemons.settings)
    assert first.directory == directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "token").stat().st_mode) == 0o600
    assert (directory / "token").read_text().strip() == first.token
    state = read_daemon_state(directory)
    assert state is not None and state.pid == first.pid and state.address == first.address
    assert state.config_fingerprint and state.control_url == first.control_url
    assert "serving on" in (directory / "daemon.log").read_text()

    started = time.monotonic()
    second = daemons.ensure()
    assert not second.started and second.pid == first.pid and second.address == first.address
    assert second.token == first.token
    assert time.monotonic() - started < 2  # one status call, no process start (a start is ~0.3 s plus the wait for it to listen)

    # The daemon requires the token: the cache services refuse calls without it.
    channel = grpc.insecure_channel(first.address[len("grpc://"):])
    try:
        with pytest.raises(grpc.RpcError) as denied:
            ReapiClient(channel).upload_blobs({(digest_of(b"x").hash, 1): b"x"})
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ReapiClient(channel, metadata=[("authorization", f"Bearer {first.token}")]).upload_blobs(
            {(digest_of(b"x").hash, 1): b"x"}
        )
    finally:
        channel.close()
    assert first.client().status().blobs_written == 1


def test_a_killed_daemon_is_restarted_with_the_same_address_and_token(daemons: Daemons) -> None:
    first = daemons.ensure()
    os.kill(first.pid, signal.SIGKILL)
    assert wait_gone(first.pid)
    assert read_daemon_state(first.directory) is not None  # stale: the daemon had no chance to remove it
    second = daemons.ensure()
    assert second.started and second.pid != first.pid and alive(second.pid)
    assert (second.address, second.token) == (first.address, first.token)  # what Pants sees does not change


def test_another_configuration_restarts_the_daemon_on_the_same_store(daemons: Daemons) -> None:
    first = daemons.ensure()
    blob = b"kept across the restart"
    channel = grpc.insecure_channel(first.address[len("grpc://"):])
    try:
        ReapiClient(channel, metadata=[("authorization", f"Bearer {first.token}")]).upload_blobs(
            {(digest_of(blob).hash, len(blob)): blob}
        )
    finally:
        channel.close()
    bigger = replace(daemons.settings, max_size="20GiB")
    second = daemons.ensure(bigger)
    assert second.started and second.pid != first.pid and wait_gone(first.pid, 5)
    assert second.directory == first.directory and second.token == first.token
    status = second.client().status()
    assert status.local_store_max_bytes == 20 << 30 and status.local_store_bytes > 0
    assert daemons.ensure(bigger).pid == second.pid


def test_another_cache_configuration_gets_its_own_daemon(daemons: Daemons) -> None:
    first = daemons.ensure()
    other = daemons.ensure(replace(daemons.settings, repo_root=str(daemons.tmp_path)))
    assert other.pid != first.pid and other.directory != first.directory and other.token != first.token
    assert alive(first.pid) and alive(other.pid)


LAUNCH = """
import sys
sys.path.insert(0, {source_root!r})
from oci_cache.daemon.launcher import ensure_daemon
from oci_cache.daemon.settings import DaemonSettings
handle = ensure_daemon(DaemonSettings(repo_root={repo!r}, state_dir={state!r}, python=sys.executable,
                                      pythonpath=({source_root!r},), idle_timeout="10m"))
print(handle.pid, handle.address, handle.started)
"""


def test_concurrent_launchers_start_one_daemon(daemons: Daemons) -> None:
    script = LAUNCH.format(source_root=SOURCE_ROOT, repo=daemons.settings.repo_root, state=daemons.settings.state_dir)
    launchers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = []
    for launcher in launchers:
        out, err = launcher.communicate(timeout=60)
        assert launcher.returncode == 0, err
        outputs.append(out.split())
    daemons.pids.extend({int(pid) for pid, _, _ in outputs})
    assert len({(pid, address) for pid, address, _ in outputs}) == 1, outputs
    assert [started for _, _, started in outputs].count("True") == 1


def test_unusable_state_dir_is_a_clear_error(daemons: Daemons) -> None:
    (daemons.tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(DaemonUnavailable, match="cannot use the state directory"):
        daemons.ensure(replace(daemons.settings, state_dir=str(daemons.tmp_path / "a-file" / "state")))


def test_a_daemon_that_cannot_start_is_reported_with_its_log(daemons: Daemons) -> None:
    with pytest.raises(DaemonUnavailable, match="does not exist"):
        daemons.ensure(replace(daemons.settings, python=str(daemons.tmp_path / "no-python")))
    # An interpreter without the daemon's code: it exits at once, and its log says why.
    broken = replace(daemons.settings, pythonpath=(str(daemons.tmp_path / "nothing-here"),), python="/usr/bin/python3")
    with pytest.raises(DaemonUnavailable, match=r"exited at start(.|\n)*No module named"):
        daemons.ensure(broken)
    with pytest.raises(DaemonUnavailable, match="local_store_max_size"):
        daemons.ensure(replace(daemons.settings, max_size="huge"))


def test_a_daemon_that_holds_on_but_does_not_answer(daemons: Daemons) -> None:
    first = daemons.ensure()
    os.kill(first.pid, signal.SIGSTOP)  # alive, holding its lock, answering nothing
    try:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="neither answers nor exits"):
            daemons.ensure(stop_timeout=1.0)
        assert time.monotonic() - started < 10
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert daemons.ensure().pid == first.pid


def test_idle_daemon_exits_and_the_next_run_starts_another(daemons: Daemons) -> None:
    quick = replace(daemons.settings, idle_timeout="1s")
    first = daemons.ensure(quick)
    assert wait_gone(first.pid, 20)
    assert read_daemon_state(first.directory) is None  # a clean exit
    assert "stopping (idle timeout)" in (first.directory / "daemon.log").read_text()
    second = daemons.ensure(quick)
    assert second.started and second.pid != first.pid


def test_status_and_stop_commands(daemons: Daemons) -> None:
    state_dir = daemons.settings.state_dir
    assert cli("status", "--state-dir", state_dir).returncode == 1
    first = daemons.ensure()
    other = daemons.ensure(replace(daemons.settings, repo_root=str(daemons.tmp_path)))

    shown = cli("status", "--state-dir", state_dir)
    assert shown.returncode == 0, shown.stderr
    for handle in (first, other):
        assert f"daemon pid {handle.pid} on {handle.address}" in shown.stdout
    assert "action cache: 0 hits, 0 misses" in shown.stdout and "local store:" in shown.stdout

    as_json = json.loads(cli("status", "--state-dir", state_dir, "--json").stdout)
    running = {d["pid"]: d for d in as_json["daemons"] if d["running"]}
    assert set(running) == {first.pid, other.pid}
    assert int(running[first.pid]["status"]["local_store_max_bytes"]) == 10 << 30

    os.kill(other.pid, signal.SIGKILL)
    assert wait_gone(other.pid)
    as_json = json.loads(cli("status", "--state-dir", state_dir, "--json").stdout)
    assert [d["problem"] for d in as_json["daemons"] if not d["running"]] == [
        f"not running (stale daemon.json of pid {other.pid})"
    ]

    stopped = cli("stop", "--state-dir", state_dir)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"stopped daemon pid {first.pid}" in stopped.stdout
    assert wait_gone(first.pid, 5)
    assert cli("status", "--state-dir", state_dir).returncode == 1
    assert "no oci-cache daemon is running" in cli("stop", "--state-dir", state_dir).stdout


def test_status_and_stop_of_a_plain_serve(tmp_path: Path) -> None:
    from server_fixtures import start_server

    server = start_server(tmp_path / "state")
    try:
        shown = cli("status", "--state-dir", str(tmp_path / "state"))
        assert shown.returncode == 0 and f"daemon pid {server.pid}" in shown.stdout
        assert cli("stop", "--state-dir", str(tmp_path / "state"), "--no-export").returncode == 0
        assert server.process.wait(10) == 0
    finally:
        server.stop()


def test_one_serve_per_state_dir(tmp_path: Path) -> None:
    from server_fixtures import serve_command, start_server

    server = start_server(tmp_path / "state")
    try:
        second = subprocess.run(
            serve_command(tmp_path / "state"), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1 and second.stdout == ""
        assert "another oci-cache serve uses the state directory" in second.stderr
        assert read_daemon_state(tmp_path / "state").pid == server.pid  # type: ignore[union-attr]
    finally:
        server.stop()


def test_sigterm_exports_once_before_exit_then_removes_daemon_json(tmp_path: Path) -> None:
    from server_fixtures import start_server

    layout = tmp_path / "layout"
    server = start_server(tmp_path / "state", "--cache-to", f"type=local,dest={layout}", "--log-file",
                          str(tmp_path / "daemon.log"))
    try:
        channel = server.channel()
        ReapiClient(channel).upload_blobs({(digest_of(b"blob").hash, 4): b"blob"})
        assert not (layout / "index.json").exists()
    finally:
        assert server.stop() == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "stopping (signal)" in log and "export at shutdown done" in log, log
    assert log.index("stopping (signal)") < log.index("export at shutdown done")
    assert (layout / "index.json").is_file() and (layout / "oci-layout").is_file()
    assert not (tmp_path / "state" / "daemon.json").exists()
