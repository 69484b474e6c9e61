"""`OciLayoutTarget`: the ImageTarget interface on an OCI image-layout directory.

    DIR/oci-layout          {"imageLayoutVersion": "1.0.0"}
    DIR/index.json          an image index; tagged manifests carry the annotation
                            org.opencontainers.image.ref.name = TAG
    DIR/blobs/sha256/<hex>  every blob and manifest

`skopeo copy oci:DIR:TAG docker://…` reads what this writes. Blobs are written to
a temporary file next to their final name, verified, fsynced and renamed, so a
reader never sees a partial blob. index.json is rewritten the same way under an
exclusive `flock` on the directory, so concurrent writers (threads or processes)
never lose each other's tags. Manifests put by digest only (children of an
index) are stored as blobs and not listed in index.json. When a tag moves, blobs
that nothing reachable from index.json has referenced for an hour are removed
(layout_garbage.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Union

from oci_cache.oci.content import (
    STREAM_CHUNK_SIZE,
    BlobId,
    BlobSource,
    BlobStream,
    DigestLike,
    DigestVerifier,
    UploadSource,
    blob_id,
    sha256_digest,
    verify_bytes,
)
from oci_cache.oci.errors import (
    BlobNotFoundError,
    BlobRangeError,
    ContentMismatchError,
    InvalidReferenceError,
    OciError,
)
from oci_cache.oci.layout_garbage import (
    GARBAGE_GRACE_SECONDS,
    UnknownReferencesError,
    collect_garbage,
    reachable_blobs,
    touch_blobs,
)
from oci_cache.oci.media_types import ANNOTATION_REF_NAME, OCI_INDEX, OCI_MANIFEST
from oci_cache.oci.reference import DEFAULT_TAG, is_digest, validate_tag
from oci_cache.oci.target import LayoutLocation, Manifest, PushOutcome

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
MAX_MANIFEST_BYTES = 16 << 20
"""As for registries (registry_client.MAX_MANIFEST_BYTES): larger manifests are refused unread."""
LAYOUT_VERSION = "1.0.0"
_TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600
"""A temporary file older than this was left by a writer that died (kill -9): removed."""


class OciLayoutTarget:
    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        tag: Optional[str] = None,
        garbage_grace_seconds: float = GARBAGE_GRACE_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.garbage_grace_seconds = garbage_grace_seconds
        self._tag = tag or DEFAULT_TAG
        validate_tag(self._tag)
        self._blobs = self.path / "blobs" / "sha256"
        self._swept = False

    @property
    def location(self) -> LayoutLocation:
        return LayoutLocation(self.path)

    @property
    def tag(self) -> str:
        return self._tag

    def describe(self) -> str:
        return f"OCI layout {self.path} (tag {self._tag})"

    def __repr__(self) -> str:
        return f"OciLayoutTarget({str(self.path)!r}, tag={self._tag!r})"

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ blobs

    def _blob_path(self, bid: BlobId) -> Path:
        return self._blobs / bid.hex

    def blob_exists(self, digest: DigestLike) -> Optional[int]:
        try:
            return self._blob_path(blob_id(digest)).stat().st_size
        except FileNotFoundError:
            return None

    def read_blob(self, digest: DigestLike, offset: int = 0, length: Optional[int] = None) -> bytes:
        with self.open_blob_stream(digest, offset, length) as stream:
            return stream.read()

    def open_blob_stream(self, digest: DigestLike, offset: int = 0, length: Optional[int] = None) -> BlobStream:
        bid = blob_id(digest)
        if offset < 0 or (length is not None and length < 0):
            raise InvalidReferenceError(f"invalid byte range: offset {offset}, length {length}")
        where = f"blob {bid.digest} in {self.path}"
        try:
            handle: BinaryIO = open(self._blob_path(bid), "rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"{where} does not exist") from None
        if offset == 0 and length is None:
            return BlobStream(handle.read, handle.close, verifier=DigestVerifier(bid, where), where=where)
        size = os.fstat(handle.fileno()).st_size
        if offset >= size and size > 0 and length != 0:
            handle.close()
            raise BlobRangeError(f"offset {offset} is past the end of {where} ({size} bytes)")
        handle.seek(offset)
        left = [size - offset if length is None else min(length, max(0, size - offset))]

        def read(n: int) -> bytes:
            data = handle.read(min(n, left[0]))
            left[0] -= len(data)
            return data

        return BlobStream(read, handle.close, where=where)

    def push_blob(self, digest: DigestLike, source: BlobSource, mount_from: Optional[str] = None) -> PushOutcome:
        bid = blob_id(digest)
        existing = self.blob_exists(digest)
        if existing is not None and (bid.size is None or existing == bid.size):
            touch_blobs(self._blobs, [bid.hex])  # about to be referenced: not garbage
            return PushOutcome.PRESENT
        upload = source if isinstance(source, UploadSource) else UploadSource(source)
        self._ensure_layout()
        with upload.open() as reader:
            self._write_blob(bid, _chunks(reader), upload.describe())
        return PushOutcome.UPLOADED

    def mount_blob(self, digest: DigestLike, from_repository: str) -> bool:
        if self.blob_exists(digest) is None:
            return False
        touch_blobs(self._blobs, [blob_id(digest).hex])  # about to be referenced: not garbage
        return True

    def _write_blob(self, bid: BlobId, chunks: Iterator[bytes], what: str) -> None:
        """Writes, verifies, fsyncs and renames into place; nothing is left on failure."""
        verifier = DigestVerifier(bid, f"writing {bid.digest} (from {what}) into {self.path}")
        temp = self._blobs / f"{_TEMP_PREFIX}{bid.hex[:16]}-{uuid.uuid4().hex}"
        try:
            with open(temp, "wb") as out:
                for chunk in chunks:
                    verifier.update(chunk)
                    out.write(chunk)
                verifier.finish()
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self._blob_path(bid))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        _fsync_dir(self._blobs)

    # ------------------------------------------------------------------ manifests

    def get_manifest(self, reference: str) -> Optional[Manifest]:
        entry = self._find_entry(reference)
        digest = reference if is_digest(reference) else (entry or {}).get("digest")
        if not isinstance(digest, str) or not is_digest(digest):
            return None
        try:
            with open(self._blob_path(BlobId(digest)), "rb") as handle:
                data = handle.read(MAX_MANIFEST_BYTES + 1)  # bounded: a layout may be hostile
        except FileNotFoundError:
            if entry is not None and not is_digest(reference):
                raise BlobNotFoundError(f"{self.path}: tag {reference} names {digest}, which is missing") from None
            return None
        if len(data) > MAX_MANIFEST_BYTES:
            raise OciError(f"{self.path}: manifest {digest} is over the {MAX_MANIFEST_BYTES}-byte limit")
        size = entry.get("size") if entry else None
        verify_bytes(BlobId(digest, size if isinstance(size, int) else None), data, f"manifest {digest} in {self.path}")
        media_type = (entry or {}).get("mediaType") or _declared_media_type(data)
        return Manifest(media_type, data, digest)

    def head_manifest(self, reference: str) -> Optional[str]:
        if is_digest(reference):
            return reference if self.blob_exists(reference) is not None else None
        entry = self._find_entry(reference)
        digest = entry.get("digest") if entry else None
        return digest if isinstance(digest, str) else None

    def put_manifest(self, reference: str, media_type: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if is_digest(reference):
            if reference != digest:
                raise ContentMismatchError(f"putting manifest {reference} into {self.path}: the bytes hash to {digest}")
        else:
            validate_tag(reference)
        self._ensure_layout()
        if self.blob_exists(digest) != len(data):
            self._write_blob(BlobId(digest, len(data)), iter((data,)), "manifest bytes")
        if is_digest(reference):
            return digest
        descriptor: Dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
        artifact_type = _artifact_type(data)
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        descriptor["annotations"] = {ANNOTATION_REF_NAME: reference}
        with self._locked_index() as index:
            superseded = [m for m in index.get("manifests", []) if _ref_name(m) == reference and m.get("digest") != digest]
            self._start_grace(superseded)
            manifests = [m for m in index.get("manifests", []) if _ref_name(m) != reference]
            manifests.append(descriptor)
            index["manifests"] = manifests
            roots = list(manifests)
        if superseded:
            collect_garbage(self._blobs, roots, self.garbage_grace_seconds)
        return digest

    def _start_grace(self, superseded: List[Dict[str, Any]]) -> None:
        """Touches what the tag named until now: its readers get the whole grace period."""
        if not superseded:
            return
        try:
            touch_blobs(self._blobs, reachable_blobs(self._blobs, superseded))
        except UnknownReferencesError:
            pass  # then garbage collection is skipped too (it walks the same manifests)

    def delete_manifest(self, digest: str) -> bool:
        if not is_digest(digest):
            raise InvalidReferenceError(f"delete_manifest needs a digest (sha256:…), not {digest!r}")
        if not self.path.exists():
            return False
        removed = False
        with self._locked_index() as index:
            before = index.get("manifests", [])
            after = [m for m in before if m.get("digest") != digest]
            removed = len(after) != len(before)
            index["manifests"] = after
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._blob_path(BlobId(digest)))
                removed = True
        return removed

    def tags(self) -> List[str]:
        """Tags listed in index.json (layout-only convenience)."""
        return [name for name in (_ref_name(m) for m in self._read_index().get("manifests", [])) if name]

    # ------------------------------------------------------------------ index.json

    def _find_entry(self, reference: str) -> Optional[Dict[str, Any]]:
        found = None
        for entry in self._read_index().get("manifests", []):
            if is_digest(reference) and entry.get("digest") == reference:
                found = entry
            elif not is_digest(reference) and _ref_name(entry) == reference:
                found = entry  # the last one wins, as in skopeo
        return found

    def _read_index(self) -> Dict[str, Any]:
        try:
            text = (self.path / INDEX_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            index = json.loads(text)
        except ValueError:
            raise OciError(f"{self.path / INDEX_FILE} is not valid JSON; the layout is corrupt") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise OciError(f"{self.path / INDEX_FILE} is not an OCI image index; the layout is corrupt")
        return index

    @contextlib.contextmanager
    def _locked_index(self) -> Iterator[Dict[str, Any]]:
        """Yields index.json's content under an exclusive lock; writes it back atomically."""
        self._ensure_layout()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            index = self._read_index() or _empty_index()
            yield index
            _atomic_write(self.path / INDEX_FILE, json.dumps(index, indent=2).encode("utf-8") + b"\n")
        finally:
            os.close(fd)  # releases the lock

    def _ensure_layout(self) -> None:
        if not self._swept:
            self._swept = True
            remove_stale_temp_files(self._blobs)
            remove_stale_temp_files(self.path)
        if (self.path / LAYOUT_FILE).exists() and self._blobs.is_dir() and (self.path / INDEX_FILE).exists():
            return
        self._blobs.mkdir(parents=True, exist_ok=True)
        if not (self.path / LAYOUT_FILE).exists():
            _atomic_write(self.path / LAYOUT_FILE, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode("utf-8"))
        if not (self.path / INDEX_FILE).exists():
            fd = os.open(self.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not (self.path / INDEX_FILE).exists():
                    _atomic_write(self.path / INDEX_FILE, json.dumps(_empty_index(), indent=2).encode("utf-8") + b"\n")
            finally:
                os.close(fd)


def remove_stale_temp_files(directory: Path, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Removes the temporary files in `directory` that writers killed mid-write left
    (older than `older_than` seconds: a live writer's file is never that old); how many."""
    removed = 0
    now = time.time()
    try:
        names = [name for name in os.listdir(directory) if name.startswith(_TEMP_PREFIX)]
    except OSError:
        return 0
    for name in names:
        path = Path(directory) / name
        with contextlib.suppress(OSError):
            if now - path.lstat().st_mtime > older_than:
                path.unlink()
                removed += 1
    return removed


def _empty_index() -> Dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def _ref_name(entry: Any) -> Optional[str]:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(ANNOTATION_REF_NAME) if isinstance(annotations, dict) else None


def _declared_media_type(data: bytes) -> str:
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "application/octet-stream"
    declared = document.get("mediaType") if isinstance(document, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    return OCI_INDEX if isinstance(document, dict) and "manifests" in document else OCI_MANIFEST


def _artifact_type(data: bytes) -> Optional[str]:
    try:
        value = json.loads(data.decode("utf-8")).get("artifactType")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _chunks(reader: BinaryIO) -> Iterator[bytes]:
    while True:
        chunk = reader.read(STREAM_CHUNK_SIZE)
        if not chunk:
            return
        yield chunk


def _atomic_write(path: Path, data: bytes) -> None:
    temp = path.with_name(f"{_TEMP_PREFIX}{path.name}-{uuid.uuid4().hex}")
    try:
        with open(temp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
