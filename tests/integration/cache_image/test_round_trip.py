"""Export → fresh import on another state directory, byte-exact, for every
compression × oci-mediatypes × image-manifest × mode, through a real registry and
through an OCI layout directory.

The exporting side is one local store (module-scoped) with successful actions, a
failed one, and a 5 MB output spanning several compression units; the importing
side is what `oci-cache serve` builds (open_serving_stack) on a new state directory.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from action_scenario import RecordedAction, make_action, store_action
from cache_nodes import open_node
from oci_cache.cache_entries import parse_cache_to
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.exporter import CacheExporter
from oci_cache.digests import Digest
from oci_cache.image_format import Compression, layer_compression
from oci_cache.store.local_store import LocalStore

COMPRESSIONS = ("uncompressed", "gzip", "estargz", "zstd")
COMBINATIONS = list(itertools.product(COMPRESSIONS, (True, False), (True, False), ("min", "max")))
FAILED_SEED = 2


class Source:
    def __init__(self, root: Path) -> None:
        self.store = LocalStore(root / "store", 1 << 30)
        self.actions: List[RecordedAction] = [
            make_action(seed, exit_code=1 if seed == FAILED_SEED else 0) for seed in range(3)
        ]
        self.actions.append(make_action(99, file_sizes=(5_000_000, 10), tree_file_sizes=()))
        for recorded in self.actions:
            store_action(self.store, recorded)
        self.exporter = CacheExporter(self.store, root / "export", confirm_delay=0)

    def definitions(self) -> Dict[Digest, bytes]:
        found: Dict[Digest, bytes] = {}
        for recorded in self.actions:
            found.update(recorded.definitions)
        return found


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    made = Source(tmp_path_factory.mktemp("source"))
    yield made
    made.store.close()


def _options(compression: str, oci: bool, manifest: bool, mode: str) -> str:
    return f"mode={mode},compression={compression},oci-mediatypes={str(oci).lower()},image-manifest={str(manifest).lower()}"


def _round_trip(
    source: Source,
    tmp_path: Path,
    cache_to: str,
    cache_from: str,
    oci: bool,
    manifest: bool,
    mode: str,
    compression: str,
) -> None:
    entry = parse_cache_to(cache_to)
    report = source.exporter.export_entry(entry)
    assert report.ok, report.message
    image = load_cache_image(open_entry_target(entry))
    assert image.parsed.oci_mediatypes is oci and image.parsed.image_manifest is manifest
    assert image.config.mode == mode
    assert {layer_compression(d) for d in image.layers} == {Compression(compression)}

    node = open_node(tmp_path / "importer", cache_from=[cache_from])
    try:
        for recorded in source.actions:
            expect_hit = mode == "max" or recorded.exit_code == 0
            assert node.serves(recorded) is expect_hit, (recorded.exit_code, mode)
        definitions = source.definitions()
        if mode == "max":
            assert node.holds(definitions)
        else:
            assert sorted(node.blobs.find_missing(list(definitions))) == sorted(definitions)
        # Everything now served was fetched once, verified, into the new local store.
        assert node.blobs.imports.counters.snapshot().failures == 0
    finally:
        node.close()


@pytest.mark.parametrize("compression,oci,manifest,mode", COMBINATIONS)
def test_round_trip_through_registry(source: Source, registry_plain, unique_repo: str, tmp_path: Path, compression, oci, manifest, mode) -> None:  # type: ignore[no-untyped-def]
    ref = f"{registry_plain.host}/{unique_repo}:cache"
    options = _options(compression, oci, manifest, mode)
    _round_trip(source, tmp_path, f"type=registry,ref={ref},{options}", ref, oci, manifest, mode, compression)


@pytest.mark.parametrize("compression,oci,manifest,mode", COMBINATIONS)
def test_round_trip_through_oci_layout(source: Source, tmp_path: Path, compression, oci, manifest, mode) -> None:  # type: ignore[no-untyped-def]
    layout = tmp_path / "layout"
    options = _options(compression, oci, manifest, mode)
    _round_trip(
        source,
        tmp_path,
        f"type=local,dest={layout},tag=cache,{options}",
        f"type=local,src={layout},tag=cache",
        oci,
        manifest,
        mode,
        compression,
    )


@pytest.mark.usefixtures("lazy_reads_only")
def test_one_blob_costs_about_its_own_bytes(source: Source, registry_plain, unique_repo: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Reading one blob fetches its entry's range, not the layer (every compression)."""
    for compression in COMPRESSIONS:
        ref = f"{registry_plain.host}/{unique_repo}:{compression}"
        assert source.exporter.export_entry(parse_cache_to(f"type=registry,ref={ref},compression={compression}")).ok
        image = load_cache_image(open_entry_target(parse_cache_to(f"type=registry,ref={ref}")))
        assert image.layers and sum(d.size for d in image.layers) > 4_000_000
        node = open_node(tmp_path / compression, cache_from=[ref])
        try:
            small = next(d for d in source.actions[0].outputs if 1000 < d.size_bytes < 10_000)
            before = node.blobs.imports.counters.snapshot().bytes_fetched
            assert node.blobs.read_bytes(small) == source.actions[0].outputs[small]
            cost = node.blobs.imports.counters.snapshot().bytes_fetched - before
            # Compressed payload plus a tar header unit; never the 5 MB layer.
            assert 0 < cost <= small.size_bytes * 1.1 + 1024, (compression, cost)
            assert node.blobs.read_bytes(small) == source.actions[0].outputs[small]  # now local: no new fetch
            assert node.blobs.imports.counters.snapshot().bytes_fetched - before == cost
        finally:
            node.close()
