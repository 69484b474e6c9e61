"""load_cache_image's errors and summary; the exporter's journal markers (what an
export picks up, and that a failed export picks it up again next time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from action_scenario import make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image import (
    CacheImageNotFoundError,
    CorruptCacheImageError,
    NotACacheImageError,
    load_cache_image,
    open_entry_target,
)
from oci_cache.cache_image.exporting.export_markers import ExportMarkers
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.oci.content import sha256_digest
from oci_cache.oci.errors import RegistryUnavailableError
from oci_cache.oci.layout import OciLayoutTarget
from oci_cache.store.local_store import LocalStore


def _export(store: LocalStore, work: Path, layout: Path, options: str = ""):  # type: ignore[no-untyped-def]
    entry = parse_cache_to(f"type=local,dest={layout}" + (f",{options}" if options else ""))
    return CacheExporter(store, work, confirm_delay=0).export_entry(entry)


def test_errors_name_what_is_wrong(tmp_path: Path) -> None:
    layout = OciLayoutTarget(tmp_path / "layout", tag="cache")
    with pytest.raises(CacheImageNotFoundError, match="no cache image at cache"):
        load_cache_image(layout)
    config = b"{}"
    layout.push_blob(sha256_digest(config), config)
    foreign = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(config),
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
    layout.put_manifest("cache", "application/vnd.oci.image.manifest.v1+json", foreign)
    with pytest.raises(NotACacheImageError):
        load_cache_image(layout)


def test_a_missing_index_layer_is_a_corrupt_image(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", 1 << 30)
    store_action(store, make_action(1))
    assert _export(store, tmp_path / "work", tmp_path / "layout").ok
    store.close()
    target = open_entry_target(parse_cache_from(f"type=local,src={tmp_path / 'layout'}"))
    image = load_cache_image(target)
    summary = image.summary()
    assert summary["actions"] == 1 and summary["blobs"] == image.index.blob_count and summary["mode"] == "min"
    assert summary["layers"][0]["blobs"] == image.index.blob_count and summary["compression"] == "zstd"
    assert image.bytes_read < image.total_bytes and image.created_unix
    (tmp_path / "layout" / "blobs" / "sha256" / image.image.index.digest.split(":")[1]).unlink()
    with pytest.raises(CorruptCacheImageError, match="index layer"):
        load_cache_image(target)


def test_each_export_picks_up_the_writes_since_the_last_successful_one(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", 1 << 30)
    try:
        first, second = make_action(1), make_action(2)
        store_action(store, first)
        layout = tmp_path / "layout"
        exporter = CacheExporter(store, tmp_path / "work", confirm_delay=0)

        def unreachable(entry):  # type: ignore[no-untyped-def]
            raise RegistryUnavailableError("registry unreachable (injected)")

        flaky = CacheExporter(store, tmp_path / "work", confirm_delay=0, open_target=unreachable)
        entry = parse_cache_to(f"type=local,dest={layout}")
        assert exporter.pending_entries(entry) == 1
        assert exporter.export_entry(entry).ok
        assert exporter.pending_entries(entry) == 0
        store_action(store, second)
        failed = flaky.export_entry(entry)  # its target cannot be reached this time
        assert not failed.ok and "unreachable" in failed.message
        assert exporter.pending_entries(entry) == 1
        assert exporter.export_entry(entry).ok
        image = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}")))
        assert {a.action for a in image.index.iter_actions()} == {first.action, second.action}
    finally:
        store.close()


def test_a_failed_export_keeps_the_marker_and_the_next_daemon_exports_it(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    (tmp_path / "not-a-dir").write_text("a file where the layout should be")
    bad = parse_cache_to(f"type=local,dest={tmp_path / 'not-a-dir'}")
    good = parse_cache_to(f"type=local,dest={layout}")
    store = LocalStore(tmp_path / "store", 1 << 30)
    recorded = make_action(5)
    store_action(store, recorded)
    report = CacheExporter(store, tmp_path / "work", confirm_delay=0).export([bad, good])
    assert [t.ok for t in report.targets] == [False, True] and not report.ok
    store.close()
    markers = ExportMarkers(tmp_path / "work")
    assert markers.get(bad.to_text()) is None and markers.get(good.to_text()) is not None
    # A new daemon on the same state directory still owes `bad` that write.
    store = LocalStore(tmp_path / "store", 1 << 30)
    try:
        assert CacheExporter(store, tmp_path / "work").pending_entries(bad) == 1
        assert CacheExporter(store, tmp_path / "work").pending_entries(good) == 0
    finally:
        store.close()


def test_markers_survive_reopening_and_a_corrupt_file_means_from_the_start(tmp_path: Path) -> None:
    markers = ExportMarkers(tmp_path)
    markers.set("type=local,dest=/a", "journal:123")
    assert ExportMarkers(tmp_path).get("type=local,dest=/a") == "journal:123"
    (tmp_path / "markers.json").write_text("{not json")
    assert ExportMarkers(tmp_path).get("type=local,dest=/a") is None
