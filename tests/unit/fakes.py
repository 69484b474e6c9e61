"""In-memory BlobStore and ActionCache for unit tests (never used outside tests/unit)."""

from __future__ import annotations

import hashlib
import io
import threading
from typing import Dict, Iterable, Iterator, List, Optional

from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.errors import DigestMismatchError, FailedPreconditionError, NotFoundError


def _digest_of(data: bytes) -> Digest:
    return Digest(hashlib.sha256(data).hexdigest(), len(data))


class FakeBlobReader(io.BytesIO):
    def __init__(self, data: bytes, digest: Digest) -> None:
        super().__init__(data)
        self.digest = digest


class FakeBlobWriter:
    def __init__(self, store: "FakeBlobStore", digest: Digest) -> None:
        self.digest = digest
        self._store = store
        self._chunks: List[bytes] = []
        self._received = 0
        self.state = "open"  # open, committed, aborted

    @property
    def committed_size(self) -> int:
        return self._received

    def write(self, data: bytes) -> None:
        if self.state != "open":
            raise FailedPreconditionError(f"writer is {self.state}")
        self._chunks.append(bytes(data))
        self._received += len(data)

    def commit(self) -> None:
        if self.state != "open":
            raise FailedPreconditionError(f"writer is {self.state}")
        data = b"".join(self._chunks)
        self._chunks = []
        if _digest_of(data) != self.digest:
            self.state = "aborted"
            raise DigestMismatchError(f"expected {self.digest}, got {_digest_of(data)}")
        self.state = "committed"
        self._store.blobs[self.digest] = data

    def abort(self) -> None:
        if self.state == "open":
            self.state = "aborted"
            self._chunks = []


class FakeBlobStore:
    def __init__(self) -> None:
        self.blobs: Dict[Digest, bytes] = {}
        self.writers: List[FakeBlobWriter] = []
        self._lock = threading.Lock()

    def add(self, data: bytes) -> Digest:
        digest = _digest_of(data)
        self.blobs[digest] = data
        return digest

    def contains(self, digest: Digest) -> bool:
        return digest == EMPTY_DIGEST or digest in self.blobs

    def find_missing(self, digests: Iterable[Digest]) -> List[Digest]:
        return [d for d in digests if not self.contains(d)]

    def open_blob(self, digest: Digest) -> FakeBlobReader:
        return FakeBlobReader(self.read_bytes(digest), digest)

    def read_bytes(self, digest: Digest) -> bytes:
        if digest == EMPTY_DIGEST:
            return b""
        try:
            return self.blobs[digest]
        except KeyError:
            raise NotFoundError(f"blob {digest} not found") from None

    def put_bytes(self, digest: Digest, data: bytes) -> None:
        if _digest_of(data) != digest:
            raise DigestMismatchError(f"expected {digest}, got {_digest_of(data)}")
        self.blobs[digest] = bytes(data)

    def begin_write(self, digest: Digest) -> FakeBlobWriter:
        writer = FakeBlobWriter(self, digest)
        with self._lock:
            self.writers.append(writer)
        return writer


class FakeActionCache:
    def __init__(self) -> None:
        self.results: Dict[Digest, bytes] = {}

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        return self.results.get(action_digest)

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self.results[action_digest] = bytes(serialized_result)

    def iter_action_digests(self) -> Iterator[Digest]:
        return iter(list(self.results))
