"""An export with nothing new leaves the image at the ref as it is (no new manifest),
unless last_used times went stale; anything new still publishes (unchanged_export.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import List

import pytest

from action_scenario import make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.loaded_image import LoadedImage
from oci_cache.cache_image.exporting.exporter import UNCHANGED_MESSAGE, CacheExporter
from oci_cache.cache_image.exporting.unchanged_export import LAST_USED_REFRESH_SECONDS, last_used_granularity
from oci_cache.export_report import ExportTargetReport
from oci_cache.store import action_journal as action_journal_module
from oci_cache.store import local_store as local_store_module
from oci_cache.store.local_store import LocalStore


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _image_at(entry: str) -> LoadedImage:
    layout = entry.split("dest=", 1)[1].split(",", 1)[0]
    return load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}")))


def _digest_at(entry: str) -> str:
    return _image_at(entry).digest


def _last_used(entry: str) -> List[int]:
    image = _image_at(entry)
    return sorted(action.last_used for action in image.index.iter_actions())


def test_a_second_export_with_nothing_new_keeps_the_image(tmp_path: Path) -> None:
    entry = f"type=local,dest={tmp_path / 'layout'}"
    store = LocalStore(tmp_path / "store", 1 << 30)
    clock = Clock(1_800_000_000.0)
    exporter = CacheExporter(store, tmp_path / "work", clock=clock, confirm_delay=0)
    try:
        store_action(store, make_action(1))
        store_action(store, make_action(2))
        first = exporter.export([parse_cache_to(entry)]).targets[0]
        assert first.ok and first.bytes_uploaded > 0 and first.entries == 2
        digest = _digest_at(entry)

        clock.now += 60  # a minute later, nothing new
        again = exporter.export([parse_cache_to(entry)]).targets[0]
        assert again.ok, again.message
        assert again.message == UNCHANGED_MESSAGE
        assert (again.bytes_uploaded, again.layers_uploaded, again.entries) == (0, 0, 2)
        assert again.manifest_digest == digest == _digest_at(entry)

        store_action(store, make_action(3))  # something new: published
        third = exporter.export([parse_cache_to(entry)]).targets[0]
        assert third.ok and third.entries == 3 and third.bytes_uploaded > 0
        assert _digest_at(entry) != digest
    finally:
        store.close()


def test_entries_used_long_enough_ago_are_refreshed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer use of an entry republishes only once its stored last_used is stale
    (here keep-duration=4s, so stale after 1 s). The store and the exporter share one
    test clock: last_used times are whole seconds, so with the wall clock a use 0.1 s
    later can already fall in the next second."""
    entry = f"type=local,dest={tmp_path / 'layout'},keep-duration=4s"
    recorded = make_action(7)
    clock = Clock(1_800_000_000.0)
    monkeypatch.setattr(local_store_module, "time", SimpleNamespace(time=clock))

    def write_and_export(name: str) -> ExportTargetReport:
        store = LocalStore(tmp_path / f"store-{name}", 1 << 30)
        try:
            store_action(store, recorded)
            exporter = CacheExporter(store, tmp_path / f"work-{name}", clock=clock, confirm_delay=0)
            return exporter.export([parse_cache_to(entry)]).targets[0]
        finally:
            store.close()

    assert write_and_export("seed").ok
    seeded = _last_used(entry)
    assert seeded == [1_800_000_000]
    clock.now += 0.9  # newer, but by less than the 1 s granularity
    soon = write_and_export("soon")
    assert soon.ok and soon.message == UNCHANGED_MESSAGE
    assert _last_used(entry) == seeded
    clock.now += 0.6  # now 1.5 s after the stored time: stale
    later = write_and_export("later")
    assert later.ok and later.message != UNCHANGED_MESSAGE and later.bytes_uploaded > 0
    assert _last_used(entry) == [1_800_000_001]


def test_a_short_keep_duration_refreshes_sooner() -> None:
    assert last_used_granularity(None) == LAST_USED_REFRESH_SECONDS
    assert last_used_granularity(600.0) == 150.0
    assert last_used_granularity(10 * 86400.0) == LAST_USED_REFRESH_SECONDS


def test_another_mode_or_media_type_republishes(tmp_path: Path) -> None:
    entry = f"type=local,dest={tmp_path / 'layout'}"
    store = LocalStore(tmp_path / "store", 1 << 30)
    try:
        store_action(store, make_action(11))
        exporter = CacheExporter(store, tmp_path / "work", confirm_delay=0)
        assert exporter.export([parse_cache_to(entry)]).ok
        digest = _digest_at(entry)
        report = exporter.export([parse_cache_to(entry + ",oci-mediatypes=false")]).targets[0]
        assert report.ok and report.message != UNCHANGED_MESSAGE
        assert _digest_at(entry) != digest
    finally:
        store.close()


def test_after_the_journal_is_compacted_the_next_export_has_nothing_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compaction gives the journal a new id, so the next export reads every action the
    store holds again: already in the image, they publish nothing."""
    monkeypatch.setattr(action_journal_module, "JOURNAL_COMPACT_MIN_BYTES", 2048)
    entry = f"type=local,dest={tmp_path / 'layout'}"
    store = LocalStore(tmp_path / "store", 1 << 30)
    try:
        for seed in range(30):
            store_action(store, make_action(seed))
        assert CacheExporter(store, tmp_path / "work", confirm_delay=0).export([parse_cache_to(entry)]).ok
        digest = _digest_at(entry)
    finally:
        store.close()
    journal = tmp_path / "store" / "journal" / "actions.log"
    with open(journal, "ab") as log:  # as after many rewrites of evicted actions
        log.write(("ab" * 32 + " 100\n").encode() * 300)
    size = journal.stat().st_size
    store = LocalStore(tmp_path / "store", 1 << 30)
    try:
        assert journal.stat().st_size < size
        report = CacheExporter(store, tmp_path / "work", confirm_delay=0).export([parse_cache_to(entry)]).targets[0]
        assert report.ok and report.message == UNCHANGED_MESSAGE and report.entries == 30
        assert _digest_at(entry) == digest
    finally:
        store.close()
