"""`STATE_DIR/daemon.json`: how to reach the running daemon (address, pid, start time, version;
and, for the launcher that decides whether to reuse it, its configuration fingerprint, its
gRPC-less control URL and its token file).

Written atomically (temp file, fsync, rename) once the server listens, and
removed on a clean exit. A reader may find a stale file (the daemon was killed):
`is_alive()` checks whether its pid still exists.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

DAEMON_STATE_FILE = "daemon.json"


@dataclass(frozen=True)
class DaemonState:
    address: str  # "grpc://HOST:PORT"
    pid: int
    started_at: float  # seconds since the epoch
    version: str
    config_fingerprint: str = ""  # given by the launcher (`serve --config-fingerprint`)
    control_url: str = ""  # "http://127.0.0.1:PORT": the Control service as JSON (server/control_http.py)
    token_file: str = ""  # the bearer token's file, when the daemon requires one

    def is_alive(self) -> bool:
        """Whether a process with this pid exists (it may, rarely, be another one)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def daemon_state_path(state_dir: Path) -> Path:
    return Path(state_dir) / DAEMON_STATE_FILE


def write_daemon_state(state_dir: Path, state: DaemonState) -> Path:
    """Atomically replaces STATE_DIR/daemon.json with `state`."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = daemon_state_path(state_dir)
    fd, temp_name = tempfile.mkstemp(prefix=".daemon.", suffix=".json.tmp", dir=str(state_dir))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(state), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(state_dir)
    return path


def read_daemon_state(state_dir: Path) -> Optional[DaemonState]:
    """The recorded state, or None when there is none or it is unreadable."""
    try:
        data = json.loads(daemon_state_path(state_dir).read_text(encoding="utf-8"))
        return DaemonState(
            address=str(data["address"]),
            pid=int(data["pid"]),
            started_at=float(data["started_at"]),
            version=str(data["version"]),
            config_fingerprint=str(data.get("config_fingerprint", "")),
            control_url=str(data.get("control_url", "")),
            token_file=str(data.get("token_file", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_daemon_state(state_dir: Path, pid: Optional[int] = None) -> bool:
    """Removes daemon.json; with `pid`, only if it records that pid. True if removed."""
    path = daemon_state_path(state_dir)
    if pid is not None:
        current = read_daemon_state(state_dir)
        if current is not None and current.pid != pid:
            return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
