"""The two storage interfaces every tier implements.

A `BlobStore` holds content-addressed blobs (the CAS); an `ActionCache` maps an
action digest to a serialized `ActionResult`. Tiers (the local disk store, the
OCI-image-backed tier) implement them; decorators (completeness checking,
read-through fallback, metrics) wrap them.

Rules every implementation keeps:
- Every blob accepted by `put_bytes` or a `BlobWriter.commit()` has been checked
  against its digest first (DigestMismatchError otherwise), and is durable on
  return: it survives `kill -9` of the process.
- The empty blob is always present.
- Missing things raise NotFoundError (blobs) or return None (action results).
"""

from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Protocol, Sequence


from oci_cache.digests import Digest


class BlobReader(Protocol):
    """An open blob: a seekable binary stream of exactly `digest.size_bytes` bytes."""

    digest: Digest

    def read(self, size: int = -1) -> bytes: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> "BlobReader": ...

    def __exit__(self, *exc_info: object) -> None: ...


class BlobWriter(Protocol):
    """A streamed upload of one blob; nothing is visible until `commit()`."""

    digest: Digest

    @property
    def committed_size(self) -> int:
        """Bytes received so far."""
        ...

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Verifies size and hash, then makes the blob durable and visible.
        Raises DigestMismatchError (and discards the data) when they differ."""
        ...

    def abort(self) -> None:
        """Discards the data received so far."""
        ...


class BlobStore(Protocol):
    def contains(self, digest: Digest) -> bool: ...

    def find_missing(self, digests: Iterable[Digest]) -> List[Digest]:
        """The given digests that this store cannot serve, in the given order."""
        ...

    def open_blob(self, digest: Digest) -> BlobReader:
        """Raises NotFoundError when absent."""
        ...

    def read_bytes(self, digest: Digest) -> bytes:
        """The whole blob; raises NotFoundError when absent."""
        ...

    def put_bytes(self, digest: Digest, data: bytes) -> None:
        """Verifies and stores; raises DigestMismatchError."""
        ...

    def begin_write(self, digest: Digest) -> BlobWriter: ...


class ServableBlobStore(BlobStore, Protocol):
    """A BlobStore that can say which blobs it can serve *now*: what the completeness
    check asks before it reports a hit."""

    def find_unservable(self, digests: Sequence[Digest]) -> List[Digest]:
        """The given digests that cannot be served now, in the given order. The local
        store: those not present. The importing blob store: those neither present nor
        fetched (and verified) from an imported image by this call."""
        ...


class ActionCache(Protocol):
    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        """The serialized ActionResult, or None."""
        ...

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        """Durable on return."""
        ...

    def iter_action_digests(self) -> Iterator[Digest]: ...
