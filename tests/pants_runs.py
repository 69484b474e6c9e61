"""What the real-Pants tests share: what they read from a Pants run (its `--stats-log`
counters and the plugin's summary line), and the plugin's daemons under a state dir
(imported by name from tests/integration and tests/reliability)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

from oci_cache.daemon.daemon_dir import find_daemon_dirs
from oci_cache.daemon_state import read_daemon_state

REPO_ROOT = Path(__file__).resolve().parents[1]
PANTS = REPO_ROOT / ".venv-pants" / "bin" / "pants"
EXAMPLE_REPO = REPO_ROOT / "examples" / "basic"  # built by every real-Pants test
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


def skip_or_fail(reason: str) -> None:
    """Skips the test, or fails it when OCI_CACHE_REQUIRE_PANTS is set (as in CI)."""
    if os.environ.get("OCI_CACHE_REQUIRE_PANTS"):
        pytest.fail(f"{reason} (OCI_CACHE_REQUIRE_PANTS is set)", pytrace=False)
    pytest.skip(reason)


def require_pants() -> Path:
    """The Pants 2.17.1 of .venv-pants (scripts/bootstrap.sh --pants), or skip_or_fail."""
    if not (PANTS.is_file() and os.access(PANTS, os.X_OK)):
        skip_or_fail(f"Pants 2.17.1 is not installed at {PANTS}; run `scripts/bootstrap.sh --pants`")
    return PANTS


def pants_environment(scratch: Path, path: Optional[str] = None) -> Dict[str, str]:
    """The environment of a test's Pants run: no PANTS_* options of the caller, and every
    home-level cache in `scratch`, empty at first, as on a fresh machine: a private HOME,
    Pants' default caches (~/.cache/pants, under XDG_CACHE_HOME; pip's too) and pex's
    PEX_ROOT (~/.pex, where the plugin resolve keeps the pip it bootstraps). So a run never
    relies on, or writes into, the caches of the user who runs the tests."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PANTS_", "PEX_", "PIP_"))}
    env["NO_SCIE_WARNING"] = "1"
    for name, directory in (("HOME", "home"), ("XDG_CACHE_HOME", "xdg-cache"), ("PEX_ROOT", "pex-root")):
        (scratch / directory).mkdir(parents=True, exist_ok=True)
        env[name] = str(scratch / directory)
    if path is not None:
        env["PATH"] = path
    return env


def run_pants_command(argv: List[str], buildroot: Path, scratch: Path, name: str, path: Optional[str] = None) -> PantsRun:
    """Runs one Pants command line in `buildroot`; its output is also kept in scratch/NAME.log."""
    started = time.monotonic()
    completed = subprocess.run(
        argv,
        cwd=buildroot,
        env=pants_environment(scratch, path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=PANTS_TIMEOUT_SECONDS,
    )
    output = completed.stdout.decode("utf-8", errors="replace")
    (scratch / f"{name}.log").write_text(output, encoding="utf-8")
    return PantsRun(name, completed.returncode, output, time.monotonic() - started)


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


def daemon_logs(state_dir: Path, tail_chars: Optional[int] = 3000) -> str:
    """Each daemon.log under `state_dir`: the last `tail_chars` characters of each (for a
    failure report), or the whole of each with `tail_chars=None` (to count lines in)."""
    logs = [
        (directory / "daemon.log").read_text(errors="replace")
        for directory in find_daemon_dirs(state_dir)
        if (directory / "daemon.log").exists()
    ]
    return "\n".join(log if tail_chars is None else log[-tail_chars:] for log in logs)


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
