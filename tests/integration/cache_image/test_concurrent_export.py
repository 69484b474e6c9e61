"""Several exporters (separate local stores, as on separate CI machines) exporting to
one ref at the same moment lose nothing: each export merges with the image at the
ref just before moving the tag, and merges again when it moved meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import List

import pytest

from action_scenario import RecordedAction, make_action, store_action
from cache_nodes import open_node
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.export_report import ExportTargetReport
from oci_cache.store.local_store import LocalStore

WRITERS = 4
ROUNDS = 3


def _race(tmp_path: Path, cache_to: str) -> List[RecordedAction]:
    stores = [LocalStore(tmp_path / f"writer{n}", 1 << 30) for n in range(WRITERS)]
    exporters = [CacheExporter(store, tmp_path / f"work{n}") for n, store in enumerate(stores)]
    written: List[RecordedAction] = []
    entry = parse_cache_to(cache_to)
    try:
        for round_number in range(ROUNDS):
            barrier = threading.Barrier(WRITERS)
            reports: List[ExportTargetReport] = []

            def run(number: int) -> None:
                recorded = make_action(1000 * round_number + number, tree_file_sizes=(200,))
                store_action(stores[number], recorded)
                written.append(recorded)
                barrier.wait()
                reports.append(exporters[number].export_entry(entry))

            threads = [threading.Thread(target=run, args=(n,)) for n in range(WRITERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert len(reports) == WRITERS and all(r.ok for r in reports), [r.message for r in reports]
    finally:
        for store in stores:
            store.close()
    return written


@pytest.mark.parametrize("where", ["registry", "layout"])
def test_concurrent_exporters_lose_nothing(registry_plain, unique_repo: str, tmp_path: Path, where: str) -> None:  # type: ignore[no-untyped-def]
    if where == "registry":
        cache_to = f"type=registry,ref={registry_plain.host}/{unique_repo}:shared"
        cache_from = f"{registry_plain.host}/{unique_repo}:shared"
    else:
        cache_to = f"type=local,dest={tmp_path / 'layout'},tag=shared"
        cache_from = f"type=local,src={tmp_path / 'layout'},tag=shared"
    written = _race(tmp_path, cache_to)
    image = load_cache_image(open_entry_target(parse_cache_from(cache_from)))
    assert image.index.action_count == WRITERS * ROUNDS
    node = open_node(tmp_path / "reader", cache_from=[cache_from])
    try:
        assert all(node.serves(recorded) for recorded in written)
    finally:
        node.close()
