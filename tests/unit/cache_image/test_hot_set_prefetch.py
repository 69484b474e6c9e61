"""The hot-set prefetch after an import (hot_set_prefetch.py): coalesced Range reads,
every blob verified into the local tier, the byte bound kept, hits then local; and a
result written back with only new execution_metadata is not new to the export."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from action_scenario import RecordedAction, make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image.exporting.exporter import UNCHANGED_MESSAGE, CacheExporter
from oci_cache.cache_image.importing.hot_set_prefetch import HotSetPrefetch, plan_spans, prefetch_bytes_bound
from oci_cache.cache_image.importing.imported_images import ImportSet
from oci_cache.cache_image.importing.importer import CacheImporter
from oci_cache.cache_image.importing.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.exporting.result_equivalence import same_but_execution_metadata
from oci_cache.cache_image.serving_stack import honest_action_cache
from oci_cache.cache_image.usage_log import UsageLog
from oci_cache.digests import Digest
from oci_cache.image_format import BlobEntry
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.store.local_store import LocalStore


def _entry(layer: int, offset: int, length: int) -> BlobEntry:
    return BlobEntry(Digest.of(b"%d-%d" % (layer, offset)), layer, offset, length, 0)


def test_close_entries_of_one_layer_are_read_as_one_span_and_far_or_other_layer_ones_apart() -> None:
    entries = [_entry(0, 0, 100), _entry(0, 150, 100), _entry(0, 10_000, 50), _entry(1, 250, 10), _entry(0, 260, 40)]
    spans = plan_spans(entries, gap_bytes=1000, max_span_bytes=5000)
    assert [(s.layer, s.start, s.end, len(s.entries)) for s in spans] == [(0, 0, 300, 3), (0, 10_000, 10_050, 1), (1, 250, 260, 1)]
    capped = plan_spans([_entry(0, 0, 3000), _entry(0, 3000, 3000)], gap_bytes=1000, max_span_bytes=5000)
    assert [(s.start, s.end) for s in capped] == [(0, 3000), (3000, 6000)]


def test_the_bound_is_the_default_or_the_variable_and_at_most_a_quarter_of_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCI_CACHE_PREFETCH_BYTES", raising=False)
    assert prefetch_bytes_bound(None) == 256 << 20
    assert prefetch_bytes_bound(400 << 20) == 100 << 20
    monkeypatch.setenv("OCI_CACHE_PREFETCH_BYTES", "0")
    assert prefetch_bytes_bound(1 << 40) == 0


@pytest.fixture
def layout(tmp_path: Path) -> Tuple[Path, List[RecordedAction]]:
    store = LocalStore(tmp_path / "source", 1 << 30)
    actions = [make_action(seed) for seed in range(1, 6)]
    for recorded in actions:
        store_action(store, recorded)
    assert CacheExporter(store, tmp_path / "work", confirm_delay=0).export([parse_cache_to(f"type=local,dest={tmp_path / 'layout'}")]).ok
    store.close()
    return tmp_path / "layout", actions


class Tier:
    def __init__(self, root: Path, layout: Path) -> None:
        self.local = LocalStore(root, 1 << 30)
        self.imports = ImportSet(expected=1)
        self.importer = CacheImporter([parse_cache_from(f"type=local,src={layout}")], self.imports, refresh_seconds=0)
        self.blobs = ImportingBlobStore(self.local, self.imports)
        self.usage = UsageLog()
        self.actions = honest_action_cache(self.local, self.blobs, self.imports, self.usage)
        self.importer.import_all()
        self.image = self.imports.images()[0]

    def close(self) -> None:
        self.importer.close()
        self.blobs.close()
        self.local.close()


@pytest.fixture
def tier(tmp_path: Path, layout: Tuple[Path, List[RecordedAction]]) -> Iterator[Tier]:
    made = Tier(tmp_path / "tier", layout[0])
    yield made
    made.close()


def test_a_prefetch_brings_every_blob_of_the_image_local_in_few_requests_and_hits_then_read_nothing(
    tier: Tier, layout: Tuple[Path, List[RecordedAction]]
) -> None:
    _, actions = layout
    stats = HotSetPrefetch(tier.imports, tier.local, 1 << 30).run(tier.image)
    assert stats.blobs == tier.image.index.blob_count and stats.failures == 0
    assert stats.requests <= len(tier.image.loaded.layers)  # one span per layer here
    assert all(tier.local.read_bytes(d) == data for a in actions for d, data in a.outputs.items())
    fetched = tier.imports.counters.snapshot().bytes_fetched
    assert fetched == stats.fetched_bytes
    for recorded in actions:
        assert tier.actions.get_action_result(recorded.action) == recorded.result
    assert tier.imports.counters.snapshot().bytes_fetched == fetched  # every hit was local


def test_a_prefetch_reads_no_more_than_its_bound_and_the_action_results_first(tier: Tier) -> None:
    results = {action.result for action in tier.image.index.iter_actions()}
    result_bytes = sum(tier.image.find_blob(d).compressed_length for d in results)  # type: ignore[union-attr]
    bound = result_bytes + 2000
    stats = HotSetPrefetch(tier.imports, tier.local, bound, gap_bytes=0).run(tier.image)
    assert 0 < stats.fetched_bytes <= bound
    assert all(tier.local.contains(d) for d in results)
    assert not all(tier.local.contains(entry.digest) for entry in tier.image.index.iter_blobs())


def test_spans_are_read_action_results_first_then_each_layer_front_to_back(
    tier: Tier, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: List[Tuple[str, int]] = []
    target = tier.image.target
    original = target.open_blob_stream

    def recording(layer: object, offset: int = 0, length: object = None) -> object:
        reads.append((str(layer), offset))
        return original(layer, offset, length)

    monkeypatch.setattr(target, "open_blob_stream", recording)
    # One blob per span and one span at a time: the order of the reads is the plan's.
    stats = HotSetPrefetch(tier.imports, tier.local, 1 << 30, threads=1, gap_bytes=0, max_span_bytes=1).run(tier.image)
    assert stats.failures == 0 and stats.blobs == tier.image.index.blob_count
    results = {action.result for action in tier.image.index.iter_actions()}
    layers = [str(tier.image.layer_digest(n)) for n in range(len(tier.image.loaded.layers))]
    entries = sorted(tier.image.index.iter_blobs(), key=lambda e: (e.layer, e.compressed_offset))
    expected = [e for e in entries if e.digest in results] + [e for e in entries if e.digest not in results]
    assert reads == [(layers[e.layer], e.compressed_offset) for e in expected]


def test_the_entrys_prefetch_bound_replaces_the_default_and_zero_turns_the_prefetch_off(
    tier: Tier, layout: Tuple[Path, List[RecordedAction]]
) -> None:
    image = tier.image
    prefetch = HotSetPrefetch(tier.imports, tier.local, 1 << 30)
    assert prefetch.bound(image) == 1 << 30
    image.prefetch_bytes = 0
    assert prefetch.bound(image) == 0
    prefetch.image_installed(image)  # nothing starts
    time.sleep(0.2)
    assert tier.imports.counters.snapshot().bytes_fetched == 0
    results = {action.result for action in image.index.iter_actions()}
    image.prefetch_bytes = sum(image.find_blob(d).compressed_length for d in results) + 2000  # type: ignore[union-attr]
    stats = HotSetPrefetch(tier.imports, tier.local, 1 << 30, gap_bytes=0).run(image)
    assert 0 < stats.fetched_bytes <= image.prefetch_bytes
    assert not all(tier.local.contains(entry.digest) for entry in image.index.iter_blobs())
    image.prefetch_bytes = 1 << 40
    assert prefetch.bound(image) == tier.local.max_size_bytes // 4  # never over a quarter of the store


def test_the_importer_hands_the_entrys_prefetch_bound_to_the_image(layout: Tuple[Path, List[RecordedAction]]) -> None:
    imports = ImportSet(expected=1)
    importer = CacheImporter([parse_cache_from(f"type=local,src={layout[0]},prefetch=1MiB")], imports, refresh_seconds=0)
    importer.import_all()
    assert imports.images()[0].prefetch_bytes == 1 << 20
    importer.close()


def test_a_lookup_of_a_blob_a_prefetch_has_claimed_waits_for_it_instead_of_reading_it_again(tier: Tier, tmp_path: Path) -> None:
    entry = max(tier.image.index.iter_blobs(), key=lambda e: e.digest.size_bytes)
    scratch = LocalStore(tmp_path / "scratch", 1 << 30)
    assert tier.imports.fetch_into(entry.digest, scratch)
    data = scratch.read_bytes(entry.digest)
    scratch.close()
    before = tier.imports.counters.snapshot().bytes_fetched
    assert tier.imports.claim_fetches([entry.digest]) == [entry.digest]
    assert tier.imports.claim_fetches([entry.digest]) == []  # already in flight
    outcome: List[bool] = []
    lookup = threading.Thread(target=lambda: outcome.append(tier.imports.fetch_into(entry.digest, tier.local)))
    lookup.start()
    time.sleep(0.2)
    assert lookup.is_alive() and not outcome  # waiting for the prefetch
    tier.local.put_bytes(entry.digest, data)  # what the prefetch stores
    tier.imports.release_fetch(entry.digest)
    lookup.join(timeout=5)
    assert outcome == [True]
    assert tier.imports.counters.snapshot().bytes_fetched == before


def _with_new_execution_metadata(serialized: bytes) -> bytes:
    result = re_pb2.ActionResult()
    result.ParseFromString(serialized)
    result.execution_metadata.worker = "a local run that won its race"
    result.execution_metadata.worker_start_timestamp.seconds = 1_900_000_000
    return result.SerializeToString()


def test_results_equal_but_for_execution_metadata_are_the_same_and_other_differences_are_not() -> None:
    serialized = make_action(7).result
    assert same_but_execution_metadata(serialized, _with_new_execution_metadata(serialized))
    changed = re_pb2.ActionResult()
    changed.ParseFromString(serialized)
    changed.exit_code = 1
    assert not same_but_execution_metadata(serialized, changed.SerializeToString())
    assert not same_but_execution_metadata(serialized, b"\xff\xff not a proto")


def test_an_export_after_a_local_run_rewrote_a_hit_with_new_execution_metadata_publishes_nothing(
    tmp_path: Path, layout: Tuple[Path, List[RecordedAction]]
) -> None:
    path, actions = layout
    tier = Tier(tmp_path / "tier3", path)
    try:
        for recorded in actions:
            assert tier.actions.get_action_result(recorded.action) == recorded.result
        # The local run of the first action finished first and Pants wrote its own result.
        tier.actions.put_action_result(actions[0].action, _with_new_execution_metadata(actions[0].result))
        exporter = CacheExporter(tier.local, tmp_path / "export", imports=tier.imports, usage=tier.usage, fetcher=tier.blobs, confirm_delay=0)
        report = exporter.export([parse_cache_to(f"type=local,dest={path}")])
        exporter.close()
    finally:
        tier.close()
    assert report.ok
    assert report.targets[0].message == UNCHANGED_MESSAGE
    assert report.targets[0].layers_uploaded == 0
