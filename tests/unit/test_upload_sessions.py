from __future__ import annotations

import threading
from typing import List

import pytest

from fakes import FakeBlobStore
from oci_cache.digests import Digest
from oci_cache.errors import UnavailableError
from oci_cache.server import upload_sessions
from oci_cache.server.resource_names import BlobResource
from oci_cache.server.upload_sessions import UploadSessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resource(upload_id: str, data: bytes = b"data") -> BlobResource:
    return BlobResource("", Digest.of(data), None, upload_id)


def test_session_is_kept_for_a_resume_and_dropped_when_done() -> None:
    blobs = FakeBlobStore()
    sessions = UploadSessions(blobs)
    session = sessions.acquire(resource("u1"))
    session.writer.write(b"da")
    sessions.release(session, keep=True)
    assert sessions.committed_size(resource("u1")) == 2
    again = sessions.acquire(resource("u1"))
    assert again is session
    again.writer.write(b"ta")
    again.finished = True
    again.writer.commit()
    sessions.release(again, keep=False)
    assert sessions.committed_size(resource("u1")) is None
    assert blobs.blobs[Digest.of(b"data")] == b"data"


def test_dropping_an_unfinished_session_aborts_its_writer() -> None:
    blobs = FakeBlobStore()
    sessions = UploadSessions(blobs)
    session = sessions.acquire(resource("u1"))
    sessions.release(session, keep=False)
    assert [w.state for w in blobs.writers] == ["aborted"]


def test_idle_sessions_expire_and_the_count_is_bounded() -> None:
    blobs = FakeBlobStore()
    clock = Clock()
    sessions = UploadSessions(blobs, idle_timeout_seconds=60, max_sessions=3, clock=clock)
    for name in ("a", "b"):
        sessions.release(sessions.acquire(resource(name)), keep=True)
    clock.now += 61
    sessions.release(sessions.acquire(resource("c")), keep=True)  # a and b expire
    assert len(sessions) == 1
    for name in ("d", "e", "f"):
        clock.now += 1
        sessions.release(sessions.acquire(resource(name)), keep=True)
    assert len(sessions) == 3
    assert sessions.committed_size(resource("c")) is None  # the oldest made room
    assert sum(w.state == "aborted" for w in blobs.writers) == 3


def test_a_second_stream_waits_for_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload_sessions, "_ACQUIRE_TIMEOUT_SECONDS", 0.2)
    sessions = UploadSessions(FakeBlobStore())
    first = sessions.acquire(resource("u"))
    with pytest.raises(UnavailableError):
        sessions.acquire(resource("u"))
    got: List[object] = []
    waiter = threading.Thread(target=lambda: got.append(sessions.acquire(resource("u"))))
    waiter.start()
    sessions.release(first, keep=True)
    waiter.join(5)
    assert got == [first]


def test_close_aborts_everything() -> None:
    blobs = FakeBlobStore()
    sessions = UploadSessions(blobs)
    for name in ("a", "b"):
        sessions.release(sessions.acquire(resource(name)), keep=True)
    sessions.close()
    assert len(sessions) == 0 and [w.state for w in blobs.writers] == ["aborted", "aborted"]
