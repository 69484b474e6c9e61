"""Through a real registry behind a redirecting front (bench/wan_link.py): once the early read
has the manifest, it opens the prefetch's first connections to the image's data layers
(layer_warmup.py), so the prefetch's first reads go straight to the storage host; an entry
with `prefetch=0` opens none, and the import itself is unchanged."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from action_scenario import make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.cache_image.importing.early_manifests import EarlyManifests
from oci_cache.cache_image.importing.imported_images import ImportSet
from oci_cache.cache_image.importing.importer import CacheImporter
from oci_cache.store.local_store import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from wan_link import RegistryFront, WanLink  # noqa: E402

pytestmark = pytest.mark.registry


def _export_image(registry_host: str, repo: str, tmp_path: Path) -> str:
    ref = f"{registry_host}/{repo}:cache"
    store = LocalStore(tmp_path / "writer", 1 << 30)
    try:
        for seed in range(1, 4):
            store_action(store, make_action(seed, file_sizes=(5000, 20_000)))
        report = CacheExporter(store, tmp_path / "work", confirm_delay=0).export([parse_cache_to(f"type=registry,ref={ref}")])
        assert report.ok, report.targets[0].message
    finally:
        store.close()
    return f"{repo}:cache"


@pytest.fixture
def image_behind_a_front(registry_plain, unique_repo: str, tmp_path: Path) -> Iterator[Tuple[WanLink, str]]:  # type: ignore[no-untyped-def]
    """A cache image in the registry, and the link and the "front.address/repo:tag" that reach it."""
    name = _export_image(registry_plain.host, unique_repo, tmp_path)
    link = WanLink(rtt=0.0, bandwidth=0, setup=0.0)
    front = RegistryFront(link, registry_plain.host)
    try:
        yield link, f"{front.address}/{name}"
    finally:
        front.close()
        link.close()


def _wait_for(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _data_layer_urls(importer: CacheImporter) -> List[str]:
    [image] = importer.import_set.images()
    client = image.target.client  # type: ignore[attr-defined]
    return [
        f"{client.base_url()}/v2/{image.target.location.reference.repository}/blobs/sha256:{digest.hash}"  # type: ignore[attr-defined]
        for digest in image.index.layers
    ]


def test_the_early_read_leaves_each_data_layer_redirected_and_its_storage_connections_open(
    image_behind_a_front: Tuple[WanLink, str]
) -> None:
    link, ref = image_behind_a_front
    entries = [parse_cache_from(f"type=registry,ref={ref}")]
    early = EarlyManifests(entries, connections=2)
    # The manifest, then two one-byte reads of the one data layer: each asks the registry
    # (a 307) and the storage host (a Range read).
    assert _wait_for(lambda: link.snapshot().requests.get("GET blob", 0) >= 2)
    importer = CacheImporter(entries, ImportSet(expected=1), refresh_seconds=0, early=early)
    importer.import_all()
    [image] = importer.import_set.images()
    assert image.index.action_count == 3
    memory = image.target.client.transport.redirect_memory  # type: ignore[attr-defined]
    data_layer_url = _data_layer_urls(importer)[0]
    assert memory.lookup(data_layer_url) is not None  # the prefetch goes straight to the storage
    before = link.snapshot().requests.get("GET blob (307)", 0)
    assert image.target.read_blob(f"sha256:{image.index.layers[0].hash}", 0, 10)
    assert link.snapshot().requests.get("GET blob (307)", 0) == before  # no redirect asked again
    importer.close()


def test_an_entry_that_is_not_prefetched_warms_no_connection(image_behind_a_front: Tuple[WanLink, str]) -> None:
    link, ref = image_behind_a_front
    entries = [parse_cache_from(f"type=registry,ref={ref},prefetch=0")]
    early = EarlyManifests(entries, connections=2)
    importer = CacheImporter(entries, ImportSet(expected=1), refresh_seconds=0, early=early)
    importer.import_all()
    time.sleep(0.2)  # a warm-up would have been started before the import's own reads
    [image] = importer.import_set.images()
    memory = image.target.client.transport.redirect_memory  # type: ignore[attr-defined]
    assert memory.lookup(_data_layer_urls(importer)[0]) is None
    # Only the config and the index layer were read: two blob GETs, each redirected.
    assert link.snapshot().requests.get("GET blob (307)", 0) == 2
    assert link.snapshot().requests.get("GET blob", 0) == 2
    importer.close()
