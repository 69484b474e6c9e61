"""The prefetch's connections, opened once the manifest is read (layer_warmup.py): one-byte
reads of the data layers, round robin in manifest order, never of the index layer; nothing
for a layout directory, an image without data layers or a manifest that does not parse;
and a read that fails costs nothing but itself."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import List, Optional, Tuple

from action_scenario import make_action, store_action
from oci_cache.cache_entries import parse_cache_to
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.cache_image.importing.layer_warmup import warm_layer_reads
from oci_cache.cache_image.loaded_image import load_cache_image, manifest_reference
from oci_cache.oci.errors import RegistryUnavailableError
from oci_cache.oci.layout import OciLayoutTarget
from oci_cache.oci.reference import Reference
from oci_cache.oci.target import LayoutLocation, Manifest, RegistryLocation
from oci_cache.store.local_store import LocalStore


class _RecordingTarget:
    """A registry target that records its reads (and fails them when told to)."""

    def __init__(self, fail: bool = False, registry: bool = True) -> None:
        self.reads: List[Tuple[str, int, Optional[int]]] = []
        self._lock = threading.Lock()
        self._fail = fail
        self.location = (
            RegistryLocation(Reference("registry.example", "acme/cache", "cache", None))
            if registry
            else LayoutLocation(Path("/nowhere"))
        )

    def read_blob(self, digest: str, offset: int = 0, length: Optional[int] = None) -> bytes:
        with self._lock:
            self.reads.append((digest, offset, length))
        if self._fail:
            raise RegistryUnavailableError("registry.example: 503 Service Unavailable")
        return b"x"


def _manifest_of_an_image(tmp_path: Path, actions: int, max_layer_bytes: int = 1 << 30) -> Tuple[Manifest, List[str], str]:
    """A real cache image's manifest, its data layers' digests and its index layer's digest."""
    store = LocalStore(tmp_path / "source", 1 << 30)
    for seed in range(1, actions + 1):
        store_action(store, make_action(seed, file_sizes=(40_000,)))
    exporter = CacheExporter(store, tmp_path / "work", confirm_delay=0, max_layer_bytes=max_layer_bytes)
    assert exporter.export([parse_cache_to(f"type=local,dest={tmp_path / 'layout'}")]).ok
    store.close()
    target = OciLayoutTarget(tmp_path / "layout")
    manifest = target.get_manifest(manifest_reference(target))
    assert manifest is not None
    loaded = load_cache_image(target, manifest=manifest)
    layers = [descriptor.digest for descriptor in loaded.parsed.layers]
    return manifest, layers[:-1], layers[-1]


def _join(threads: List[threading.Thread]) -> None:
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def test_each_warm_up_reads_one_byte_of_a_data_layer_round_robin_and_never_the_index(tmp_path: Path) -> None:
    manifest, data_layers, index_layer = _manifest_of_an_image(tmp_path, actions=6, max_layer_bytes=100_000)
    assert len(data_layers) >= 2
    target = _RecordingTarget()
    _join(warm_layer_reads(target, manifest, len(data_layers) + 1))  # type: ignore[arg-type]
    assert sorted(target.reads) == sorted([(digest, 0, 1) for digest in data_layers] + [(data_layers[0], 0, 1)])
    assert all(digest != index_layer for digest, _, _ in target.reads)


def test_nothing_is_warmed_for_a_layout_for_zero_connections_or_for_a_manifest_that_does_not_parse(tmp_path: Path) -> None:
    manifest, _, _ = _manifest_of_an_image(tmp_path, actions=1)
    layout = _RecordingTarget(registry=False)
    assert warm_layer_reads(layout, manifest, 4) == []  # type: ignore[arg-type]
    registry = _RecordingTarget()
    assert warm_layer_reads(registry, manifest, 0) == []  # type: ignore[arg-type]
    assert warm_layer_reads(registry, Manifest(manifest.media_type, b"{not json", "sha256:" + "0" * 64), 4) == []  # type: ignore[arg-type]
    assert layout.reads == [] and registry.reads == []


def test_a_warm_up_read_that_fails_is_swallowed(tmp_path: Path) -> None:
    manifest, data_layers, _ = _manifest_of_an_image(tmp_path, actions=1)
    target = _RecordingTarget(fail=True)
    failures: List[object] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)  # type: ignore[assignment]
    try:
        _join(warm_layer_reads(target, manifest, 2))  # type: ignore[arg-type]
    finally:
        threading.excepthook = previous
    assert target.reads == [(data_layers[0], 0, 1)] * 2
    assert failures == []
