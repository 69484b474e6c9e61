"""What `remote_auth` learned at the start of a run, for the end-of-run callback.

Both run in the same process (Pants, or pantsd, which serves one run at a time):
`remote_auth` records the daemon it handed to Pants and the daemon's counters at
that moment; the workunits callback factory takes the record when the run's
callbacks are created, so a record never leaks into a later run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional

from oci_cache.daemon.launcher import DaemonHandle


@dataclass(frozen=True)
class RunStart:
    handle: DaemonHandle
    started_monotonic: float = field(default_factory=time.monotonic)


_lock = threading.Lock()
_current: Optional[RunStart] = None


def record(start: Optional[RunStart]) -> None:
    global _current
    with _lock:
        _current = start


def take() -> Optional[RunStart]:
    global _current
    with _lock:
        start, _current = _current, None
    return start


__all__: List[str] = ["RunStart", "record", "take"]
