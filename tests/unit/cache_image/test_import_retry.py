"""A cache-from entry whose import failed is tried again soon (not only at the next
60 s refresh): one failed answer at start-up must not leave the cache empty for a
minute. (Damaged bytes read again: tests/reliability/test_registry_faults.py.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List

from action_scenario import make_action, store_action
from oci_cache.cache_entries import CacheFrom, parse_cache_from, parse_cache_to
from oci_cache.cache_image.entry_targets import open_entry_target
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.cache_image.importing.imported_images import ImportSet
from oci_cache.cache_image.importing.importer import CacheImporter
from oci_cache.oci.errors import RegistryUnavailableError
from oci_cache.oci.target import ImageTarget
from oci_cache.store.local_store import LocalStore


def _layout(tmp_path: Path) -> Path:
    store = LocalStore(tmp_path / "source", 1 << 30)
    store_action(store, make_action(1))
    layout = tmp_path / "layout"
    assert CacheExporter(store, tmp_path / "work", confirm_delay=0).export([parse_cache_to(f"type=local,dest={layout}")]).ok
    store.close()
    return layout


def test_a_failed_import_is_tried_again_after_the_short_delay(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    opened: List[float] = []

    def flaky_opener(entry: CacheFrom) -> ImageTarget:
        opened.append(time.monotonic())
        if len(opened) == 1:
            raise RegistryUnavailableError("registry answered HTTP 503 (injected)", 503)
        return open_entry_target(entry)

    imports = ImportSet(expected=1)
    importer = CacheImporter(
        [parse_cache_from(f"type=local,src={layout}")],
        imports,
        open_target=flaky_opener,
        refresh_seconds=60,
        failed_retry_seconds=0.2,
    )
    importer.start()
    try:
        deadline = time.monotonic() + 5
        while not imports.images() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert imports.images(), "the failed import was not tried again within 5 s (the refresh is 60 s)"
        assert len(opened) == 2 and opened[1] - opened[0] >= 0.2
    finally:
        importer.close()
