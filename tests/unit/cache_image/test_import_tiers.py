"""The read-through tiers over a real local store and a real OCI layout: honest hits,
event-loop discipline (nonblocking.check_may_block before any network I/O),
single-flight fetches, and the wait for the first import."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from action_scenario import RecordedAction, make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image.exporter import CacheExporter
from oci_cache.cache_image.imported_images import ImportSet
from oci_cache.cache_image.importer import CacheImporter
from oci_cache.cache_image.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.serving_stack import honest_action_cache
from oci_cache.cache_image.usage_log import UsageLog
from oci_cache.digests import Digest
from oci_cache.errors import NotFoundError
from oci_cache.nonblocking import WouldBlockError
from oci_cache.store.local_store import LocalStore


@pytest.fixture
def exported(tmp_path: Path) -> Tuple[Path, RecordedAction, RecordedAction]:
    """A layout holding two actions; the second one's layer entry is later cut out."""
    store = LocalStore(tmp_path / "source", 1 << 30)
    first, second = make_action(1), make_action(2)
    store_action(store, first)
    store_action(store, second)
    assert (
        CacheExporter(store, tmp_path / "work", confirm_delay=0)
        .export([parse_cache_to(f"type=local,dest={tmp_path / 'layout'}")])
        .ok
    )
    store.close()
    return tmp_path / "layout", first, second


class Tier:
    def __init__(self, root: Path, layout: Path) -> None:
        self.local = LocalStore(root, 1 << 30)
        self.imports = ImportSet(expected=1)
        self.importer = CacheImporter([parse_cache_from(f"type=local,src={layout}")], self.imports, refresh_seconds=0)
        self.blobs = ImportingBlobStore(self.local, self.imports)
        self.usage = UsageLog()
        self.actions = honest_action_cache(self.local, self.blobs, self.imports, self.usage)

    def close(self) -> None:
        self.importer.close()
        self.blobs.close()
        self.local.close()


@pytest.fixture
def tier(tmp_path: Path, exported) -> Iterator[Tier]:  # type: ignore[no-untyped-def]
    made = Tier(tmp_path / "tier", exported[0])
    made.importer.import_all()
    yield made
    made.close()


def _on_loop(function, *args):  # type: ignore[no-untyped-def]
    async def call():  # type: ignore[no-untyped-def]
        return function(*args)

    return asyncio.run(call())


def test_a_hit_is_fetched_verified_stored_and_then_local(tier: Tier, exported) -> None:  # type: ignore[no-untyped-def]
    _, first, _ = exported
    assert not tier.local.contains(next(iter(first.outputs)))
    assert tier.actions.get_action_result(first.action) == first.result
    # Every output was fetched at the hit (honest hit), so reading is local now.
    assert all(tier.local.read_bytes(d) == data for d, data in first.outputs.items())
    assert tier.local.get_action_result(first.action) == first.result  # written locally: journaled for export
    fetched = tier.imports.counters.snapshot().blobs_fetched
    assert tier.actions.get_action_result(first.action) == first.result
    assert tier.imports.counters.snapshot().blobs_fetched == fetched
    assert first.action in tier.usage.actions()


def test_on_the_event_loop_network_work_raises_would_block_before_any_change(tier: Tier, exported) -> None:  # type: ignore[no-untyped-def]
    _, first, _ = exported
    output = next(iter(first.outputs))
    assert _on_loop(tier.blobs.contains, output) is True  # an index lookup: fine on the loop
    assert _on_loop(tier.blobs.find_missing, [output]) == []
    with pytest.raises(WouldBlockError):
        _on_loop(tier.blobs.read_bytes, output)
    with pytest.raises(WouldBlockError):
        _on_loop(tier.actions.get_action_result, first.action)
    assert not tier.local.contains(output) and tier.local.get_action_result(first.action) is None
    assert tier.imports.counters.snapshot().blobs_fetched == 0
    assert tier.actions.get_action_result(first.action) == first.result  # off the loop: works
    assert _on_loop(tier.actions.get_action_result, first.action) == first.result  # now local: inline


def test_an_action_whose_blob_the_image_lacks_is_a_miss(tmp_path: Path, exported) -> None:  # type: ignore[no-untyped-def]
    layout, first, second = exported
    tier = Tier(tmp_path / "tier2", layout)
    try:
        tier.importer.import_all()
        image = tier.imports.images()[0]
        lost = max(second.outputs, key=lambda d: d.size_bytes)
        image.mark_bad(lost)  # as after a failed verification
        assert tier.actions.get_action_result(second.action) is None
        assert tier.local.get_action_result(second.action) is None  # nothing half-imported
        assert tier.blobs.find_missing([lost]) == [lost]
        with pytest.raises(NotFoundError):
            tier.blobs.read_bytes(lost)
        assert tier.actions.get_action_result(first.action) == first.result
    finally:
        tier.close()


def test_a_local_result_naming_imported_blobs_fetches_them_at_the_hit(tier: Tier, exported) -> None:  # type: ignore[no-untyped-def]
    _, first, _ = exported
    tier.local.put_action_result(first.action, first.result)  # the client wrote it; blobs only in the image
    assert tier.actions.get_action_result(first.action) == first.result
    assert all(tier.local.contains(d) for d in first.outputs)


def test_concurrent_reads_of_one_blob_fetch_it_once(tier: Tier, exported) -> None:  # type: ignore[no-untyped-def]
    _, first, _ = exported
    output = max(first.outputs, key=lambda d: d.size_bytes)
    results = []
    threads = [threading.Thread(target=lambda: results.append(tier.blobs.read_bytes(output))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [first.outputs[output]] * 8
    assert tier.imports.counters.snapshot().blobs_fetched == 1


def test_lookups_wait_for_the_first_import_then_give_up_at_the_deadline(tmp_path: Path, exported) -> None:  # type: ignore[no-untyped-def]
    layout, first, _ = exported
    local = LocalStore(tmp_path / "waiting", 1 << 30)
    imports = ImportSet(expected=1, ready_deadline_seconds=1.0)
    blobs = ImportingBlobStore(local, imports)
    output = next(iter(first.outputs))
    try:
        with pytest.raises(WouldBlockError):
            _on_loop(blobs.contains, output)  # would wait: not on the loop
        started = time.monotonic()
        left = imports.wait_time_left()
        assert blobs.contains(output) is False  # nothing imported by the deadline
        assert left - 0.2 < time.monotonic() - started < 3
        assert imports.wait_time_left() == 0 and blobs.contains(output) is False  # no second wait
        CacheImporter([parse_cache_from(f"type=local,src={layout}")], imports, refresh_seconds=0).import_all()
        assert blobs.contains(output) is True
    finally:
        blobs.close()
        local.close()


def test_refresh_reimports_only_a_changed_ref(tmp_path: Path, exported) -> None:  # type: ignore[no-untyped-def]
    layout, _, _ = exported
    tier = Tier(tmp_path / "tier3", layout)
    try:
        tier.importer.import_all()
        digest = tier.imports.images()[0].digest
        assert tier.importer.refresh() == 0
        third = make_action(3)
        store = LocalStore(tmp_path / "writer", 1 << 30)
        store_action(store, third)
        assert (
            CacheExporter(store, tmp_path / "work2", confirm_delay=0)
            .export([parse_cache_to(f"type=local,dest={layout}")])
            .ok
        )
        store.close()
        assert tier.importer.refresh() == 1
        assert tier.imports.images()[0].digest != digest
        assert tier.actions.get_action_result(third.action) == third.result
    finally:
        tier.close()


def test_find_missing_counts_imported_blobs_and_reports_the_rest(tier: Tier, exported) -> None:  # type: ignore[no-untyped-def]
    _, first, _ = exported
    unknown = Digest.of(b"never stored anywhere")
    present = list(first.outputs)
    assert tier.blobs.find_missing(present + [unknown]) == [unknown]
