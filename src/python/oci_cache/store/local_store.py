"""The durable local tier: blobs and action results in a directory, bounded in size.

Layout under `root`:

    LOCK                     flock'd while a process has the store open (one at a time)
    cas/ab/<hash>            a blob, named by its SHA-256 (its size is the file's size)
    ac/ab/<hash>-<size>      a serialized ActionResult, named by the action's digest
    tmp/                     files being written; emptied when the store opens
    journal/actions.log      one line per acknowledged put_action_result (`action_journal.py`)

This module is the writer. Its two helpers have modules of their own: the in-memory
index that bounds the size and orders entries by use (`lru_index.py`), and the journal of
action-cache writes that exports read (`action_journal.py`).

Durability. Every write goes to a file in `tmp/`, is verified (blobs: size and
SHA-256) while it streams in, then flushed and fsync'd, renamed into place, and
the destination directory is fsync'd — only then does the call return. A
process killed at any moment therefore leaves either the complete file or
nothing visible; leftovers in `tmp/` are deleted at the next open.

Size bound. Blobs and action results share one budget (see `lru_index.py`). When a
write takes the store over `max_size_bytes`, the least recently used entries are
deleted until it is under `low_watermark * max_size_bytes`. Entries being written (or
re-uploaded) are pinned and never evicted, so every BlobWriter must end in commit() or
abort() (or be used as a context manager). Uploads in flight (files in `tmp/`) are not
counted. A reader holding a blob open keeps reading it after eviction (POSIX unlink
semantics). A full disk is a ResourceExhaustedError.

Recency. The index answers `contains` and `find_missing` with no system call; they,
reads, action-cache hits and repeated writes all make an entry most recently used.
Reads, hits and repeated writes also set the file's mtime, at most once per
`touch_interval_seconds` per entry, and the index is rebuilt at open in mtime order —
so a restart keeps an approximate LRU order.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import itertools
import logging
import os
import re
import time
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, cast

from oci_cache.digests import EMPTY_DIGEST, Digest, is_sha256_hex
from oci_cache.errors import (
    DigestMismatchError,
    FailedPreconditionError,
    NotFoundError,
    ResourceExhaustedError,
)
from oci_cache.store.action_journal import ActionJournal, ActionJournalEntry
from oci_cache.store.durable_files import fsync, fsync_directory, unlink_quietly, write_all
from oci_cache.store.interfaces import BlobReader
from oci_cache.store.lru_index import BLOCK_SIZE, EntryKey, IndexEntry, LocalStoreStats, LruIndex, disk_bytes

__all__ = ["BLOCK_SIZE", "ActionJournalEntry", "LocalBlobWriter", "LocalStore", "LocalStoreStats", "disk_bytes"]

logger = logging.getLogger(__name__)

_SHARDS = [f"{i:02x}" for i in range(256)]
_ACTION_NAME = re.compile(r"([0-9a-f]{64})-(\d+)")


class _FileBlobReader(io.FileIO):
    """An unbuffered file: each read(n) is one read(2) of up to n bytes."""

    def __init__(self, path: str, digest: Digest) -> None:
        super().__init__(path, "rb")
        self.digest = digest


class _EmptyBlobReader(io.BytesIO):
    def __init__(self) -> None:
        super().__init__(b"")
        self.digest = EMPTY_DIGEST


def _mismatch(expected: Digest, actual: Digest) -> DigestMismatchError:
    return DigestMismatchError(f"digest mismatch: expected {expected}, received bytes have digest {actual}")


def _blob_key(digest: Digest) -> EntryKey:
    return (digest, False)


def _action_key(digest: Digest) -> EntryKey:
    return (digest, True)


class LocalBlobWriter:
    """Streams one blob into a temp file (or, when the blob is already stored,
    only hashes the bytes). Usable as a context manager: leaving the block
    without commit() aborts."""

    def __init__(self, store: "LocalStore", digest: Digest, temp_path: Optional[str], pinned: bool) -> None:
        self.digest = digest
        self._store = store
        self._temp_path = temp_path
        self._pinned = pinned
        self._fd: Optional[int] = None
        if temp_path is not None:
            self._fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._hasher = hashlib.sha256()
        self._received = 0
        self._done = False

    @property
    def committed_size(self) -> int:
        return self._received

    def write(self, data: bytes) -> None:
        if self._done:
            raise FailedPreconditionError(f"upload of {self.digest} is already finished")
        if self._received + len(data) > self.digest.size_bytes:
            received = self._received + len(data)
            self.abort()
            raise DigestMismatchError(
                f"digest mismatch: expected {self.digest.size_bytes} bytes for {self.digest}, "
                f"received at least {received}"
            )
        self._hasher.update(data)
        if self._fd is not None:
            write_all(self._fd, data)
        self._received += len(data)

    def commit(self) -> None:
        if self._done:
            raise FailedPreconditionError(f"upload of {self.digest} is already finished")
        actual = Digest(self._hasher.hexdigest(), self._received)
        if actual != self.digest:
            self.abort()
            raise _mismatch(self.digest, actual)
        self._done = True
        fd, self._fd = self._fd, None
        try:
            self._store._finish_write(self.digest, fd, self._temp_path)
        finally:
            self._release_pin()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._temp_path is not None:
            unlink_quietly(self._temp_path)
        self._release_pin()

    def _release_pin(self) -> None:
        if self._pinned:
            self._store._index.unpin(_blob_key(self.digest))
            self._pinned = False

    def __enter__(self) -> "LocalBlobWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


class LocalStore:
    """A `BlobStore` and `ActionCache` on local disk (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        max_size_bytes: int,
        *,
        low_watermark: float = 0.9,
        touch_interval_seconds: float = 60.0,
    ) -> None:
        if max_size_bytes < BLOCK_SIZE:
            raise ValueError(f"max_size_bytes {max_size_bytes} is too small: want at least {BLOCK_SIZE}")
        if not 0.0 < low_watermark <= 1.0:
            raise ValueError(f"low_watermark {low_watermark} must be in (0, 1]")
        self.root = Path(root)
        self.max_size_bytes = max_size_bytes
        self._touch_interval = touch_interval_seconds
        self._cas_dir = str(self.root / "cas")
        self._ac_dir = str(self.root / "ac")
        self._tmp_dir = str(self.root / "tmp")
        self._index = LruIndex(max_size_bytes, int(max_size_bytes * low_watermark))
        self._temp_names = itertools.count()
        self._closed = False

        self._lock_fd = self._lock_root()
        try:
            self._create_layout()
            self._clear_temp_files()
            self._load_index()
            self._journal = ActionJournal(
                self.root / "journal" / "actions.log",
                lambda digest: self._index.holds(digest, action=True),
                self._index.stats().action_count,
            )
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._unlink_victims(self._index.victims_over_budget())

    # ---- opening ---------------------------------------------------------------

    def _lock_root(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.root / "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FailedPreconditionError(
                    f"local store {self.root} is in use by another process (or another LocalStore in this one)"
                ) from None
            raise
        return fd

    def _create_layout(self) -> None:
        created = False
        for top in (self._cas_dir, self._ac_dir):
            if not os.path.isdir(os.path.join(top, _SHARDS[-1])):
                for shard in _SHARDS:
                    os.makedirs(os.path.join(top, shard), exist_ok=True)
                fsync_directory(top)
                created = True
        for extra in (self._tmp_dir, str(self.root / "journal")):
            if not os.path.isdir(extra):
                os.makedirs(extra, exist_ok=True)
                created = True
        if created:
            fsync_directory(str(self.root))

    def _clear_temp_files(self) -> None:
        with os.scandir(self._tmp_dir) as entries:
            for entry in entries:
                unlink_quietly(entry.path)

    def _load_index(self) -> None:
        found: List[IndexEntry] = []
        for top, is_action in ((self._cas_dir, False), (self._ac_dir, True)):
            for shard in _SHARDS:
                with os.scandir(os.path.join(top, shard)) as entries:
                    for dir_entry in entries:
                        entry = self._entry_for_file(dir_entry, shard, is_action)
                        if entry is not None:
                            found.append(entry)
        self._index.load(found)
        stats = self._index.stats()
        logger.debug(
            "local store %s: %d blobs, %d action results, %d bytes",
            self.root,
            stats.blob_count,
            stats.action_count,
            stats.bytes_used,
        )

    def _entry_for_file(self, dir_entry: "os.DirEntry[str]", shard: str, is_action: bool) -> Optional[IndexEntry]:
        name = dir_entry.name
        stat = dir_entry.stat(follow_symlinks=False)
        if is_action:
            match = _ACTION_NAME.fullmatch(name)
            digest = Digest(match.group(1), int(match.group(2))) if match else None
        else:
            digest = Digest(name, stat.st_size) if is_sha256_hex(name) else None
        if digest is None or not name.startswith(shard) or not dir_entry.is_file(follow_symlinks=False):
            logger.warning("local store: ignoring unexpected file %s", dir_entry.path)
            return None
        if digest == EMPTY_DIGEST and not is_action:
            return None
        return IndexEntry(digest, is_action, disk_bytes(stat.st_size), stat.st_mtime)

    # ---- paths -----------------------------------------------------------------

    def _blob_path(self, digest: Digest) -> str:
        return f"{self._cas_dir}/{digest.hash[:2]}/{digest.hash}"

    def _action_path(self, digest: Digest) -> str:
        return f"{self._ac_dir}/{digest.hash[:2]}/{digest.hash}-{digest.size_bytes}"

    def _path(self, digest: Digest, *, action: bool) -> str:
        return self._action_path(digest) if action else self._blob_path(digest)

    def _path_of(self, entry: IndexEntry) -> str:
        return self._path(entry.digest, action=entry.is_action)

    def _new_temp_path(self, digest: Digest) -> str:
        return f"{self._tmp_dir}/{digest.hash[:16]}.{next(self._temp_names)}"

    # ---- BlobStore ---------------------------------------------------------------

    def contains(self, digest: Digest) -> bool:
        if digest == EMPTY_DIGEST:
            return True
        return self._index.touch_blob(digest)

    def find_missing(self, digests: Iterable[Digest]) -> List[Digest]:
        return self._index.missing_blobs(digests)

    def find_unservable(self, digests: Sequence[Digest]) -> List[Digest]:
        """What the completeness check asks: here, the digests not present."""
        return self.find_missing(digests)

    def open_blob(self, digest: Digest) -> BlobReader:
        """An unbuffered, seekable file positioned at 0: read(n) is one read(2)."""
        if digest == EMPTY_DIGEST:
            return cast(BlobReader, _EmptyBlobReader())
        if not self._use(digest, action=False):
            raise NotFoundError(f"blob {digest} not found")
        try:
            return cast(BlobReader, _FileBlobReader(self._blob_path(digest), digest))
        except FileNotFoundError:
            raise NotFoundError(f"blob {digest} not found (evicted)") from None

    def read_bytes(self, digest: Digest) -> bytes:
        with self.open_blob(digest) as reader:
            return reader.read()

    def put_bytes(self, digest: Digest, data: bytes) -> None:
        actual = Digest(hashlib.sha256(data).hexdigest(), len(data))
        if actual != digest:
            raise _mismatch(digest, actual)
        self._check_fits(digest.size_bytes, f"blob {digest}")
        if digest == EMPTY_DIGEST:
            return
        key = _blob_key(digest)
        self._index.pin(key)
        try:
            if self._use(digest, action=False):
                return
            temp_path = self._new_temp_path(digest)
            self._write_temp_file(temp_path, data)
            self._install_blob(digest, temp_path)
        finally:
            self._index.unpin(key)

    def begin_write(self, digest: Digest) -> LocalBlobWriter:
        """A writer for `digest`. When the blob is already stored, the bytes are
        only hashed (and the stored blob is pinned against eviction meanwhile)."""
        self._check_fits(digest.size_bytes, f"blob {digest}")
        if digest == EMPTY_DIGEST:
            return LocalBlobWriter(self, digest, None, False)
        key = _blob_key(digest)
        self._index.pin(key)
        present = self._index.holds(digest)
        try:
            return LocalBlobWriter(self, digest, None if present else self._new_temp_path(digest), True)
        except BaseException:
            self._index.unpin(key)
            raise

    def iter_blob_digests(self) -> Iterator[Digest]:
        """A snapshot of the stored blobs (the empty blob excluded)."""
        return iter(self._index.digests())

    # ---- ActionCache -------------------------------------------------------------

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        if not self._use(action_digest, action=True):
            return None
        try:
            with open(self._action_path(action_digest), "rb", buffering=0) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self._check_fits(len(serialized_result), f"action result for {action_digest}")
        key = _action_key(action_digest)
        self._index.pin(key)
        try:
            temp_path = self._new_temp_path(action_digest)
            self._write_temp_file(temp_path, serialized_result)
            entry = IndexEntry(action_digest, True, disk_bytes(len(serialized_result)), 0.0)
            self._install(entry, temp_path)
        finally:
            self._index.unpin(key)
        self._journal.append(action_digest)

    def iter_action_digests(self) -> Iterator[Digest]:
        """A snapshot of the stored action digests."""
        return iter(self._index.digests(action=True))

    # ---- journal, stats, lifecycle ------------------------------------------------

    def journal_marker(self) -> str:
        """The marker for "now" (see `iter_action_writes_since`)."""
        return self._journal.marker()

    def iter_action_writes_since(self, marker: Optional[str]) -> Iterator[ActionJournalEntry]:
        """Action digests acknowledged after `marker` (None: since the journal began),
        oldest first; raises ValueError for a malformed marker."""
        return self._journal.iter_since(marker)

    def last_used(self, digest: Digest, *, action: bool = False) -> Optional[float]:
        """When a blob (or, with action=True, an action result) was last used or
        written (epoch seconds, approximate across restarts), or None if absent."""
        return self._index.last_used(digest, action=action)

    def stats(self) -> LocalStoreStats:
        return self._index.stats()

    def close(self) -> None:
        """Releases the directory lock (everything written is already durable)."""
        if self._closed:
            return
        self._closed = True
        self._journal.close()
        os.close(self._lock_fd)

    def __enter__(self) -> "LocalStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- internals ----------------------------------------------------------------

    def _check_fits(self, size_bytes: int, what: str) -> None:
        if disk_bytes(size_bytes) > self.max_size_bytes:
            raise ResourceExhaustedError(
                f"{what} is {size_bytes} bytes, larger than the local store's maximum of {self.max_size_bytes} bytes"
            )

    def _use(self, digest: Digest, *, action: bool) -> bool:
        """Marks an entry most recently used; persists that now and then. False if absent."""
        now = time.time()
        present, persist = self._index.mark_used(digest, action=action, now=now, persist_interval=self._touch_interval)
        if persist:
            try:
                os.utime(self._path(digest, action=action), (now, now))
            except FileNotFoundError:
                pass
        return present

    def _write_temp_file(self, temp_path: str, data: bytes) -> None:
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_all(fd, data)
            fsync(fd)
        except BaseException:
            os.close(fd)
            unlink_quietly(temp_path)
            raise
        os.close(fd)

    def _finish_write(self, digest: Digest, fd: Optional[int], temp_path: Optional[str]) -> None:
        """Makes a verified upload durable and visible (the writer holds a pin)."""
        if temp_path is None or fd is None:
            self._use(digest, action=False)
            return
        try:
            present = self._index.holds(digest)
            if not present:
                fsync(fd)
        except BaseException:
            unlink_quietly(temp_path)
            raise
        finally:
            os.close(fd)
        if present:
            unlink_quietly(temp_path)
            self._use(digest, action=False)
            return
        self._install_blob(digest, temp_path)

    def _install_blob(self, digest: Digest, temp_path: str) -> None:
        """Caller holds a pin on the blob; `temp_path` is complete and fsync'd."""
        self._install(IndexEntry(digest, False, disk_bytes(digest.size_bytes), 0.0), temp_path)

    def _install(self, entry: IndexEntry, temp_path: str) -> None:
        """Renames a complete, fsync'd temp file into place, makes the rename
        durable, and only then indexes it (replacing an older entry with the same
        key) and evicts if needed. The caller holds a pin on the entry, so no
        eviction can unlink the new file in between."""
        path = self._path_of(entry)
        try:
            self._index.run_when_not_being_unlinked(entry.key, lambda: os.rename(temp_path, path))
        except BaseException:
            unlink_quietly(temp_path)
            raise
        fsync_directory(os.path.dirname(path))
        self._unlink_victims(self._index.insert(entry, time.time()))

    def _unlink_victims(self, victims: List[IndexEntry]) -> None:
        if not victims:
            return
        try:
            for entry in victims:
                unlink_quietly(self._path_of(entry))
        finally:
            self._index.finish_unlinking(victims)
        logger.debug("local store: evicted %d entries", len(victims))
