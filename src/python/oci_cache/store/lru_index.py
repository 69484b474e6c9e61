"""The local store's in-memory index: what it holds, the bytes that takes, and the order of use.

Blobs and action results share one budget, counted in whole 4 KiB filesystem blocks
(`disk_bytes`), so many tiny files cannot overrun it. An entry is keyed by its digest and
whether it is an action result. Looking an entry up as used moves it to the most recently
used end; when an insertion takes the total over `max_bytes`, the least recently used
entries are taken out of the index until the total is under `low_watermark_bytes`.
Pinned entries (being written or re-uploaded) are never chosen.

The index does no file I/O. The store unlinks the victims it is handed, outside the
index's lock, and then reports them done with `finish_unlinking`. Until then
`run_when_not_being_unlinked` holds back a rename onto a victim's path, which would
otherwise lose the new file to the late unlink.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple, TypeVar

from oci_cache.digests import EMPTY_DIGEST, Digest

BLOCK_SIZE = 4096

_Result = TypeVar("_Result")
EntryKey = Tuple[Digest, bool]
"""An entry's digest and whether it is an action result."""


def disk_bytes(size_bytes: int) -> int:
    """What one stored file counts against the size bound: whole 4 KiB blocks, at least one."""
    return max(BLOCK_SIZE, -(-size_bytes // BLOCK_SIZE) * BLOCK_SIZE)


class IndexEntry:
    """One indexed file. Hashed by identity (it is a key of the LRU OrderedDict)."""

    __slots__ = ("digest", "is_action", "disk_bytes", "last_used", "persisted_used")

    def __init__(self, digest: Digest, is_action: bool, disk_bytes: int, used_at: float) -> None:
        self.digest = digest
        self.is_action = is_action
        self.disk_bytes = disk_bytes
        self.last_used = used_at
        self.persisted_used = used_at

    @property
    def key(self) -> EntryKey:
        return (self.digest, self.is_action)


@dataclass(frozen=True)
class LocalStoreStats:
    blob_count: int
    action_count: int
    bytes_used: int
    max_bytes: int
    evictions: int


class LruIndex:
    """Blobs and action results by digest, in order of use, within a byte budget."""

    def __init__(self, max_bytes: int, low_watermark_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._low_watermark_bytes = low_watermark_bytes
        self._lock = threading.Lock()
        self._unlinked = threading.Condition(self._lock)
        self._blobs: Dict[Digest, IndexEntry] = {}
        self._actions: Dict[Digest, IndexEntry] = {}
        self._lru: "collections.OrderedDict[IndexEntry, None]" = collections.OrderedDict()
        self._bytes_used = 0
        self._evictions = 0
        self._pins: Dict[EntryKey, int] = {}
        self._being_unlinked: Set[EntryKey] = set()

    def _table(self, is_action: bool) -> Dict[Digest, IndexEntry]:
        return self._actions if is_action else self._blobs

    # ---- loading -------------------------------------------------------------------

    def load(self, entries: Iterable[IndexEntry]) -> None:
        """Adds the entries found on disk, ordered by their last use (oldest first)."""
        with self._lock:
            for entry in sorted(entries, key=lambda entry: entry.last_used):
                self._table(entry.is_action)[entry.digest] = entry
                self._lru[entry] = None
                self._bytes_used += entry.disk_bytes

    # ---- lookups -------------------------------------------------------------------

    def holds(self, digest: Digest, *, action: bool = False) -> bool:
        """Whether the entry is indexed; does not count as a use."""
        with self._lock:
            return digest in self._table(action)

    def touch_blob(self, digest: Digest) -> bool:
        """Whether the blob is indexed; if so it becomes the most recently used."""
        with self._lock:
            entry = self._blobs.get(digest)
            if entry is None:
                return False
            self._lru.move_to_end(entry)
            return True

    def missing_blobs(self, digests: Iterable[Digest]) -> List[Digest]:
        """The digests not indexed (the empty blob is always present); the others become most recently used."""
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

    def mark_used(self, digest: Digest, *, action: bool, now: float, persist_interval: float) -> Tuple[bool, bool]:
        """(present, persist): makes a present entry the most recently used at `now`;
        `persist` says the store should record that on disk (at most once per interval)."""
        with self._lock:
            entry = self._table(action).get(digest)
            if entry is None:
                return False, False
            self._lru.move_to_end(entry)
            entry.last_used = now
            persist = now - entry.persisted_used >= persist_interval
            if persist:
                entry.persisted_used = now
            return True, persist

    def digests(self, *, action: bool = False) -> List[Digest]:
        """A snapshot of the indexed blobs (or action results)."""
        with self._lock:
            return list(self._table(action))

    def last_used(self, digest: Digest, *, action: bool = False) -> Optional[float]:
        with self._lock:
            entry = self._table(action).get(digest)
            return None if entry is None else entry.last_used

    def stats(self) -> LocalStoreStats:
        with self._lock:
            return LocalStoreStats(len(self._blobs), len(self._actions), self._bytes_used, self.max_bytes, self._evictions)

    # ---- pins ------------------------------------------------------------------------

    def pin(self, key: EntryKey) -> None:
        """Keeps the entry from being chosen for eviction until as many unpin calls."""
        with self._lock:
            self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: EntryKey) -> None:
        with self._lock:
            count = self._pins.get(key, 0)
            if count <= 1:
                self._pins.pop(key, None)
            else:
                self._pins[key] = count - 1

    # ---- insertion and eviction --------------------------------------------------------

    def run_when_not_being_unlinked(self, key: EntryKey, action: Callable[[], _Result]) -> _Result:
        """Runs `action` (e.g. a rename onto the entry's path) once no victim with this key
        is still being unlinked, with the lock held so no eviction starts meanwhile."""
        with self._lock:
            while key in self._being_unlinked:
                self._unlinked.wait()
            return action()

    def insert(self, entry: IndexEntry, now: float) -> List[IndexEntry]:
        """Indexes `entry` as used at `now`, replacing an older one with the same key;
        returns the victims the store must unlink (then call finish_unlinking)."""
        with self._lock:
            old = self._table(entry.is_action).get(entry.digest)
            if old is not None:
                del self._lru[old]
                self._bytes_used -= old.disk_bytes
            entry.last_used = entry.persisted_used = now
            self._table(entry.is_action)[entry.digest] = entry
            self._lru[entry] = None
            self._bytes_used += entry.disk_bytes
            return self._choose_victims()

    def victims_over_budget(self) -> List[IndexEntry]:
        """Victims to bring the index under budget (at open, when the bound shrank)."""
        with self._lock:
            return self._choose_victims()

    def finish_unlinking(self, victims: List[IndexEntry]) -> None:
        """The victims' files are gone: renames onto their paths may go ahead."""
        with self._lock:
            self._being_unlinked.difference_update(victim.key for victim in victims)
            self._unlinked.notify_all()

    def _choose_victims(self) -> List[IndexEntry]:
        """Lock held. Takes least recently used entries out of the index until under the
        low watermark, skipping pinned ones; they stay pinned in place, oldest first."""
        if self._bytes_used <= self.max_bytes:
            return []
        victims: List[IndexEntry] = []
        pinned: List[IndexEntry] = []
        while self._bytes_used > self._low_watermark_bytes and self._lru:
            entry, _ = self._lru.popitem(last=False)
            if entry.key in self._pins:
                pinned.append(entry)
                continue
            del self._table(entry.is_action)[entry.digest]
            self._bytes_used -= entry.disk_bytes
            self._evictions += 1
            victims.append(entry)
            self._being_unlinked.add(entry.key)
        for entry in reversed(pinned):
            self._lru[entry] = None
            self._lru.move_to_end(entry, last=False)
        return victims
