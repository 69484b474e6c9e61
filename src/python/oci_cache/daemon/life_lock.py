"""A lock file held by a process for as long as it lives (flock: released by the
kernel when the process dies, however it dies).

The daemon holds STATE_DIR/daemon.lock from start to exit; a launcher asks
`is_locked()` to tell a daemon that is starting or stopping (locked) from a stale
daemon.json left by a killed one (unlocked), without trusting a pid that may have
been reused. The launchers' own lock (launch.lock) is the same kind, waited for.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from typing import List, Optional

_WAIT_STEP_SECONDS = 0.02


class HeldLock:
    """An flock held on an open file descriptor until release()."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: Optional[int] = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "HeldLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def try_lock(path: Path) -> Optional[HeldLock]:
    """The lock, or None when another process holds it (does not wait)."""
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return HeldLock(Path(path), fd)


def wait_for_lock(path: Path, timeout: float) -> Optional[HeldLock]:
    """The lock, waiting up to `timeout` seconds for its holder; None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        held = try_lock(path)
        if held is not None or time.monotonic() >= deadline:
            return held
        time.sleep(_WAIT_STEP_SECONDS)


def is_locked(path: Path) -> bool:
    """Whether some process holds the lock now (a missing file: no)."""
    try:
        fd = os.open(str(path), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise
        return False
    finally:
        os.close(fd)  # also drops the lock if we just took it


def wait_until_unlocked(path: Path, timeout: float) -> bool:
    """Waits up to `timeout` seconds for the holder to let go; whether it did."""
    deadline = time.monotonic() + timeout
    while is_locked(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_WAIT_STEP_SECONDS)
    return True


__all__: List[str] = ["HeldLock", "is_locked", "try_lock", "wait_for_lock", "wait_until_unlocked"]
