"""In-progress ByteStream uploads, kept between Write streams so they can resume.

A Write stream that ends without `finish_write` (or is cut off) leaves its
session here; QueryWriteStatus reports how much of it is held, and a later Write
that starts at that offset continues it. Sessions idle for longer than
`idle_timeout_seconds` (or beyond `max_sessions`, oldest first) are discarded.
Only one stream at a time works on a session; a second one waits for the first
to let go (a client that retries after a cut-off often arrives before the server
has noticed the cut).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, List, Optional

from oci_cache.errors import UnavailableError
from oci_cache.server.resource_names import BlobResource
from oci_cache.store.interfaces import BlobStore, BlobWriter

logger = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT_SECONDS = 600.0
DEFAULT_MAX_SESSIONS = 1024
_ACQUIRE_TIMEOUT_SECONDS = 10.0


class UploadSession:
    """One upload: the store's writer plus the lock that gives one stream at a time access."""

    def __init__(self, key: str, resource: BlobResource, writer: BlobWriter) -> None:
        self.key = key
        self.resource = resource
        self.writer = writer
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.closed = False
        self.finished = False  # commit() was called: the writer needs no abort

    @property
    def committed_size(self) -> int:
        """Uncompressed bytes received so far."""
        return self.writer.committed_size


class UploadSessions:
    def __init__(
        self,
        blobs: BlobStore,
        idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._blobs = blobs
        self._idle_timeout_seconds = idle_timeout_seconds
        self._max_sessions = max_sessions
        self._clock = clock
        self._sessions: Dict[str, UploadSession] = {}
        self._mutex = threading.Lock()

    def acquire(self, resource: BlobResource, timeout: Optional[float] = None) -> UploadSession:
        """The session for `resource` (created if new), locked for the caller's stream.
        Waits up to `timeout` seconds (default _ACQUIRE_TIMEOUT_SECONDS) while another
        stream holds it, then raises UnavailableError; with timeout 0 it does not wait."""
        deadline = self._clock() + (_ACQUIRE_TIMEOUT_SECONDS if timeout is None else timeout)
        while True:
            session = self._session_for(resource)
            remaining = max(0.0, deadline - self._clock())
            locked = session.lock.acquire(timeout=remaining) if remaining > 0 else session.lock.acquire(blocking=False)
            if locked:
                if not session.closed:
                    return session
                session.lock.release()  # discarded while we waited: start over
                continue
            raise UnavailableError(f"another stream is still writing {resource.digest}; retry later")

    def _session_for(self, resource: BlobResource) -> UploadSession:
        key = resource.upload_key
        with self._mutex:
            session = self._sessions.get(key)
            if session is None:
                self._discard_stale_locked()
                session = UploadSession(key, resource, self._blobs.begin_write(resource.digest))
                self._sessions[key] = session
            return session

    def release(self, session: UploadSession, keep: bool) -> None:
        """Ends the caller's stream on `session`: kept for a resume, or dropped (aborting
        the writer unless it was committed)."""
        try:
            session.last_used = self._clock()
            if not keep:
                self._drop(session)
                if not session.finished:
                    _abort_quietly(session.writer)
        finally:
            session.lock.release()

    def restart(self, session: UploadSession) -> None:
        """Discards what the (locked) session received and starts it afresh."""
        _abort_quietly(session.writer)
        session.writer = self._blobs.begin_write(session.resource.digest)
        session.finished = False

    def committed_size(self, resource: BlobResource) -> Optional[int]:
        """Uncompressed bytes held for an in-progress upload, or None when there is none."""
        with self._mutex:
            session = self._sessions.get(resource.upload_key)
        return None if session is None else session.committed_size

    def close(self) -> None:
        """Aborts every in-progress upload (server shutdown)."""
        with self._mutex:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.closed = True
            _abort_quietly(session.writer)

    def __len__(self) -> int:
        with self._mutex:
            return len(self._sessions)

    def _drop(self, session: UploadSession) -> None:
        with self._mutex:
            if self._sessions.get(session.key) is session:
                del self._sessions[session.key]
        session.closed = True

    def _discard_stale_locked(self) -> None:
        """Drops idle sessions that nobody works on (caller holds the mutex)."""
        now = self._clock()
        candidates = {s.key: s for s in self._sessions.values() if now - s.last_used > self._idle_timeout_seconds}
        excess = len(self._sessions) - len(candidates) - self._max_sessions + 1
        if excess > 0:
            by_age = sorted(self._sessions.values(), key=lambda s: s.last_used)
            for session in by_age:
                if excess <= 0:
                    break
                if session.key not in candidates:
                    candidates[session.key] = session
                    excess -= 1
        discarded: List[UploadSession] = []
        for session in candidates.values():
            if session.closed or not session.lock.acquire(blocking=False):
                continue  # in use right now
            try:
                if self._sessions.get(session.key) is session:
                    del self._sessions[session.key]
                session.closed = True
                discarded.append(session)
            finally:
                session.lock.release()
        for session in discarded:
            _abort_quietly(session.writer)
            logger.debug("discarded idle upload of %s", session.resource.digest)


def _abort_quietly(writer: BlobWriter) -> None:
    try:
        writer.abort()
    except Exception:  # noqa: BLE001 - cleanup of a dead upload must not fail the caller
        logger.warning("could not discard an upload", exc_info=True)
