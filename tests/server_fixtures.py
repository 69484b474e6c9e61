"""`oci-cache serve` as a real subprocess, and free ports (the fixtures using them
are in tests/conftest.py).

Every server is started with `python -m oci_cache.cli.main serve --listen
127.0.0.1:0 --state-dir DIR [extra args]`, its printed address is read from its
first stdout line, and it is stopped by PID (SIGTERM, then SIGKILL after a
timeout) when the test ends. Its stderr goes to a log file next to the state
directory (`.log_path`), shown when a start fails.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional

import grpc

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]
_log_numbers = itertools.count(1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A running `oci-cache serve` subprocess."""

    def __init__(self, process: "subprocess.Popen[bytes]", address: str, state_dir: Path, log_path: Path) -> None:
        self.process = process
        self.address = address  # "grpc://127.0.0.1:PORT", as printed
        self.target = address[len("grpc://") :]  # "127.0.0.1:PORT", for grpc channels
        self.port = int(self.target.rpartition(":")[2])
        self.state_dir = state_dir
        self.log_path = log_path
        self._channels: List[grpc.Channel] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def channel(self) -> grpc.Channel:
        """A new insecure channel to the server (closed when the server is stopped)."""
        channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self._channels.append(channel)
        return channel

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> Optional[int]:
        """SIGTERM, then SIGKILL if it has not exited after `timeout`; the exit status."""
        self._close_channels()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL now (simulates a crash)."""
        self._close_channels()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_SECONDS)

    def _close_channels(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()


def serve_command(state_dir: Path, *extra_args: str, listen: str = "127.0.0.1:0") -> List[str]:
    return [
        sys.executable,
        "-m",
        "oci_cache.cli.main",
        "serve",
        "--listen",
        listen,
        "--state-dir",
        str(state_dir),
        *extra_args,
    ]


def start_server(state_dir: Path, *extra_args: str, listen: str = "127.0.0.1:0") -> ServerProcess:
    """Starts `oci-cache serve` and waits for its `listening on grpc://...` line."""
    state_dir = Path(state_dir)
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = state_dir.parent / f"{state_dir.name}-server-{next(_log_numbers)}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            serve_command(state_dir, *extra_args, listen=listen),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    first_line = _first_line(process, START_TIMEOUT_SECONDS)
    prefix = "listening on "
    if not first_line.startswith(prefix + "grpc://"):
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        log_text = log_path.read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(f"oci-cache serve did not start (first line {first_line!r}); stderr:\n{log_text}")
    # Keep draining stdout so that the server never blocks on a full pipe.
    threading.Thread(target=_drain, args=(process,), daemon=True).start()
    return ServerProcess(process, first_line[len(prefix) :], state_dir, log_path)


def _first_line(process: "subprocess.Popen[bytes]", timeout: float) -> str:
    assert process.stdout is not None
    lines: List[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return lines[0].decode("utf-8", errors="replace").strip() if lines else ""


def _drain(process: "subprocess.Popen[bytes]") -> None:
    assert process.stdout is not None
    for _ in process.stdout:
        pass
