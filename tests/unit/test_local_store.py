from __future__ import annotations

import errno
import hashlib
import os
import random
import threading
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.errors import (
    DigestMismatchError,
    FailedPreconditionError,
    NotFoundError,
    ResourceExhaustedError,
)
from oci_cache.store import action_journal as action_journal_module
from oci_cache.store.local_store import BLOCK_SIZE, LocalStore, disk_bytes

MiB = 1 << 20


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[..., LocalStore]]:
    """Opens LocalStores under tmp_path/store and closes them all at the end."""
    opened: List[LocalStore] = []

    def _open(max_size_bytes: int = 64 * MiB, **kwargs: object) -> LocalStore:
        store = LocalStore(tmp_path / "store", max_size_bytes, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., LocalStore]) -> LocalStore:
    return open_store()


def blob(seed: int, size: int = 100) -> bytes:
    return random.Random(seed).randbytes(size)


def files_under(directory: Path) -> List[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


# ---- blobs ----------------------------------------------------------------------


def test_put_then_read_and_open(store: LocalStore) -> None:
    data = blob(1, 10_000)
    digest = Digest.of(data)
    assert not store.contains(digest)
    store.put_bytes(digest, data)
    assert store.contains(digest)
    assert store.read_bytes(digest) == data
    with store.open_blob(digest) as reader:
        assert reader.digest == digest
        assert reader.read(4096) == data[:4096]
        assert reader.read(4096) == data[4096:8192]
        reader.seek(100)
        assert reader.read() == data[100:]
        assert reader.read(10) == b""
    assert (store.root / "cas" / digest.hash[:2] / digest.hash).read_bytes() == data


def test_missing_blob(store: LocalStore) -> None:
    digest = Digest.of(b"nope")
    assert not store.contains(digest)
    with pytest.raises(NotFoundError, match=digest.hash):
        store.open_blob(digest)
    with pytest.raises(NotFoundError):
        store.read_bytes(digest)


def test_contains_needs_the_right_size(store: LocalStore) -> None:
    data = b"hello"
    store.put_bytes(Digest.of(data), data)
    assert not store.contains(Digest(Digest.of(data).hash, 6))


def test_find_missing_keeps_order_and_skips_the_empty_blob(store: LocalStore) -> None:
    present = [Digest.of(blob(i)) for i in range(3)]
    for i, digest in enumerate(present):
        store.put_bytes(digest, blob(i))
    absent = [Digest.of(b"x%d" % i) for i in range(3)]
    query = [absent[2], present[0], EMPTY_DIGEST, absent[0], present[2], absent[1]]
    assert store.find_missing(query) == [absent[2], absent[0], absent[1]]
    assert store.find_missing([]) == []


def test_empty_blob_is_always_present_and_never_stored(store: LocalStore) -> None:
    assert store.contains(EMPTY_DIGEST)
    assert store.read_bytes(EMPTY_DIGEST) == b""
    with store.open_blob(EMPTY_DIGEST) as reader:
        assert reader.digest == EMPTY_DIGEST
        assert reader.read() == b""
    store.put_bytes(EMPTY_DIGEST, b"")
    writer = store.begin_write(EMPTY_DIGEST)
    writer.commit()
    assert files_under(store.root / "cas") == []
    assert store.stats().blob_count == 0
    with pytest.raises(DigestMismatchError):
        store.put_bytes(EMPTY_DIGEST, b"x")


def test_put_mismatch_is_rejected_and_leaves_nothing(store: LocalStore) -> None:
    claimed = Digest.of(b"right")
    with pytest.raises(DigestMismatchError) as info:
        store.put_bytes(claimed, b"wrong")
    assert str(claimed) in str(info.value)
    assert str(Digest.of(b"wrong")) in str(info.value)
    assert not store.contains(claimed)
    assert files_under(store.root / "cas") == files_under(store.root / "tmp") == []


def test_streamed_write(store: LocalStore) -> None:
    data = blob(2, 3 * MiB + 17)
    digest = Digest.of(data)
    writer = store.begin_write(digest)
    for offset in range(0, len(data), MiB):
        writer.write(data[offset : offset + MiB])
        assert writer.committed_size == min(offset + MiB, len(data))
    assert not store.contains(digest), "nothing is visible before commit"
    writer.commit()
    assert store.read_bytes(digest) == data
    assert files_under(store.root / "tmp") == []
    with pytest.raises(FailedPreconditionError):
        writer.write(b"more")


@pytest.mark.parametrize(
    "received",
    [b"x" * 99 + b"y", b"x" * 99, b"x" * 101],
    ids=["same-size-other-bytes", "too-short", "too-long"],
)
def test_streamed_write_mismatch_is_rejected_and_leaves_nothing(store: LocalStore, received: bytes) -> None:
    digest = Digest.of(b"x" * 100)
    writer = store.begin_write(digest)
    with pytest.raises(DigestMismatchError) as info:
        writer.write(received[:50])
        writer.write(received[50:])
        writer.commit()
    assert str(digest.size_bytes) in str(info.value)
    assert not store.contains(digest)
    assert files_under(store.root / "cas") == files_under(store.root / "tmp") == []
    writer.abort()  # harmless after the failure


def test_abort_and_context_manager_discard(store: LocalStore) -> None:
    digest = Digest.of(b"abc")
    writer = store.begin_write(digest)
    writer.write(b"ab")
    assert len(files_under(store.root / "tmp")) == 1
    writer.abort()
    with store.begin_write(digest) as writer2:
        writer2.write(b"abc")
    assert not store.contains(digest)
    assert files_under(store.root / "tmp") == []


def test_rewriting_a_stored_blob_only_hashes_but_still_verifies(store: LocalStore) -> None:
    data = blob(3, 5000)
    digest = Digest.of(data)
    store.put_bytes(digest, data)
    writer = store.begin_write(digest)
    writer.write(data)
    assert files_under(store.root / "tmp") == [], "no temp file for a blob already stored"
    writer.commit()
    bad = store.begin_write(digest)
    bad.write(data[:-1] + b"\0")
    with pytest.raises(DigestMismatchError):
        bad.commit()
    store.put_bytes(digest, data)
    assert store.read_bytes(digest) == data
    assert store.stats().blob_count == 1


def test_blob_larger_than_the_store_is_rejected(open_store: Callable[..., LocalStore]) -> None:
    store = open_store(max_size_bytes=8 * BLOCK_SIZE)
    data = b"z" * (8 * BLOCK_SIZE + 1)
    digest = Digest.of(data)
    with pytest.raises(ResourceExhaustedError, match="larger than"):
        store.put_bytes(digest, data)
    with pytest.raises(ResourceExhaustedError):
        store.begin_write(digest)
    with pytest.raises(ResourceExhaustedError):
        store.put_action_result(Digest.of(b"a"), data)
    fits = b"z" * (8 * BLOCK_SIZE)
    store.put_bytes(Digest.of(fits), fits)
    assert store.contains(Digest.of(fits))


# ---- action results ---------------------------------------------------------------


def test_action_results(store: LocalStore) -> None:
    action = Digest.of(b"action")
    assert store.get_action_result(action) is None
    store.put_action_result(action, b"result-1")
    assert store.get_action_result(action) == b"result-1"
    store.put_action_result(action, b"result-2 longer")
    assert store.get_action_result(action) == b"result-2 longer"
    empty_result_action = Digest.of(b"other")
    store.put_action_result(empty_result_action, b"")
    assert store.get_action_result(empty_result_action) == b""
    assert sorted(store.iter_action_digests()) == sorted([action, empty_result_action])
    assert not store.contains(action), "action results are not blobs"
    stats = store.stats()
    assert (stats.action_count, stats.blob_count, stats.bytes_used) == (2, 0, 2 * BLOCK_SIZE)
    assert (
        store.root / "ac" / action.hash[:2] / f"{action.hash}-{action.size_bytes}"
    ).read_bytes() == b"result-2 longer"


# ---- eviction -----------------------------------------------------------------------


def put_blocks(store: LocalStore, seeds: range) -> List[Digest]:
    """One-block blobs."""
    digests = []
    for seed in seeds:
        data = blob(seed, BLOCK_SIZE)
        digests.append(Digest.of(data))
        store.put_bytes(digests[-1], data)
    return digests


def test_eviction_is_lru_and_goes_down_to_the_low_watermark(open_store: Callable[..., LocalStore]) -> None:
    store = open_store(max_size_bytes=10 * BLOCK_SIZE, low_watermark=0.8)
    digests = put_blocks(store, range(10))
    assert store.stats().bytes_used == 10 * BLOCK_SIZE
    assert store.stats().evictions == 0
    store.read_bytes(digests[0])  # read: refreshed
    assert store.contains(digests[1])  # contains: refreshed
    store.put_action_result(Digest.of(b"act"), b"r")  # 11 blocks: evict down to 8
    assert store.stats().evictions == 3
    assert store.stats().bytes_used == 8 * BLOCK_SIZE
    assert store.find_missing(digests) == digests[2:5]
    for gone in digests[2:5]:
        assert not (store.root / "cas" / gone.hash[:2] / gone.hash).exists()
    assert store.get_action_result(Digest.of(b"act")) == b"r"


def test_action_hits_refresh_recency(open_store: Callable[..., LocalStore]) -> None:
    store = open_store(max_size_bytes=4 * BLOCK_SIZE, low_watermark=0.75)
    actions = [Digest.of(b"a%d" % i) for i in range(4)]
    for action in actions:
        store.put_action_result(action, b"r")
    assert store.get_action_result(actions[0]) == b"r"
    put_blocks(store, range(1))
    assert store.get_action_result(actions[0]) == b"r"
    assert store.get_action_result(actions[1]) is None
    assert store.get_action_result(actions[2]) is None
    assert sorted(store.iter_action_digests()) == sorted([actions[0], actions[3]])


def test_a_new_blob_bigger_than_the_watermark_evicts_the_others_not_itself(
    open_store: Callable[..., LocalStore],
) -> None:
    store = open_store(max_size_bytes=10 * BLOCK_SIZE)
    small = put_blocks(store, range(3))
    big = b"B" * (10 * BLOCK_SIZE)
    store.put_bytes(Digest.of(big), big)
    assert store.read_bytes(Digest.of(big)) == big
    assert store.find_missing(small) == small


def test_a_blob_being_rewritten_is_not_evicted(open_store: Callable[..., LocalStore]) -> None:
    store = open_store(max_size_bytes=4 * BLOCK_SIZE, low_watermark=0.5)
    oldest = put_blocks(store, range(1))[0]
    put_blocks(store, range(1, 4))
    writer = store.begin_write(oldest)  # already stored: pinned while the upload runs
    put_blocks(store, range(4, 6))
    assert store.contains(oldest)
    writer.write(blob(0, BLOCK_SIZE))
    writer.commit()
    assert store.read_bytes(oldest) == blob(0, BLOCK_SIZE)


def test_an_open_blob_stays_readable_after_eviction(open_store: Callable[..., LocalStore]) -> None:
    store = open_store(max_size_bytes=4 * BLOCK_SIZE)
    first = put_blocks(store, range(1))[0]
    reader = store.open_blob(first)
    put_blocks(store, range(1, 8))
    assert not store.contains(first)
    assert reader.read() == blob(0, BLOCK_SIZE)
    reader.close()
    with pytest.raises(NotFoundError):
        store.open_blob(first)


# ---- restart ------------------------------------------------------------------------


def test_restart_rebuilds_the_index_in_mtime_order(open_store: Callable[..., LocalStore], tmp_path: Path) -> None:
    store = open_store(touch_interval_seconds=0)
    digests = put_blocks(store, range(5))
    action = Digest.of(b"act")
    store.put_action_result(action, b"result")
    for i, digest in enumerate(digests):  # digests[0] oldest ... digests[4] newest, all long ago
        path = store.root / "cas" / digest.hash[:2] / digest.hash
        os.utime(path, (1_000_000 + 10 * i, 1_000_000 + 10 * i))
    store.read_bytes(digests[4])  # persisted right away with touch_interval 0
    before = store.stats()
    store.close()
    (tmp_path / "store" / "tmp" / "leftover.0").write_bytes(b"partial")

    reopened = open_store(touch_interval_seconds=0)
    after = reopened.stats()
    assert (after.blob_count, after.action_count, after.bytes_used) == (
        before.blob_count,
        before.action_count,
        before.bytes_used,
    )
    assert files_under(tmp_path / "store" / "tmp") == []
    assert reopened.get_action_result(action) == b"result"
    assert reopened.read_bytes(digests[2]) == blob(2, BLOCK_SIZE)
    reopened.close()

    # Reopen smaller: the oldest by mtime go first: [0], [1], [3] ([4] and [2] were read since).
    small = open_store(max_size_bytes=4 * BLOCK_SIZE, low_watermark=0.75)
    assert small.find_missing(digests) == [digests[0], digests[1], digests[3]]
    assert small.stats().bytes_used == 3 * BLOCK_SIZE


def test_unexpected_files_are_ignored(open_store: Callable[..., LocalStore], tmp_path: Path) -> None:
    store = open_store()
    store.close()
    (tmp_path / "store" / "cas" / "ab" / "not-a-digest").write_bytes(b"?")
    (tmp_path / "store" / "ac" / "ab" / ("ab" * 32)).write_bytes(b"?")  # no -size suffix
    (tmp_path / "store" / "cas" / "00" / ("ab" * 32)).write_bytes(b"?")  # wrong shard
    reopened = open_store()
    assert reopened.stats().blob_count == 0 and reopened.stats().action_count == 0


def test_only_one_open_store_per_directory(open_store: Callable[..., LocalStore]) -> None:
    first = open_store()
    with pytest.raises(FailedPreconditionError, match="in use"):
        open_store()
    first.close()
    open_store()


def test_invalid_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too small"):
        LocalStore(tmp_path / "a", 100)
    with pytest.raises(ValueError, match="low_watermark"):
        LocalStore(tmp_path / "b", MiB, low_watermark=1.5)


# ---- journal --------------------------------------------------------------------------


def test_journal_lists_action_writes_since_a_marker(open_store: Callable[..., LocalStore], tmp_path: Path) -> None:
    store = open_store()
    start = store.journal_marker()
    actions = [Digest.of(b"a%d" % i) for i in range(3)]
    for action in actions:
        store.put_action_result(action, b"r")
    entries = list(store.iter_action_writes_since(None))
    assert [e.action_digest for e in entries] == actions
    assert list(store.iter_action_writes_since(start)) == entries
    assert entries[-1].next_marker == store.journal_marker()
    assert [e.action_digest for e in store.iter_action_writes_since(entries[0].next_marker)] == actions[1:]
    assert list(store.iter_action_writes_since(store.journal_marker())) == []
    foreign = "0" * 32 + ":" + entries[0].next_marker.split(":")[1]
    assert list(store.iter_action_writes_since(foreign)) == entries
    with pytest.raises(ValueError, match="marker"):
        list(store.iter_action_writes_since("garbage"))

    store.put_action_result(actions[0], b"again")  # a rewrite is listed again
    marker = store.journal_marker()
    store.close()
    with open(tmp_path / "store" / "journal" / "actions.log", "ab") as journal:
        journal.write(b"deadbeef")  # a crash in the middle of an unacknowledged append
    reopened = open_store()
    assert reopened.journal_marker() == marker
    assert [e.action_digest for e in reopened.iter_action_writes_since(entries[-1].next_marker)] == [actions[0]]
    reopened.put_action_result(actions[2], b"r")
    assert [e.action_digest for e in reopened.iter_action_writes_since(marker)] == [actions[2]]


def test_a_wiped_store_starts_a_new_journal(open_store: Callable[..., LocalStore], tmp_path: Path) -> None:
    store = open_store()
    store.put_action_result(Digest.of(b"a"), b"r")
    old_marker = store.journal_marker()
    store.close()
    (tmp_path / "store" / "journal" / "actions.log").unlink()
    reopened = open_store()
    reopened.put_action_result(Digest.of(b"b"), b"r")
    assert [e.action_digest for e in reopened.iter_action_writes_since(old_marker)] == [Digest.of(b"b")]


def test_a_large_journal_is_compacted_to_the_actions_the_store_holds(
    open_store: Callable[..., LocalStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(action_journal_module, "JOURNAL_COMPACT_MIN_BYTES", 4096)
    journal_path = tmp_path / "store" / "journal" / "actions.log"
    kept, evicted, rewritten = (Digest.of(b"kept"), Digest.of(b"evicted"), Digest.of(b"rewritten"))
    store = open_store()
    for action in (kept, evicted, rewritten):
        store.put_action_result(action, b"r")
    for number in range(60):  # an action rewritten often: a long journal of repeats
        store.put_action_result(rewritten, b"r%d" % number)
    exported_up_to = store.journal_marker()  # as an exporter that got everything so far
    store.close()
    size_before = journal_path.stat().st_size
    assert size_before > 4096
    for path in (tmp_path / "store" / "ac").rglob(evicted.hash + "*"):
        path.unlink()  # as if evicted: it can never be exported

    reopened = open_store()
    assert journal_path.stat().st_size < size_before // 10
    # A new journal id: the old marker reads the compacted journal from its beginning.
    assert [e.action_digest for e in reopened.iter_action_writes_since(exported_up_to)] == [kept, rewritten]
    assert reopened.get_action_result(rewritten) == b"r59"
    reopened.put_action_result(evicted, b"back")
    assert [e.action_digest for e in reopened.iter_action_writes_since(exported_up_to)] == [kept, rewritten, evicted]
    marker = reopened.journal_marker()
    reopened.close()
    again = open_store()  # small now: left as it is
    assert again.journal_marker() == marker


# ---- concurrency ----------------------------------------------------------------------


def test_concurrent_writers_and_readers_keep_the_store_consistent(open_store: Callable[..., LocalStore]) -> None:
    store = open_store(max_size_bytes=64 * BLOCK_SIZE)
    payloads = [blob(seed, random.Random(seed).choice([10, 3000, 9000, 20000])) for seed in range(60)]
    digests = [Digest.of(p) for p in payloads]
    actions = [Digest.of(b"action-%d" % i) for i in range(40)]
    errors: List[BaseException] = []
    reads_ok = [0]
    action_puts = [0]

    def worker(worker_id: int) -> None:
        rng = random.Random(worker_id)
        try:
            for _ in range(150):
                i = rng.randrange(len(payloads))
                op = rng.random()
                if op < 0.35:
                    store.put_bytes(digests[i], payloads[i])
                elif op < 0.5:
                    with store.begin_write(digests[i]) as writer:
                        for offset in range(0, len(payloads[i]), 4000):
                            writer.write(payloads[i][offset : offset + 4000])
                        writer.commit()
                elif op < 0.75:
                    try:
                        with store.open_blob(digests[i]) as reader:
                            data = reader.read()
                        assert data == payloads[i], "a read returned wrong bytes"
                        reads_ok[0] += 1
                    except NotFoundError:
                        pass
                elif op < 0.85:
                    store.find_missing(digests[i : i + 10])
                elif op < 0.95:
                    action = actions[i % len(actions)]
                    store.put_action_result(action, action.hash.encode())
                    action_puts[0] += 1
                else:
                    action = actions[i % len(actions)]
                    result = store.get_action_result(action)
                    assert result in (None, action.hash.encode())
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert reads_ok[0] > 0
    stats = store.stats()
    assert stats.evictions > 0
    assert stats.bytes_used <= stats.max_bytes
    assert files_under(store.root / "tmp") == []

    on_disk = files_under(store.root / "cas")
    assert sorted(p.name for p in on_disk) == sorted(d.hash for d in store.iter_blob_digests())
    for path in on_disk:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    action_files = files_under(store.root / "ac")
    assert len(action_files) == stats.action_count
    assert stats.bytes_used == sum(disk_bytes(p.stat().st_size) for p in on_disk + action_files)
    journal = list(store.iter_action_writes_since(None))
    assert len(journal) == action_puts[0] > 0
    assert {e.action_digest for e in journal} >= set(store.iter_action_digests())


def test_a_full_disk_is_resource_exhausted(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("oci_cache.store.local_store.os.write", no_space)
    with pytest.raises(ResourceExhaustedError, match="disk is full"):
        store.put_bytes(Digest.of(b"data"), b"data")
    writer = store.begin_write(Digest.of(b"data"))
    with pytest.raises(ResourceExhaustedError):
        writer.write(b"data")
    writer.abort()
    with pytest.raises(ResourceExhaustedError):
        store.put_action_result(Digest.of(b"a"), b"r")
    monkeypatch.undo()
    assert files_under(store.root / "tmp") == []
    assert store.stats().blob_count == store.stats().action_count == 0
