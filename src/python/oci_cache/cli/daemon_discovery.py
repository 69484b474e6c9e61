"""The daemons under a state directory, as `oci-cache status` and `stop` see them,
and calls to their gRPC Control service.

A state directory holds either one daemon (`oci-cache serve --state-dir DIR`) or,
as the Pants plugin lays it out, one daemon per subdirectory; both are found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

import grpc

from oci_cache.daemon.daemon_dir import DAEMON_LOCK_FILE, TOKEN_FILE, find_daemon_dirs
from oci_cache.daemon.life_lock import is_locked
from oci_cache.daemon_state import DaemonState, read_daemon_state
from oci_cache.reapi import control_pb2_grpc

RPC_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class FoundDaemon:
    directory: Path
    state: Optional[DaemonState]  # None: no daemon.json
    locked: bool  # a process holds daemon.lock (alive: running, starting or stopping)

    @property
    def running(self) -> bool:
        return self.state is not None and self.locked

    @property
    def stale(self) -> bool:
        """daemon.json left behind by a daemon that is gone (e.g. killed)."""
        return self.state is not None and not self.locked

    def token(self) -> Optional[str]:
        candidates = [Path(self.state.token_file)] if self.state is not None and self.state.token_file else []
        candidates.append(self.directory / TOKEN_FILE)
        for path in candidates:
            try:
                token = path.read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if token:
                return token
        return None


def find_daemons(state_dir: Path) -> List[FoundDaemon]:
    found = []
    for directory in find_daemon_dirs(state_dir):
        state = read_daemon_state(directory)
        locked = is_locked(directory / DAEMON_LOCK_FILE)
        found.append(FoundDaemon(directory, state, locked))
    return found


def control_stub(daemon: FoundDaemon) -> Tuple[grpc.Channel, Any, List[Tuple[str, str]]]:
    """(channel, Control stub, call metadata) for a daemon with a daemon.json."""
    assert daemon.state is not None
    target = daemon.state.address.split("://", 1)[-1]
    channel = grpc.insecure_channel(target)
    token = daemon.token()
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return channel, control_pb2_grpc.ControlStub(channel), metadata


__all__: List[str] = ["FoundDaemon", "RPC_TIMEOUT_SECONDS", "control_stub", "find_daemons"]
