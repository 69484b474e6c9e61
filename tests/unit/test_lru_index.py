"""The local store's in-memory index on its own: the byte budget, use order, pins and late unlinks."""

from __future__ import annotations

import threading
import time
from typing import List

from oci_cache.digests import Digest
from oci_cache.store.lru_index import BLOCK_SIZE, IndexEntry, LruIndex, disk_bytes


def _blob(number: int) -> Digest:
    return Digest.of(f"blob {number}".encode())


def _entry(number: int, *, action: bool = False, used_at: float = 0.0) -> IndexEntry:
    return IndexEntry(_blob(number), action, BLOCK_SIZE, used_at)


def _numbers(victims: List[IndexEntry]) -> List[Digest]:
    return [victim.digest for victim in victims]


def test_sizes_count_in_whole_blocks_and_at_least_one() -> None:
    assert disk_bytes(0) == BLOCK_SIZE
    assert disk_bytes(1) == BLOCK_SIZE
    assert disk_bytes(BLOCK_SIZE) == BLOCK_SIZE
    assert disk_bytes(BLOCK_SIZE + 1) == 2 * BLOCK_SIZE


def test_entries_load_in_order_of_last_use_so_the_oldest_is_evicted_first() -> None:
    index = LruIndex(max_bytes=3 * BLOCK_SIZE, low_watermark_bytes=3 * BLOCK_SIZE)
    index.load([_entry(1, used_at=30.0), _entry(2, used_at=10.0), _entry(3, used_at=20.0)])
    victims = index.insert(_entry(4), now=40.0)
    assert _numbers(victims) == [_blob(2)]
    assert not index.holds(_blob(2))
    assert index.stats().evictions == 1


def test_a_use_moves_an_entry_away_from_eviction() -> None:
    index = LruIndex(max_bytes=2 * BLOCK_SIZE, low_watermark_bytes=2 * BLOCK_SIZE)
    index.insert(_entry(1), now=1.0)
    index.insert(_entry(2), now=2.0)
    assert index.missing_blobs([_blob(1), _blob(9)]) == [_blob(9)]  # blob 1 is now the newest
    assert _numbers(index.insert(_entry(3), now=3.0)) == [_blob(2)]


def test_eviction_goes_down_to_the_low_watermark() -> None:
    index = LruIndex(max_bytes=4 * BLOCK_SIZE, low_watermark_bytes=2 * BLOCK_SIZE)
    for number in range(4):
        assert index.insert(_entry(number), now=float(number)) == []
    victims = index.insert(_entry(4), now=4.0)
    assert _numbers(victims) == [_blob(0), _blob(1), _blob(2)]
    assert index.stats().bytes_used == 2 * BLOCK_SIZE


def test_a_pinned_entry_is_skipped_and_keeps_its_place() -> None:
    index = LruIndex(max_bytes=2 * BLOCK_SIZE, low_watermark_bytes=2 * BLOCK_SIZE)
    index.insert(_entry(1), now=1.0)
    index.insert(_entry(2), now=2.0)
    index.pin((_blob(1), False))
    assert _numbers(index.insert(_entry(3), now=3.0)) == [_blob(2)]
    index.unpin((_blob(1), False))
    assert _numbers(index.insert(_entry(4), now=4.0)) == [_blob(1)]  # still the oldest


def test_blobs_and_action_results_with_one_digest_are_separate_entries_in_one_budget() -> None:
    index = LruIndex(max_bytes=4 * BLOCK_SIZE, low_watermark_bytes=4 * BLOCK_SIZE)
    index.insert(_entry(1), now=1.0)
    index.insert(_entry(1, action=True), now=2.0)
    assert index.holds(_blob(1)) and index.holds(_blob(1), action=True)
    assert index.digests() == [_blob(1)] and index.digests(action=True) == [_blob(1)]
    assert index.stats().bytes_used == 2 * BLOCK_SIZE


def test_reinserting_an_entry_replaces_it_without_counting_it_twice() -> None:
    index = LruIndex(max_bytes=4 * BLOCK_SIZE, low_watermark_bytes=4 * BLOCK_SIZE)
    index.insert(_entry(1), now=1.0)
    index.insert(IndexEntry(_blob(1), False, 2 * BLOCK_SIZE, 0.0), now=2.0)
    assert index.stats().bytes_used == 2 * BLOCK_SIZE
    assert index.last_used(_blob(1)) == 2.0


def test_a_use_asks_for_persisting_at_most_once_per_interval() -> None:
    index = LruIndex(max_bytes=4 * BLOCK_SIZE, low_watermark_bytes=4 * BLOCK_SIZE)
    index.insert(_entry(1), now=100.0)
    assert index.mark_used(_blob(1), action=False, now=130.0, persist_interval=60.0) == (True, False)
    assert index.mark_used(_blob(1), action=False, now=170.0, persist_interval=60.0) == (True, True)
    assert index.mark_used(_blob(1), action=False, now=200.0, persist_interval=60.0) == (True, False)
    assert index.mark_used(_blob(2), action=False, now=200.0, persist_interval=60.0) == (False, False)
    assert index.last_used(_blob(1)) == 200.0


def test_a_rename_onto_a_victim_waits_until_its_unlink_is_done() -> None:
    index = LruIndex(max_bytes=BLOCK_SIZE, low_watermark_bytes=BLOCK_SIZE)
    index.insert(_entry(1), now=1.0)
    victims = index.insert(_entry(2), now=2.0)
    assert _numbers(victims) == [_blob(1)]
    renamed = threading.Event()
    rename = threading.Thread(
        target=lambda: index.run_when_not_being_unlinked((_blob(1), False), renamed.set), daemon=True
    )
    rename.start()
    time.sleep(0.1)
    assert not renamed.is_set()
    assert index.run_when_not_being_unlinked((_blob(2), False), lambda: "another key") == "another key"
    index.finish_unlinking(victims)
    rename.join(timeout=5)
    assert renamed.is_set()


def test_a_shrunk_budget_yields_victims_at_open() -> None:
    index = LruIndex(max_bytes=2 * BLOCK_SIZE, low_watermark_bytes=BLOCK_SIZE)
    index.load([_entry(number, used_at=float(number)) for number in range(3)])
    assert _numbers(index.victims_over_budget()) == [_blob(0), _blob(1)]
    assert index.victims_over_budget() == []
