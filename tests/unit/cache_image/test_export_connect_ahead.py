"""The export's targets are opened and connected ahead (CacheExporter.connect, run by
ServingStack.start), so the end-of-run export reuses them instead of paying a
connection set-up and a ping across a slow link."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import List

from action_scenario import make_action, store_action
from oci_cache.cache_entries import CacheTo, parse_cache_to
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.cache_image.serving_stack import ServingStack
from oci_cache.oci.layout import OciLayoutTarget
from oci_cache.store.completeness import CompletenessCheckingActionCache
from oci_cache.store.local_store import LocalStore


class CountingLayout(OciLayoutTarget):
    def __init__(self, path: Path, connects: List[str]) -> None:
        super().__init__(path, tag="latest")
        self._connects = connects

    def connect(self) -> None:
        self._connects.append(str(self.path))


def test_a_connected_target_is_the_one_the_next_export_uses(tmp_path: Path) -> None:
    opened: List[CacheTo] = []
    connects: List[str] = []

    def opener(entry: CacheTo) -> OciLayoutTarget:
        opened.append(entry)
        return CountingLayout(Path(entry.location), connects)

    store = LocalStore(tmp_path / "store", 1 << 30)
    store_action(store, make_action(1))
    entry = parse_cache_to(f"type=local,dest={tmp_path / 'layout'}")
    exporter = CacheExporter(store, tmp_path / "work", open_target=opener, confirm_delay=0)
    exporter.connect([entry])
    assert len(opened) == 1 and connects == [str(tmp_path / "layout")]
    assert exporter.export([entry]).ok
    assert len(opened) == 1, "the export reused the target opened ahead"
    exporter.close()
    store.close()


def test_a_target_that_cannot_be_opened_or_connected_is_left_to_the_export_to_report(tmp_path: Path) -> None:
    def failing_opener(entry: CacheTo) -> OciLayoutTarget:
        raise OSError("no route to host")

    store = LocalStore(tmp_path / "store", 1 << 30)
    entry = parse_cache_to(f"type=local,dest={tmp_path / 'layout'}")
    exporter = CacheExporter(store, tmp_path / "work", open_target=failing_opener, confirm_delay=0)
    exporter.connect([entry])  # does not raise
    report = exporter.export([entry])
    assert not report.ok and "no route to host" in report.targets[0].message
    store.close()


def test_starting_the_stack_runs_the_connect_ahead_in_the_background(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", 1 << 30)
    ran = threading.Event()
    stack = ServingStack(store, store, CompletenessCheckingActionCache(store, store), connect_ahead=ran.set)
    stack.start()
    stack.start()  # once
    assert ran.wait(5)
    stack.close()
