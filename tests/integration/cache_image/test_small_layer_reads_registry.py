"""Through a real registry: a fresh node serving every blob of a small cache image
reads its one data layer whole after the first range, instead of one GET per blob
(small_layer_reads.py); every blob still reads back byte-exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from action_scenario import make_action, store_action
from cache_nodes import open_node
from oci_cache.cache_entries import parse_cache_to
from oci_cache.cache_image.exporter import CacheExporter
from oci_cache.store.local_store import LocalStore
from registry_fixtures import FaultProxy


@pytest.mark.usefixtures("lazy_reads_only")
def test_a_small_layer_is_read_whole_from_its_second_blob(registry_plain, unique_repo: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proxy = FaultProxy(registry_plain.host)
    try:
        ref = f"{proxy.host}/{unique_repo}:cache"
        store = LocalStore(tmp_path / "writer", 1 << 30)
        try:
            actions = [make_action(seed, file_sizes=(100, 2000), tree_file_sizes=(300,)) for seed in range(1, 9)]
            for recorded in actions:
                store_action(store, recorded)
            report = CacheExporter(store, tmp_path / "work", confirm_delay=0).export([parse_cache_to(f"type=registry,ref={ref}")])
            assert report.ok and report.targets[0].layers_uploaded == 1, report.targets[0].message
        finally:
            store.close()

        node = open_node(tmp_path / "reader", cache_from=[ref])
        try:
            before = len(proxy.seen)
            blob_count = 0
            for recorded in actions:
                assert node.serves(recorded)  # hit, result and every output byte-exact
                blob_count += len(recorded.outputs)
            gets = [path for method, path, status in proxy.seen[before:] if method == "GET" and "/blobs/" in path]
            assert blob_count >= 30
            # One Range read, then the whole layer once: 2 GETs for 30+ blobs (and their results).
            assert len(gets) == 2, gets
            image = node.blobs.imports.images()[0]
            assert image.small_layers.layers_read == 1
        finally:
            node.close()
    finally:
        proxy.stop()
