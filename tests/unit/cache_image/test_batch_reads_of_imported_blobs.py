"""BatchReadBlobs as Pants 2.28+ uses it (`remote_store_batch_load_enabled`), over the daemon's
tiers (a real local store, a real imported OCI layout, the metrics decorator): local and
imported blobs in one batch, a hit's outputs read without any fetch, and the imported blobs
of a batch fetched together rather than one after another."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from action_scenario import RecordedAction, make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image.exporter import CacheExporter
from oci_cache.cache_image.imported_images import ImportSet
from oci_cache.cache_image.importer import CacheImporter
from oci_cache.cache_image.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.serving_stack import honest_action_cache
from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.server.cas_service import CasService
from oci_cache.store.local_store import LocalStore
from oci_cache.store.metrics import MetricsBlobStore, StoreMetrics

MAX_BATCH = 4 << 20
FETCH_SECONDS = 0.15  # the simulated round trip of one fetch from the image


@pytest.fixture
def layout(tmp_path: Path) -> Tuple[Path, List[RecordedAction]]:
    store = LocalStore(tmp_path / "source", 1 << 30)
    actions = [make_action(seed) for seed in range(1, 4)]
    for recorded in actions:
        store_action(store, recorded)
    report = CacheExporter(store, tmp_path / "work", confirm_delay=0).export(
        [parse_cache_to(f"type=local,dest={tmp_path / 'layout'}")]
    )
    assert report.ok
    store.close()
    return tmp_path / "layout", actions


class Daemon:
    """The daemon's read path: CasService over MetricsBlobStore over ImportingBlobStore."""

    def __init__(self, root: Path, layout: Path) -> None:
        self.local = LocalStore(root, 1 << 30)
        self.imports = ImportSet(expected=1)
        self.importer = CacheImporter([parse_cache_from(f"type=local,src={layout}")], self.imports, refresh_seconds=0)
        self.importer.import_all()
        self.tiers = ImportingBlobStore(self.local, self.imports)
        self.actions = honest_action_cache(self.local, self.tiers, self.imports)
        self.metrics = StoreMetrics()
        self.cas = CasService(MetricsBlobStore(self.tiers, self.metrics), MAX_BATCH)

    def batch_read(self, digests: List[Digest]) -> Dict[Digest, Tuple[int, bytes]]:
        request = re_pb2.BatchReadBlobsRequest(digests=[d.to_proto() for d in digests])
        response = self.cas.batch_read_blobs(request)
        assert [Digest.from_proto(item.digest) for item in response.responses] == digests  # order kept
        return {Digest.from_proto(item.digest): (item.status.code, item.data) for item in response.responses}

    def fetched(self) -> int:
        return self.imports.counters.snapshot().blobs_fetched

    def close(self) -> None:
        self.importer.close()
        self.tiers.close()
        self.local.close()


@pytest.fixture
def daemon(tmp_path: Path, layout) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    made = Daemon(tmp_path / "daemon", layout[0])
    yield made
    made.close()


def test_one_batch_serves_local_imported_empty_and_missing_blobs(daemon: Daemon, layout) -> None:  # type: ignore[no-untyped-def]
    _, actions = layout
    imported = dict(actions[0].outputs)
    local_data = b"written by this machine"
    daemon.local.put_bytes(Digest.of(local_data), local_data)
    missing = Digest.of(b"in no tier")
    digests = [*imported, Digest.of(local_data), EMPTY_DIGEST, missing]
    assert not any(daemon.local.contains(d) for d in imported)

    served = daemon.batch_read(digests)

    for digest, data in imported.items():
        assert served[digest] == (0, data)
        assert daemon.local.contains(digest)  # fetched, verified, kept
    assert served[Digest.of(local_data)] == (0, local_data)
    assert served[EMPTY_DIGEST] == (0, b"")
    assert served[missing][0] == 5  # NOT_FOUND, for that blob only
    assert daemon.fetched() == len(imported)
    assert daemon.metrics.snapshot().blobs_read == len(imported) + 1  # the empty blob is not read


def test_a_hits_outputs_are_read_in_a_batch_without_any_fetch(daemon: Daemon, layout) -> None:  # type: ignore[no-untyped-def]
    """After GetActionResult said hit (its outputs were brought local then), Pants' batch
    loads read only the local tier: no round trip to the image, as with ByteStream.Read."""
    _, actions = layout
    hit = actions[1]
    assert daemon.actions.get_action_result(hit.action) == hit.result
    fetched_at_the_hit = daemon.fetched()
    served = daemon.batch_read(list(hit.outputs))
    assert {digest: data for digest, (_, data) in served.items()} == hit.outputs
    assert daemon.fetched() == fetched_at_the_hit


def test_the_imported_blobs_of_a_batch_are_fetched_together(daemon: Daemon, layout) -> None:  # type: ignore[no-untyped-def]
    _, actions = layout
    wanted = [digest for recorded in actions for digest in recorded.outputs]
    assert len(wanted) >= 8
    real_fetch = daemon.imports.fetch_into
    in_flight: List[int] = [0, 0]  # now, most at once
    lock = threading.Lock()

    def slow_fetch(digest: Digest, store: object) -> bool:  # every fetch costs a round trip
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        time.sleep(FETCH_SECONDS)
        try:
            return real_fetch(digest, store)  # type: ignore[arg-type]
        finally:
            with lock:
                in_flight[0] -= 1

    daemon.imports.fetch_into = slow_fetch  # type: ignore[method-assign]
    began = time.monotonic()
    served = daemon.batch_read(wanted)
    elapsed = time.monotonic() - began
    assert all(code == 0 for code, _ in served.values())
    assert daemon.fetched() == len(wanted)
    assert in_flight[1] > 1, "the batch fetched its blobs one after another"
    one_by_one = len(wanted) * FETCH_SECONDS
    assert elapsed < one_by_one / 2, f"{elapsed:.2f}s for {len(wanted)} fetches of {FETCH_SECONDS}s each"
