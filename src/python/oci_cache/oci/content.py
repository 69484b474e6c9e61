"""Blob identities, blob sources for uploads, and digest verification of downloads.

A blob is named by an OCI digest string ("sha256:<hex>") or by a
`oci_cache.digests.Digest` (hash + size). With a `Digest`, the size is checked
too; with a string, the SHA-256 alone decides (the size is then whatever the
bytes are).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Optional, Union, cast

from oci_cache.digests import Digest
from oci_cache.oci.errors import ContentMismatchError, InvalidReferenceError
from oci_cache.oci.reference import validate_digest

DigestLike = Union[str, Digest]
# What push_blob accepts: bytes in memory, a file path, or an open binary file.
BlobSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO]

STREAM_CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class BlobId:
    """A normalised blob name: OCI digest string plus the size when known."""

    digest: str
    size: Optional[int] = None

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    def __str__(self) -> str:
        return self.digest


def blob_id(digest: DigestLike) -> BlobId:
    """Normalises a str or Digest; raises InvalidReferenceError for anything else."""
    if isinstance(digest, Digest):
        return BlobId(digest.oci, digest.size_bytes)
    if isinstance(digest, BlobId):
        return digest
    if isinstance(digest, str):
        validate_digest(digest)
        return BlobId(digest, None)
    raise InvalidReferenceError(f"not a digest: {digest!r} (want 'sha256:<hex>' or a Digest)")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DigestVerifier:
    """Hashes bytes as they pass and checks them against a BlobId at the end."""

    def __init__(self, expected: BlobId, where: str) -> None:
        self._expected = expected
        self._where = where
        self._hash = hashlib.sha256()
        self.length = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.length += len(data)

    def finish(self) -> None:
        """Raises ContentMismatchError unless length and digest match."""
        expected = self._expected
        if expected.size is not None and self.length != expected.size:
            raise ContentMismatchError(
                f"{self._where}: got {self.length} bytes for {expected.digest}, expected {expected.size}; "
                "the content is corrupt or truncated and was not used"
            )
        actual = "sha256:" + self._hash.hexdigest()
        if actual != expected.digest:
            raise ContentMismatchError(
                f"{self._where}: content of {expected.digest} hashes to {actual} "
                f"({self.length} bytes); the content is corrupt and was not used"
            )


def verify_bytes(expected: BlobId, data: bytes, where: str) -> None:
    verifier = DigestVerifier(expected, where)
    verifier.update(data)
    verifier.finish()


class BlobStream:
    """A readable blob: `read(n)`, iteration in chunks, `close()`, context manager.

    Whole-blob streams verify length and SHA-256 when the end is reached and raise
    ContentMismatchError from that last `read()`: consume to EOF before trusting
    the bytes. Range streams (offset/length) are not verified — the caller checks
    the bytes it assembles.
    """

    def __init__(
        self,
        read_chunk: Callable[[int], bytes],
        close: Callable[[], None],
        verifier: Optional[DigestVerifier] = None,
        expected_length: Optional[int] = None,
        where: str = "blob",
    ) -> None:
        self._read_chunk = read_chunk
        self._close = close
        self._verifier = verifier
        self._expected_length = expected_length
        self._where = where
        self._received = 0
        self._eof = False
        self._closed = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._eof:
            return b""
        if size is None or size < 0:
            parts: List[bytes] = []
            while True:
                chunk = self.read(STREAM_CHUNK_SIZE)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        if size == 0:
            return b""
        data = self._read_chunk(size)
        if data:
            self._received += len(data)
            if self._verifier is not None:
                self._verifier.update(data)
            return data
        self._at_eof()
        return b""

    def _at_eof(self) -> None:
        self._eof = True
        if self._verifier is not None:
            self._verifier.finish()
        elif self._expected_length is not None and self._received != self._expected_length:
            raise ContentMismatchError(
                f"{self._where}: the stream ended after {self._received} of {self._expected_length} bytes"
            )

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read(STREAM_CHUNK_SIZE)
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "BlobStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class UploadSource:
    """A BlobSource opened for upload: its size and fresh readers for each attempt.

    Bytes and paths can be re-read for retries; an open file can be re-read only
    if it is seekable.
    """

    def __init__(self, source: BlobSource) -> None:
        self._bytes: Optional[bytes] = None
        self._path: Optional[Path] = None
        self._file: Optional[BinaryIO] = None
        self._file_start = 0
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._bytes = bytes(source)
            self.size: Optional[int] = len(self._bytes)
        elif isinstance(source, (str, os.PathLike)):
            self._path = Path(source)
            self.size = self._path.stat().st_size
        elif hasattr(source, "read"):
            self._file = source  # type: ignore[assignment]
            self.size = None
            try:
                self._file_start = source.tell()  # type: ignore[union-attr]
                end = source.seek(0, io.SEEK_END)  # type: ignore[union-attr]
                source.seek(self._file_start)  # type: ignore[union-attr]
                self.size = end - self._file_start
            except (OSError, AttributeError, ValueError):
                self._file_start = -1
        else:
            raise TypeError(f"cannot upload a {type(source).__name__}: want bytes, a path, or a binary file")
        self._opened_once = False

    @property
    def data(self) -> Optional[bytes]:
        """The bytes, when the source is in memory."""
        return self._bytes

    @property
    def replayable(self) -> bool:
        return self._file is None or self._file_start >= 0

    def open(self) -> BinaryIO:
        """A reader positioned at the start of the blob (a new one per attempt)."""
        if self._bytes is not None:
            return io.BytesIO(self._bytes)
        if self._path is not None:
            return open(self._path, "rb")
        assert self._file is not None
        if self._file_start >= 0:
            self._file.seek(self._file_start)
        elif self._opened_once:
            raise OSError("the upload source is a non-seekable stream and cannot be sent again")
        self._opened_once = True
        return cast(BinaryIO, _Unclosable(self._file))

    def describe(self) -> str:
        if self._path is not None:
            return str(self._path)
        return "in-memory data" if self._bytes is not None else "stream"


class _Unclosable(io.RawIOBase):
    """Wraps a caller's file so that closing our reader leaves theirs open."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._inner.read(size)

    def readinto(self, buffer: "bytearray") -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        pass
