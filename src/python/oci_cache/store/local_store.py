"""The durable local tier: blobs and action results in a directory, bounded in size.

Layout under `root`:

    LOCK                     flock'd while a process has the store open (one at a time)
    cas/ab/<hash>            a blob, named by its SHA-256 (its size is the file's size)
    ac/ab/<hash>-<size>      a serialized ActionResult, named by the action's digest
    tmp/                     files being written; emptied when the store opens
    journal/actions.log      one line per acknowledged put_action_result (see below)

Durability. Every write goes to a file in `tmp/`, is verified (blobs: size and
SHA-256) while it streams in, then flushed and fsync'd, renamed into place, and
the destination directory is fsync'd — only then does the call return. A
process killed at any moment therefore leaves either the complete file or
nothing visible; leftovers in `tmp/` are deleted at the next open.

Size bound. Blobs and action results share one budget, counted in 4 KiB
filesystem blocks (so many tiny files cannot overrun it). When a write takes the
store over `max_size_bytes`, the least recently used entries are deleted until
it is under `low_watermark * max_size_bytes`. Entries being written (or
re-uploaded) are pinned and never evicted, so every BlobWriter must end in
commit() or abort() (or be used as a context manager). Uploads in flight (files
in `tmp/`) are not counted. A reader holding a blob open keeps reading it after
eviction (POSIX unlink semantics). A full disk is a ResourceExhaustedError.

Recency. An in-memory index (dict + OrderedDict) answers `contains` and
`find_missing` with no system call; they, reads, action-cache hits and repeated
writes all make an entry most recently used. Reads, hits and repeated writes
also set the file's mtime, at most once per `touch_interval_seconds` per entry,
and the index is rebuilt at open in mtime order — so a restart keeps an
approximate LRU order.

Action journal. `put_action_result` appends "<hash> <size>\\n" to
`journal/actions.log` and fsyncs it (concurrent appends share one fsync) before
returning, so every acknowledged action result is recorded even if the process
is killed right after. The first line names the journal with a random id. A
*marker* is "<journal id>:<byte offset>": `journal_marker()` is "now",
`iter_action_writes_since(marker)` yields every action digest written after it
(an entry can repeat when an action is written twice), each with the marker just
past it, so an exporter can persist how far it got. A marker from another
journal (the store was wiped) or None means "from the beginning". A partial last
line (a crash mid-append, never acknowledged) is cut off at open. A line is about
80 bytes per action-cache write; when the journal is over JOURNAL_COMPACT_MIN_BYTES
and four times what the actions in the store need, it is rewritten at open keeping
the last line of each action the store still holds (the others can never be exported)
under a new id, so every marker reads the rewritten journal from its beginning: the
next export sees every action still held, exported before or not.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import hashlib
import io
import itertools
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, cast

from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.errors import (
    DigestMismatchError,
    FailedPreconditionError,
    NotFoundError,
    ResourceExhaustedError,
)
from oci_cache.store.interfaces import BlobReader

logger = logging.getLogger(__name__)

BLOCK_SIZE = 4096
_SHARDS = [f"{i:02x}" for i in range(256)]
_HASH_NAME = re.compile(r"[0-9a-f]{64}")
_ACTION_NAME = re.compile(r"([0-9a-f]{64})-(\d+)")


def disk_bytes(size_bytes: int) -> int:
    """What one stored file counts against the size bound: whole 4 KiB blocks, at least one."""
    return max(BLOCK_SIZE, -(-size_bytes // BLOCK_SIZE) * BLOCK_SIZE)


@dataclass(frozen=True)
class LocalStoreStats:
    blob_count: int
    action_count: int
    bytes_used: int
    max_bytes: int
    evictions: int


@dataclass(frozen=True)
class ActionJournalEntry:
    """An action result written at some point; `next_marker` is the marker just after it."""

    action_digest: Digest
    next_marker: str


class _Entry:
    """One indexed file. Hashed by identity (it is a key of the LRU OrderedDict)."""

    __slots__ = ("digest", "is_action", "disk_bytes", "last_used", "persisted_used")

    def __init__(self, digest: Digest, is_action: bool, disk_bytes: int, used_at: float) -> None:
        self.digest = digest
        self.is_action = is_action
        self.disk_bytes = disk_bytes
        self.last_used = used_at
        self.persisted_used = used_at


class _FileBlobReader(io.FileIO):
    """An unbuffered file: each read(n) is one read(2) of up to n bytes."""

    def __init__(self, path: str, digest: Digest) -> None:
        super().__init__(path, "rb")
        self.digest = digest


class _EmptyBlobReader(io.BytesIO):
    def __init__(self) -> None:
        super().__init__(b"")
        self.digest = EMPTY_DIGEST


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as e:
        raise _disk_full_or(e) from None


def _fsync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as e:
        raise _disk_full_or(e) from None


def _disk_full_or(error: OSError) -> Exception:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhaustedError(f"the local store's disk is full ({error.strerror})")
    return error


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _mismatch(expected: Digest, actual: Digest) -> DigestMismatchError:
    return DigestMismatchError(f"digest mismatch: expected {expected}, received bytes have digest {actual}")


class LocalBlobWriter:
    """Streams one blob into a temp file (or, when the blob is already stored,
    only hashes the bytes). Usable as a context manager: leaving the block
    without commit() aborts."""

    def __init__(
        self, store: "LocalStore", digest: Digest, temp_path: Optional[str], pinned_path: Optional[str]
    ) -> None:
        self.digest = digest
        self._store = store
        self._temp_path = temp_path
        self._pinned_path = pinned_path
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
            _write_all(self._fd, data)
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
            _unlink_quietly(self._temp_path)
        self._release_pin()

    def _release_pin(self) -> None:
        if self._pinned_path is not None:
            self._store._unpin(self._pinned_path)
            self._pinned_path = None

    def __enter__(self) -> "LocalBlobWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


JOURNAL_COMPACT_MIN_BYTES = 16 << 20
"""A journal smaller than this is never compacted (about 200,000 writes)."""


class _ActionJournal:
    """The append-only record of action-cache writes (see the module docstring)."""

    _MAGIC = b"oci-cache action journal v1 "

    def __init__(self, path: Path, holds_action: Optional[Callable[[Digest], bool]] = None, held: int = 0) -> None:
        self._path = str(path)
        if holds_action is not None:
            self._compact_if_large(holds_action, held)
        self._id, self._header_end, end = self._open_or_create()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._end = end
        self._durable_end = end

    def _open_or_create(self) -> Tuple[str, int, int]:
        try:
            with open(self._path, "rb") as f:
                header = f.readline()
                body_start = f.tell()
                if header.startswith(self._MAGIC) and header.endswith(b"\n"):
                    journal_id = header[len(self._MAGIC) :].strip().decode("ascii", "replace")
                    size = os.fstat(f.fileno()).st_size
                    tail_start = max(body_start, size - 4096)
                    f.seek(tail_start)
                    complete_end = tail_start + f.read().rfind(b"\n") + 1  # tail_start if no newline
                    if complete_end < size:
                        logger.info("action journal: dropping a partial last line (%d bytes)", size - complete_end)
                        os.truncate(self._path, complete_end)
                    return journal_id, body_start, complete_end
                logger.warning("action journal %s has no valid header; starting a new journal", self._path)
        except FileNotFoundError:
            pass
        journal_id = uuid.uuid4().hex
        header = self._MAGIC + journal_id.encode("ascii") + b"\n"
        temp = self._path + ".new"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, header)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, self._path)
        _fsync_directory(os.path.dirname(self._path))
        return journal_id, len(header), len(header)

    def _compact_if_large(self, holds_action: Callable[[Digest], bool], held: int) -> None:
        try:
            size = os.stat(self._path).st_size
        except FileNotFoundError:
            return
        if size < max(JOURNAL_COMPACT_MIN_BYTES, 4 * 80 * held):
            return
        kept: "collections.OrderedDict[Digest, None]" = collections.OrderedDict()
        with open(self._path, "rb") as f:
            if not f.readline().startswith(self._MAGIC):
                return  # not ours: _open_or_create starts a new journal
            for line in f:
                parts = line.split()
                if not line.endswith(b"\n") or len(parts) != 2 or not parts[1].isdigit():
                    continue
                name = parts[0].decode("ascii", "replace")
                if not _HASH_NAME.fullmatch(name):
                    continue
                digest = Digest(name, int(parts[1]))
                if holds_action(digest):
                    kept.pop(digest, None)
                    kept[digest] = None  # the last write of each action, in write order
        header = self._MAGIC + uuid.uuid4().hex.encode("ascii") + b"\n"
        body = b"".join(f"{digest.hash} {digest.size_bytes}\n".encode("ascii") for digest in kept)
        temp = self._path + ".new"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, header + body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, self._path)
        _fsync_directory(os.path.dirname(self._path))
        logger.info(
            "action journal: compacted %d bytes to %d (%d actions still held)", size, len(header) + len(body), len(kept)
        )

    def append(self, digest: Digest) -> None:
        """Returns once the line is on disk; concurrent appends share fsyncs."""
        line = f"{digest.hash} {digest.size_bytes}\n".encode("ascii")
        with self._write_lock:
            _write_all(self._fd, line)
            self._end += len(line)
            mine = self._end
        with self._sync_lock:
            if self._durable_end >= mine:
                return
            target = self._end
            os.fdatasync(self._fd)
            self._durable_end = target

    def marker(self) -> str:
        return f"{self._id}:{self._durable_end}"

    def iter_since(self, marker: Optional[str]) -> Iterator[ActionJournalEntry]:
        start = self._header_end
        if marker is not None:
            journal_id, separator, offset_text = marker.rpartition(":")
            if not separator or not offset_text.isdigit():
                raise ValueError(f"invalid action journal marker {marker!r}: want '<journal id>:<offset>'")
            if journal_id == self._id:
                start = max(self._header_end, int(offset_text))
            else:
                logger.info("action journal marker is from another journal; reading from the beginning")
        end = self._durable_end
        if start >= end:
            return
        with open(self._path, "rb") as f:
            f.seek(start)
            position = start
            while position < end:
                line = f.readline()
                if not line.endswith(b"\n"):
                    return
                position += len(line)
                parts = line.split()
                if len(parts) != 2 or not _HASH_NAME.fullmatch(parts[0].decode("ascii", "replace")):
                    logger.warning("action journal: skipping a malformed line at offset %d", position - len(line))
                    continue
                digest = Digest(parts[0].decode("ascii"), int(parts[1]))
                yield ActionJournalEntry(digest, f"{self._id}:{position}")

    def close(self) -> None:
        os.close(self._fd)


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
        self._low_watermark_bytes = int(max_size_bytes * low_watermark)
        self._touch_interval = touch_interval_seconds
        self._cas_dir = str(self.root / "cas")
        self._ac_dir = str(self.root / "ac")
        self._tmp_dir = str(self.root / "tmp")

        self._lock = threading.Lock()
        self._unlinked = threading.Condition(self._lock)
        self._blobs: Dict[Digest, _Entry] = {}
        self._actions: Dict[Digest, _Entry] = {}
        self._lru: "collections.OrderedDict[_Entry, None]" = collections.OrderedDict()
        self._bytes_used = 0
        self._evictions = 0
        self._pins: Dict[str, int] = {}
        self._being_unlinked: Set[str] = set()
        self._temp_names = itertools.count()
        self._closed = False

        self._lock_fd = self._lock_root()
        try:
            self._create_layout()
            self._clear_temp_files()
            self._rebuild_index()
            self._journal = _ActionJournal(
                self.root / "journal" / "actions.log", self._actions.__contains__, len(self._actions)
            )
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._evict_if_needed()

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
                _fsync_directory(top)
                created = True
        for extra in (self._tmp_dir, str(self.root / "journal")):
            if not os.path.isdir(extra):
                os.makedirs(extra, exist_ok=True)
                created = True
        if created:
            _fsync_directory(str(self.root))

    def _clear_temp_files(self) -> None:
        with os.scandir(self._tmp_dir) as entries:
            for entry in entries:
                _unlink_quietly(entry.path)

    def _rebuild_index(self) -> None:
        found: List[Tuple[float, _Entry]] = []
        for top, is_action in ((self._cas_dir, False), (self._ac_dir, True)):
            for shard in _SHARDS:
                with os.scandir(os.path.join(top, shard)) as entries:
                    for dir_entry in entries:
                        entry = self._entry_for_file(dir_entry, shard, is_action)
                        if entry is not None:
                            found.append((entry.last_used, entry))
        found.sort(key=lambda pair: pair[0])
        for _, entry in found:
            (self._actions if entry.is_action else self._blobs)[entry.digest] = entry
            self._lru[entry] = None
            self._bytes_used += entry.disk_bytes
        logger.debug(
            "local store %s: %d blobs, %d action results, %d bytes",
            self.root,
            len(self._blobs),
            len(self._actions),
            self._bytes_used,
        )

    def _entry_for_file(self, dir_entry: "os.DirEntry[str]", shard: str, is_action: bool) -> Optional[_Entry]:
        name = dir_entry.name
        stat = dir_entry.stat(follow_symlinks=False)
        if is_action:
            match = _ACTION_NAME.fullmatch(name)
            digest = Digest(match.group(1), int(match.group(2))) if match else None
        else:
            digest = Digest(name, stat.st_size) if _HASH_NAME.fullmatch(name) else None
        if digest is None or not name.startswith(shard) or not dir_entry.is_file(follow_symlinks=False):
            logger.warning("local store: ignoring unexpected file %s", dir_entry.path)
            return None
        if digest == EMPTY_DIGEST and not is_action:
            return None
        return _Entry(digest, is_action, disk_bytes(stat.st_size), stat.st_mtime)

    # ---- paths -----------------------------------------------------------------

    def _blob_path(self, digest: Digest) -> str:
        return f"{self._cas_dir}/{digest.hash[:2]}/{digest.hash}"

    def _action_path(self, digest: Digest) -> str:
        return f"{self._ac_dir}/{digest.hash[:2]}/{digest.hash}-{digest.size_bytes}"

    def _path_of(self, entry: _Entry) -> str:
        return self._action_path(entry.digest) if entry.is_action else self._blob_path(entry.digest)

    def _new_temp_path(self, digest: Digest) -> str:
        return f"{self._tmp_dir}/{digest.hash[:16]}.{next(self._temp_names)}"

    # ---- BlobStore ---------------------------------------------------------------

    def contains(self, digest: Digest) -> bool:
        if digest == EMPTY_DIGEST:
            return True
        with self._lock:
            entry = self._blobs.get(digest)
            if entry is None:
                return False
            self._lru.move_to_end(entry)
            return True

    def find_missing(self, digests: Iterable[Digest]) -> List[Digest]:
        missing: List[Digest] = []
        with self._lock:
            blobs = self._blobs
            lru = self._lru
            for digest in digests:
                entry = blobs.get(digest)
                if entry is not None:
                    lru.move_to_end(entry)
                elif digest != EMPTY_DIGEST:
                    missing.append(digest)
        return missing

    def find_unservable(self, digests: Sequence[Digest]) -> List[Digest]:
        """What the completeness check asks: here, the digests not present."""
        return self.find_missing(digests)

    def open_blob(self, digest: Digest) -> BlobReader:
        """An unbuffered, seekable file positioned at 0: read(n) is one read(2)."""
        if digest == EMPTY_DIGEST:
            return cast(BlobReader, _EmptyBlobReader())
        if not self._use(self._blobs, digest):
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
        path = self._blob_path(digest)
        self._pin(path)
        try:
            if self._use(self._blobs, digest):
                return
            temp_path = self._new_temp_path(digest)
            self._write_temp_file(temp_path, data)
            self._install_blob(digest, temp_path)
        finally:
            self._unpin(path)

    def begin_write(self, digest: Digest) -> LocalBlobWriter:
        """A writer for `digest`. When the blob is already stored, the bytes are
        only hashed (and the stored blob is pinned against eviction meanwhile)."""
        self._check_fits(digest.size_bytes, f"blob {digest}")
        if digest == EMPTY_DIGEST:
            return LocalBlobWriter(self, digest, None, None)
        path = self._blob_path(digest)
        self._pin(path)
        with self._lock:
            present = digest in self._blobs
        try:
            return LocalBlobWriter(self, digest, None if present else self._new_temp_path(digest), path)
        except BaseException:
            self._unpin(path)
            raise

    def iter_blob_digests(self) -> Iterator[Digest]:
        """A snapshot of the stored blobs (the empty blob excluded)."""
        with self._lock:
            snapshot = list(self._blobs)
        return iter(snapshot)

    # ---- ActionCache -------------------------------------------------------------

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        if not self._use(self._actions, action_digest):
            return None
        try:
            with open(self._action_path(action_digest), "rb", buffering=0) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self._check_fits(len(serialized_result), f"action result for {action_digest}")
        path = self._action_path(action_digest)
        self._pin(path)
        try:
            temp_path = self._new_temp_path(action_digest)
            self._write_temp_file(temp_path, serialized_result)
            self._install(_Entry(action_digest, True, disk_bytes(len(serialized_result)), 0.0), temp_path, path)
        finally:
            self._unpin(path)
        self._journal.append(action_digest)

    def iter_action_digests(self) -> Iterator[Digest]:
        """A snapshot of the stored action digests."""
        with self._lock:
            snapshot = list(self._actions)
        return iter(snapshot)

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
        with self._lock:
            entry = (self._actions if action else self._blobs).get(digest)
            return None if entry is None else entry.last_used

    def stats(self) -> LocalStoreStats:
        with self._lock:
            return LocalStoreStats(
                blob_count=len(self._blobs),
                action_count=len(self._actions),
                bytes_used=self._bytes_used,
                max_bytes=self.max_size_bytes,
                evictions=self._evictions,
            )

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

    def _use(self, index: Dict[Digest, _Entry], digest: Digest) -> bool:
        """Marks an entry most recently used; persists that now and then. False if absent."""
        now = time.time()
        with self._lock:
            entry = index.get(digest)
            if entry is None:
                return False
            self._lru.move_to_end(entry)
            entry.last_used = now
            persist = now - entry.persisted_used >= self._touch_interval
            if persist:
                entry.persisted_used = now
        if persist:
            try:
                os.utime(self._path_of(entry), (now, now))
            except FileNotFoundError:
                pass
        return True

    def _write_temp_file(self, temp_path: str, data: bytes) -> None:
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            _fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(temp_path)
            raise
        os.close(fd)

    def _finish_write(self, digest: Digest, fd: Optional[int], temp_path: Optional[str]) -> None:
        """Makes a verified upload durable and visible (the writer holds a pin)."""
        if temp_path is None or fd is None:
            self._use(self._blobs, digest)
            return
        try:
            with self._lock:
                present = digest in self._blobs
            if not present:
                _fsync(fd)
        except BaseException:
            _unlink_quietly(temp_path)
            raise
        finally:
            os.close(fd)
        if present:
            _unlink_quietly(temp_path)
            self._use(self._blobs, digest)
            return
        self._install_blob(digest, temp_path)

    def _install_blob(self, digest: Digest, temp_path: str) -> None:
        """Caller holds a pin on the blob's path; `temp_path` is complete and fsync'd."""
        self._install(_Entry(digest, False, disk_bytes(digest.size_bytes), 0.0), temp_path, self._blob_path(digest))

    def _install(self, entry: _Entry, temp_path: str, path: str) -> None:
        """Renames a complete, fsync'd temp file into place, makes the rename
        durable, and only then indexes it (replacing an older entry with the same
        key) and evicts if needed. The caller holds a pin on `path`, so no eviction
        can unlink the new file in between."""
        try:
            with self._lock:
                self._wait_until_not_being_unlinked(path)
                os.rename(temp_path, path)
        except BaseException:
            _unlink_quietly(temp_path)
            raise
        _fsync_directory(os.path.dirname(path))
        index = self._actions if entry.is_action else self._blobs
        with self._lock:
            old = index.get(entry.digest)
            if old is not None:
                self._forget(old)
            entry.last_used = entry.persisted_used = time.time()
            index[entry.digest] = entry
            self._lru[entry] = None
            self._bytes_used += entry.disk_bytes
            victims = self._choose_victims()
        self._unlink_victims(victims)

    def _pin(self, path: str) -> None:
        with self._lock:
            self._pins[path] = self._pins.get(path, 0) + 1

    def _unpin(self, path: str) -> None:
        with self._lock:
            count = self._pins.get(path, 0)
            if count <= 1:
                self._pins.pop(path, None)
            else:
                self._pins[path] = count - 1

    def _forget(self, entry: _Entry) -> None:
        """Drops an entry from the index (lock held)."""
        del self._lru[entry]
        del (self._actions if entry.is_action else self._blobs)[entry.digest]
        self._bytes_used -= entry.disk_bytes

    def _wait_until_not_being_unlinked(self, path: str) -> None:
        """Lock held. An evicted file may still be on its way out; renaming a new
        copy into place before the unlink would lose the new copy."""
        while path in self._being_unlinked:
            self._unlinked.wait()

    def _choose_victims(self) -> List[str]:
        """Lock held. Removes least recently used entries from the index until
        under the low watermark, skipping pinned ones (being written); returns
        their paths, which the caller passes to `_unlink_victims` once it has
        released the lock."""
        if self._bytes_used <= self.max_size_bytes:
            return []
        victims: List[str] = []
        pinned: List[_Entry] = []
        while self._bytes_used > self._low_watermark_bytes and self._lru:
            entry, _ = self._lru.popitem(last=False)
            path = self._path_of(entry)
            if path in self._pins:
                pinned.append(entry)
                continue
            del (self._actions if entry.is_action else self._blobs)[entry.digest]
            self._bytes_used -= entry.disk_bytes
            self._evictions += 1
            victims.append(path)
            self._being_unlinked.add(path)
        for entry in reversed(pinned):
            self._lru[entry] = None
            self._lru.move_to_end(entry, last=False)
        return victims

    def _unlink_victims(self, victims: List[str]) -> None:
        if not victims:
            return
        try:
            for path in victims:
                _unlink_quietly(path)
        finally:
            with self._lock:
                self._being_unlinked.difference_update(victims)
                self._unlinked.notify_all()
        logger.debug("local store: evicted %d entries", len(victims))

    def _evict_if_needed(self) -> None:
        with self._lock:
            victims = self._choose_victims()
        self._unlink_victims(victims)
