"""keep-duration, keep-bytes, layer rewriting (dead bytes, force-compression) and
prune_cache_image, on OCI layouts and a registry.

Entry ages come from the local store: it rebuilds its LRU times from file mtimes
when it opens, so a test ages entries by setting mtimes and reopening the store.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable, List, Optional

from action_scenario import RecordedAction, make_action, store_action
from cache_nodes import open_node
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.exporting.exporter import CacheExporter, prune_cache_image
from oci_cache.digests import Digest
from oci_cache.image_format import Compression, layer_compression
from oci_cache.store.local_store import LocalStore

DAY = 86400.0


def _age(root: Path, seconds: float, only: Optional[Iterable[Digest]] = None) -> None:
    """Sets the mtime of store files (all, or those of `only`) `seconds` in the past."""
    when = time.time() - seconds
    names = None if only is None else {d.hash for d in only}
    for top in ("cas", "ac"):
        for directory, _, files in os.walk(root / top):
            for name in files:
                if names is None or name.split("-")[0] in names:
                    os.utime(os.path.join(directory, name), (when, when))


def _everything(recorded: RecordedAction) -> List[Digest]:
    return [recorded.action, *recorded.outputs, *recorded.definitions, Digest.of(recorded.result)]


def _export_store(root: Path, actions: List[RecordedAction], cache_to: str, age: float = 0.0, **kwargs) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(root, 1 << 30)
    for recorded in actions:
        store_action(store, recorded)
    store.close()
    if age:
        _age(root, age)
    store = LocalStore(root, 1 << 30)
    try:
        report = CacheExporter(store, root.parent / (root.name + "-work"), confirm_delay=0).export_entry(
            parse_cache_to(cache_to), **kwargs
        )
        assert report.ok, report.message
    finally:
        store.close()


def test_keep_duration_drops_entries_unused_for_longer(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    old = [make_action(seed) for seed in (1, 2)]
    new = [make_action(seed) for seed in (3, 4)]
    _export_store(tmp_path / "old", old, f"type=local,dest={layout},mode=max", age=10 * DAY)
    before = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}")))
    assert before.index.action_count == 2
    assert all(a.last_used < time.time() - 9 * DAY for a in before.index.iter_actions())

    _export_store(tmp_path / "new", new, f"type=local,dest={layout},mode=max,keep-duration=7d")
    after = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}")))
    assert {a.action for a in after.index.iter_actions()} == {r.action for r in new}
    for recorded in old:
        assert all(after.index.find_blob(d) is None for d in recorded.outputs)
    assert not set(d.digest for d in before.layers) & set(d.digest for d in after.layers)  # dead layers dropped
    node = open_node(tmp_path / "reader", cache_from=[f"type=local,src={layout}"])
    try:
        assert all(node.serves(r) for r in new) and not any(node.serves(r) for r in old)
    finally:
        node.close()


def test_keep_bytes_keeps_the_image_under_the_budget_dropping_least_recently_used(registry_plain, unique_repo: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref = f"{registry_plain.host}/{unique_repo}:cache"
    big = dict(file_sizes=(150_000,), tree_file_sizes=())
    old = [make_action(seed, **big) for seed in (10, 11, 12)]
    new = [make_action(seed, **big) for seed in (13,)]
    _export_store(tmp_path / "old", old, f"type=registry,ref={ref},compression=uncompressed", age=3600)
    _export_store(tmp_path / "new", new, f"type=registry,ref={ref},compression=uncompressed,keep-bytes=320KB")
    image = load_cache_image(open_entry_target(parse_cache_from(ref)))
    assert sum(d.size for d in image.layers) <= 320_000
    kept = {a.action for a in image.index.iter_actions()}
    assert new[0].action in kept and old[0].action not in kept
    assert 1 <= len(kept) <= 2  # the newest old action may still fit
    node = open_node(tmp_path / "reader", cache_from=[ref])
    try:
        assert all(node.serves(r) for r in new)
    finally:
        node.close()


def test_a_mostly_dead_layer_is_rewritten_and_prune_cache_image(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    stale = make_action(20, file_sizes=(400_000,), tree_file_sizes=())
    fresh = make_action(21, file_sizes=(20_000,), tree_file_sizes=())
    root = tmp_path / "store"
    store = LocalStore(root, 1 << 30)
    store_action(store, stale)
    store_action(store, fresh)
    store.close()
    _age(root, 30 * DAY, only=_everything(stale))
    store = LocalStore(root, 1 << 30)
    try:
        assert (
            CacheExporter(store, tmp_path / "work", confirm_delay=0)
            .export([parse_cache_to(f"type=local,dest={layout},mode=max")])
            .ok
        )
    finally:
        store.close()
    target = open_entry_target(parse_cache_from(f"type=local,src={layout}"))
    before = load_cache_image(target)
    assert len(before.layers) == 1

    unchanged = prune_cache_image(target, keep_duration=60 * DAY)
    assert unchanged.ok and "nothing to prune" in unchanged.message and unchanged.manifest_digest == before.digest

    report = prune_cache_image(target, keep_duration=7 * DAY)
    assert report.ok, report.message
    after = load_cache_image(target)
    assert after.digest == report.manifest_digest != before.digest
    assert [a.action for a in after.index.iter_actions()] == [fresh.action]
    assert len(after.layers) == 1 and after.layers[0].digest != before.layers[0].digest  # rewritten, not kept
    assert after.layers[0].size < before.layers[0].size / 4
    assert after.config.mode == "max" and after.config.compression is before.config.compression
    node = open_node(tmp_path / "reader", cache_from=[f"type=local,src={layout}"])
    try:
        assert node.serves(fresh) and not node.serves(stale)
    finally:
        node.close()


def test_force_compression_recompresses_carried_layers(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    first = [make_action(30)]
    second = [make_action(31)]
    _export_store(tmp_path / "a", first, f"type=local,dest={layout},compression=zstd")
    _export_store(tmp_path / "b", second, f"type=local,dest={layout},compression=gzip")
    mixed = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}")))
    assert {layer_compression(d) for d in mixed.layers} == {Compression.ZSTD, Compression.GZIP}
    _export_store(
        tmp_path / "c", [make_action(32)], f"type=local,dest={layout},compression=gzip,force-compression=true"
    )
    forced = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}")))
    assert {layer_compression(d) for d in forced.layers} == {Compression.GZIP}
    assert forced.index.action_count == 3
    node = open_node(tmp_path / "reader", cache_from=[f"type=local,src={layout}"])
    try:
        assert all(node.serves(r) for r in first + second)
    finally:
        node.close()
