"""The files of one daemon's directory, and finding daemon directories under a state dir.

    STATE_DIR/<repo>-<key>/          mode 0700, one per repository and cache configuration
        daemon.json                  address, pid, control URL (while it runs)
        daemon.lock                  flock'ed by the daemon process for its whole life
        launch.lock                  flock'ed by a launcher while it starts a daemon
        token                        the bearer token, mode 0600, stable across restarts
        daemon.log                   the daemon's log (previous one: daemon.log.1)
        last-port                    the port it last listened on (reused when free)
        store/                       the local store
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

from oci_cache.daemon_state import DAEMON_STATE_FILE

DAEMON_LOCK_FILE = "daemon.lock"
LAUNCH_LOCK_FILE = "launch.lock"
TOKEN_FILE = "token"
LOG_FILE = "daemon.log"
LAST_PORT_FILE = "last-port"


class DaemonDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def daemon_lock(self) -> Path:
        return self.path / DAEMON_LOCK_FILE

    @property
    def launch_lock(self) -> Path:
        return self.path / LAUNCH_LOCK_FILE

    @property
    def token_file(self) -> Path:
        return self.path / TOKEN_FILE

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def last_port_file(self) -> Path:
        return self.path / LAST_PORT_FILE

    def create(self) -> None:
        """Creates the directory (and its parents); it is made private (0700)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path.stat().st_mode & 0o777) != 0o700:
            os.chmod(self.path, 0o700)

    def __repr__(self) -> str:
        return f"DaemonDir({str(self.path)!r})"


def find_daemon_dirs(state_dir: Path) -> List[Path]:
    """Directories under `state_dir` (itself, then its children, sorted) that hold a
    daemon's daemon.json or daemon.lock."""
    state_dir = Path(state_dir)
    markers = (DAEMON_STATE_FILE, DAEMON_LOCK_FILE)
    found: List[Path] = []
    if any((state_dir / marker).exists() for marker in markers):
        found.append(state_dir)
    try:
        children = sorted(child for child in state_dir.iterdir() if child.is_dir())
    except OSError:
        return found
    for child in children:
        if any((child / marker).exists() for marker in markers):
            found.append(child)
    return found


__all__: List[str] = ["DaemonDir", "find_daemon_dirs"]
