"""When this daemon last served each action-cache hit (for `last_used` at export).

In memory only: after a crash the next export just keeps older `last_used` times,
which costs recency, never an entry.
"""

from __future__ import annotations

import threading
import time
from typing import Dict, Optional

from oci_cache.digests import Digest


class UsageLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: Dict[Digest, float] = {}

    def action_used(self, action: Digest, when: Optional[float] = None) -> None:
        with self._lock:
            self._actions[action] = time.time() if when is None else when

    def actions(self) -> Dict[Digest, float]:
        """A snapshot: action digest → Unix seconds of its last hit."""
        with self._lock:
            return dict(self._actions)

    def __len__(self) -> int:
        with self._lock:
            return len(self._actions)


__all__ = ["UsageLog"]
