"""The serving stack while it opens: `oci-cache serve` listens first and opens the stack after.

A run of Pants waits for its daemon to answer before it goes on with its own start-up,
and on a fresh machine most of that wait was the stack: loading its modules and opening
the local store (about 0.3 s of 0.7 s). Pants' first cache call comes about a second after
the daemon answers, so `serve` now starts the server on an `OpeningStack`, says where it
listens, and only then opens the real stack and hands it over:

    opening = OpeningStack(can_export=bool(cache_to), has_imports=bool(cache_from), max_bytes=...)
    runtime = DaemonRuntime(identity, opening, stop)      # the server listens on it
    ...
    opening.opened(open_serving_stack(...))               # or opening.failed(error)

Every call on `blobs`, `action_cache`, `local` and `imports` waits until the stack is open
(at most `wait_seconds`), then goes to the real part; a stack that failed to open makes
each of them raise UnavailableError, which the servicers answer as UNAVAILABLE. `status()` waits
a little (`status_wait_seconds`), then reports an empty local store and no imports yet. The
launcher does not ask for the status of a daemon it has just started: the daemon.json that
the spawned process writes once it listens is its answer.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, List, Optional

from oci_cache.errors import UnavailableError
from oci_cache.export_report import ExportReport
from oci_cache.store.lru_index import LocalStoreStats

if TYPE_CHECKING:
    from oci_cache.cache_image.serving_stack import ServingStack, StackStatus

DEFAULT_WAIT_SECONDS = 120.0
STATUS_WAIT_SECONDS = 10.0


class OpeningStack:
    """The ServingStack interface in front of a stack that is still being opened."""

    def __init__(
        self,
        *,
        can_export: bool,
        has_imports: bool,
        max_bytes: int,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        status_wait_seconds: float = STATUS_WAIT_SECONDS,
    ) -> None:
        self._can_export = can_export
        self._max_bytes = max_bytes
        self._wait_seconds = wait_seconds
        self._status_wait_seconds = status_wait_seconds
        self._done = threading.Event()
        self._stack: Optional["ServingStack"] = None
        self._problem = ""
        self.blobs: Any = _WhenOpen(self, "blobs")
        self.action_cache: Any = _WhenOpen(self, "action_cache")
        self.local: Any = _WhenOpen(self, "local")
        self.imports: Any = _WhenOpen(self, "imports") if has_imports else None

    # --- the opener's side

    def opened(self, stack: "ServingStack") -> None:
        """Hands over the open stack (started or not); calls waiting on it go on."""
        if stack.can_export != self._can_export:
            raise ValueError("the opened stack does not match what the server was told about exporting")
        self._stack = stack
        self._done.set()

    def failed(self, problem: str) -> None:
        """The stack could not be opened: every waiting and later call raises UnavailableError."""
        self._problem = problem or "unknown error"
        self._done.set()

    def stack(self) -> "ServingStack":
        """The open stack, waiting for it; UnavailableError when it failed or is too slow to open."""
        if not self._done.wait(self._wait_seconds):
            raise UnavailableError(f"the daemon's store is still opening after {self._wait_seconds:.0f}s")
        if self._stack is None:
            raise UnavailableError(f"the daemon's store could not be opened: {self._problem}")
        return self._stack

    # --- the ServingStack interface

    @property
    def can_export(self) -> bool:
        return self._can_export

    def start(self) -> None:
        """Nothing to do: the opener starts the real stack."""

    def export(self) -> ExportReport:
        return self.stack().export()

    def status(self) -> "StackStatus":
        """The stack's status, once it is open (waiting at most `status_wait_seconds`); an
        empty store and no imports yet when it is still opening or failed to."""
        self._done.wait(self._status_wait_seconds)
        if self._stack is not None:
            return self._stack.status()
        from oci_cache.cache_image.serving_stack import StackStatus

        return StackStatus(local_store=LocalStoreStats(0, 0, 0, self._max_bytes, 0))

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()


class _WhenOpen:
    """One part of the stack (its blobs, action cache, local store or imports), reached
    once the stack is open; each attribute lookup waits for it."""

    def __init__(self, opening: OpeningStack, part: str) -> None:
        self._opening = opening
        self._part = part

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(getattr(self._opening.stack(), self._part), name)


__all__: List[str] = ["DEFAULT_WAIT_SECONDS", "OpeningStack"]
