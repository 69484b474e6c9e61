"""A new layer lists its blobs in the order a build will want them (pack_order.py):
ActionResults first, then each action's blobs in the order the actions were written."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from action_scenario import make_action, store_action
from oci_cache.cache_entries import parse_cache_to
from oci_cache.cache_image.exporting.export_collection import CollectedAction
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.cache_image.exporting.pack_order import in_use_order
from oci_cache.cache_image.loaded_image import load_cache_image
from oci_cache.digests import Digest
from oci_cache.oci.layout import OciLayoutTarget
from oci_cache.store.local_store import LocalStore


def _d(name: str) -> Digest:
    return Digest.of(name.encode())


def _action(name: str, result: str, *needed: str) -> CollectedAction:
    return CollectedAction(_d(name), _d(result), 0, 0, (_d(result),) + tuple(_d(n) for n in needed))


def test_results_come_first_in_action_order_then_each_actions_blobs_then_the_rest_by_digest() -> None:
    actions = [_action("a2", "r2", "x", "shared"), _action("a1", "r1", "shared", "y")]
    pending = [_d(n) for n in ("y", "z-record", "shared", "r1", "x", "r2", "w-command")]
    ordered = in_use_order(pending, actions)
    assert ordered[:5] == [_d("r2"), _d("r1"), _d("x"), _d("shared"), _d("y")]
    assert ordered[5:] == sorted([_d("z-record"), _d("w-command")])
    assert sorted(ordered) == sorted(pending)  # each once, nothing added


def test_blobs_no_action_needs_and_actions_with_nothing_pending_keep_the_digest_order() -> None:
    pending = [_d("c"), _d("a"), _d("b")]
    assert in_use_order(pending, [_action("gone", "not-pending", "also-not")]) == sorted(pending)


def test_an_exported_layer_holds_the_results_first_then_the_outputs_in_the_order_the_actions_were_written(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store", 1 << 30)
    actions = [make_action(seed) for seed in (5, 3, 9, 1)]  # written in this order, not digest order
    for recorded in actions:
        store_action(store, recorded)
    layout = tmp_path / "layout"
    assert CacheExporter(store, tmp_path / "work", confirm_delay=0).export([parse_cache_to(f"type=local,dest={layout}")]).ok
    store.close()
    image = load_cache_image(OciLayoutTarget(layout, tag="latest"))
    offsets: Dict[Digest, int] = {e.digest: e.compressed_offset for e in image.index.iter_blobs() if e.layer == 0}
    results = [Digest.of(recorded.result) for recorded in actions]
    assert [offsets[d] for d in results] == sorted(offsets[d] for d in results)
    last_result = max(offsets[d] for d in results)
    previous_end = last_result
    for recorded in actions:
        placed = sorted(offsets[d] for d in recorded.outputs)
        assert placed[0] > previous_end, "an action's outputs follow every result and the actions before it"
        previous_end = placed[-1]
