"""The import's first round trips start before the daemon has loaded the rest
(early_manifests.py): the importer takes over the target and the manifest read early,
and reads again itself only when the early read got nothing."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from action_scenario import make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.cache_image.importing.early_manifests import EarlyManifests
from oci_cache.cache_image.importing.imported_images import ImportSet
from oci_cache.cache_image.importing.importer import CacheImporter
from oci_cache.oci.layout import OciLayoutTarget
from oci_cache.store.local_store import LocalStore


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    store = LocalStore(tmp_path / "source", 1 << 30)
    store_action(store, make_action(1))
    assert CacheExporter(store, tmp_path / "work", confirm_delay=0).export([parse_cache_to(f"type=local,dest={tmp_path / 'layout'}")]).ok
    store.close()
    return tmp_path / "layout"


def _count_manifest_reads(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    reads: List[str] = []
    original = OciLayoutTarget.get_manifest

    def counting(self: OciLayoutTarget, reference: str) -> object:
        reads.append(reference)
        return original(self, reference)

    monkeypatch.setattr(OciLayoutTarget, "get_manifest", counting)
    return reads


def test_the_importer_loads_the_image_from_the_manifest_read_early_and_reads_it_once(
    layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _count_manifest_reads(monkeypatch)
    entries = [parse_cache_from(f"type=local,src={layout}")]
    early = EarlyManifests(entries)
    imports = ImportSet(expected=1)
    importer = CacheImporter(entries, imports, refresh_seconds=0, early=early)
    importer.import_all()
    [image] = imports.images()
    assert image.index.action_count == 1
    assert len(reads) == 1, "the manifest was read once, early"
    assert early.take(0) == (None, None)  # taken by the importer
    importer.close()


def test_an_early_read_that_found_nothing_leaves_the_importer_to_read_and_report(tmp_path: Path, layout: Path) -> None:
    entries = [parse_cache_from(f"type=local,src={tmp_path / 'empty-layout'}"), parse_cache_from(f"type=local,src={layout}")]
    early = EarlyManifests(entries)
    imports = ImportSet(expected=2)
    importer = CacheImporter(entries, imports, refresh_seconds=0, early=early)
    importer.import_all()
    states = importer.states()
    assert states[0].missing and not states[0].manifest_digest  # reported as before: nothing to import yet
    assert [image.entry_text for image in imports.images()] == [f"#2 {entries[1].to_text()}"]
    importer.close()


def test_once_closed_an_early_read_hands_nothing_over(layout: Path) -> None:
    early = EarlyManifests([parse_cache_from(f"type=local,src={layout}")])
    assert early._reads[0].done.wait(5)
    early.close()
    assert early.take(0) == (None, None)
