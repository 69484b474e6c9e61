"""Shared pieces of the benchmark scripts: server subprocesses, percentiles, machine facts."""

from __future__ import annotations

import math
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_ROOT = os.path.join(REPO_ROOT, "src", "python")

_LISTENING = re.compile(r"listening on grpc://(\S+)")


def import_path_for_repo() -> None:
    """Lets `python bench/x.py` import oci_cache from the work tree when it is not installed."""
    try:
        import oci_cache  # noqa: F401
    except ImportError:
        sys.path.insert(0, SOURCE_ROOT)


def env_with_repo_sources() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerStartError(RuntimeError):
    pass


class ServerProcess:
    """A server in its own subprocess (and session), stopped by PID.

    The command must print `listening on grpc://HOST:PORT` on stdout before `timeout`
    seconds. Its stderr goes to `log_path`; stdout keeps being drained so it never blocks.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: str, env: Optional[Dict[str, str]] = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.process: Optional[subprocess.Popen] = None
        self.address = ""
        self._stdout_tail: Deque[str] = deque(maxlen=50)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> str:
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                start_new_session=True,  # a Ctrl-C in the terminal reaches only us; we stop it
            )
        finally:
            log.close()
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._drain, args=(lines,), daemon=True, name=f"{self.name}-stdout").start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerStartError(
                    f"{self.name}: no 'listening on grpc://' line within {timeout:.0f} s{self._log_tail()}"
                )
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                code = self.process.wait()
                raise ServerStartError(f"{self.name}: exited with status {code} before listening{self._log_tail()}")
            match = _LISTENING.search(line)
            if match:
                self.address = match.group(1)
                return self.address

    def _drain(self, lines: "queue.Queue[Optional[str]]") -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._stdout_tail.append(line)
            lines.put(line)
        lines.put(None)

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 3000))
                err = f.read().decode("utf-8", "replace")
        except OSError:
            err = ""
        out = "\n".join(self._stdout_tail)
        return f"\n--- stdout ---\n{out}\n--- stderr ({self.log_path}) ---\n{err}"

    def cpu_seconds(self) -> Optional[float]:
        """User + system CPU time of the process (all its threads) so far; None off Linux."""
        return process_cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 5.0) -> Optional[int]:
        """SIGTERM, then SIGKILL after `grace` seconds. Safe to call twice."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        return self.process.returncode


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = math.ceil(fraction * len(sorted_values) - 1e-9)
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def machine_info() -> Dict[str, object]:
    import grpc

    info: Dict[str, object] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
    }
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        from google import protobuf

        info["protobuf"] = protobuf.__version__
    except ImportError:
        pass
    return info


def format_table(header: List[str], rows: List[List[str]]) -> str:
    """A Markdown table, columns padded so it also reads well in a terminal."""
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: List[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])
