"""What the real-Pants tests share: what they read from a Pants run (its `--stats-log`
counters and the plugin's summary line), and the plugin's daemons under a state dir
(imported by name from tests/integration and tests/reliability)."""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Set

from oci_cache.daemon.daemon_dir import find_daemon_dirs
from oci_cache.daemon_state import read_daemon_state

PANTS_TIMEOUT_SECONDS = 300
CACHEABLE_PROCESSES = 15  # examples/basic/README.md
HDRHISTOGRAM_HINT = "Please run with `--plugins=hdrhistogram`"
COUNTER_LINE = re.compile(r"^\s+([a-z_]+): (\d+)$", re.M)
SUMMARY_LINE = re.compile(
    r"\[(?:INFO|WARN)\] oci-cache: (\d+) hits?, (\d+) miss(?:es)?, (\S+) read, (\S+) written; (.*)$", re.M
)
UNAVAILABLE_WARNING = "[oci-cache] the remote cache is off for this run, the build goes on without it"


@dataclass(frozen=True)
class PantsRun:
    name: str
    returncode: int
    output: str
    seconds: float

    @property
    def counters(self) -> Dict[str, int]:
        _, marker, text = self.output.rpartition("Counters:")
        return {name: int(value) for name, value in COUNTER_LINE.findall(text)} if marker else {}

    @property
    def summary(self) -> Optional["re.Match[str]"]:
        matches = list(SUMMARY_LINE.finditer(self.output))
        return matches[-1] if matches else None

    def describe(self) -> str:
        tail = "\n".join(self.output.splitlines()[-40:])
        return f"pants run {self.name!r} exited {self.returncode} after {self.seconds:.1f}s; output tail:\n{tail}"


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (ProcessLookupError, OSError):
        return False


def kill(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Sends `sig`, waits up to `timeout` seconds, then SIGKILL."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def live_daemon_pids(state_dir: Path) -> Set[int]:
    """The pids of the plugin's daemons under `state_dir` that are running."""
    pids = set()
    for directory in find_daemon_dirs(state_dir):
        state = read_daemon_state(directory)
        if state is not None and alive(state.pid):
            pids.add(state.pid)
    return pids


def daemon_logs(state_dir: Path) -> str:
    """The last 3000 characters of each daemon.log under `state_dir`."""
    return "\n".join(
        (directory / "daemon.log").read_text(errors="replace")[-3000:]
        for directory in find_daemon_dirs(state_dir)
        if (directory / "daemon.log").exists()
    )


__all__ = [
    "CACHEABLE_PROCESSES",
    "COUNTER_LINE",
    "HDRHISTOGRAM_HINT",
    "PANTS_TIMEOUT_SECONDS",
    "PantsRun",
    "SUMMARY_LINE",
    "UNAVAILABLE_WARNING",
    "alive",
    "daemon_logs",
    "kill",
    "live_daemon_pids",
]
