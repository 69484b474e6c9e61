"""The pure parts of an export: pruning an ImagePlan and choosing layers to rewrite."""

from __future__ import annotations

from typing import Dict, List, Optional

from oci_cache.cache_image.exporting.compaction import choose_layers_to_rewrite
from oci_cache.cache_image.exporting.image_plan import ORIGIN_BASE, ORIGIN_IMPORTED, ORIGIN_NEW, BlobRecord, ImagePlan, LayerRecord
from oci_cache.cache_image.exporting.layer_packer import group_for_layers
from oci_cache.cache_image.exporting.pruning import prune_by_bytes, prune_by_duration
from oci_cache.digests import Digest
from oci_cache.image_format import ActionEntry, Compression, Descriptor


def _digest(name: str, size: int = 10) -> Digest:
    return Digest(Digest.of(name.encode()).hash, size)


def _layer(
    plan: ImagePlan, name: str, size: int, compression: Compression = Compression.ZSTD, origin: str = ORIGIN_BASE
) -> str:
    descriptor = Descriptor(
        "application/vnd.oci.image.layer.v1.tar+zstd", "sha256:" + Digest.of(name.encode()).hash, size
    )
    plan.add_layer(LayerRecord(descriptor, compression, origin))
    return descriptor.digest


def _blob(plan: ImagePlan, name: str, layer: Optional[str], length: int, last_used: int) -> Digest:
    digest = _digest(name, length)
    plan.blobs[digest] = BlobRecord(layer, 0, length, 0, True, last_used)
    return digest


def _action(plan: ImagePlan, name: str, result: Digest, last_used: int) -> Digest:
    digest = _digest(name)
    plan.actions[digest] = ActionEntry(digest, result, 0, last_used, last_used, True)
    return digest


def test_keep_duration_drops_old_actions_and_blobs() -> None:
    plan = ImagePlan()
    layer = _layer(plan, "L", 1000)
    old_result = _blob(plan, "r-old", layer, 10, 100)
    new_result = _blob(plan, "r-new", layer, 10, 900)
    old = _action(plan, "a-old", old_result, 100)
    new = _action(plan, "a-new", new_result, 900)
    outcome = prune_by_duration(plan, keep_seconds=500, now=1000)
    assert set(plan.actions) == {new} and set(plan.blobs) == {new_result}
    assert (outcome.actions_dropped, outcome.blobs_dropped, outcome.bytes_dropped) == (1, 1, 10)
    assert old not in plan.actions and outcome.changed


def test_keep_bytes_drops_least_recently_used_first_and_actions_before_their_blobs() -> None:
    plan = ImagePlan()
    layer = _layer(plan, "L", 1000)
    results: List[Digest] = []
    for number, used in enumerate((300, 100, 200)):
        result = _blob(plan, f"r{number}", layer, 100, used)
        _action(plan, f"a{number}", result, used)
        results.append(result)
    shared = _blob(plan, "shared", None, 50, 200)  # pending: its size counts
    outcome = prune_by_bytes(plan, keep_bytes=200)
    remaining = sum(record.length for record in plan.blobs.values())
    assert remaining <= 200
    assert _digest("a1") not in plan.actions and results[1] not in plan.blobs  # the oldest went first
    assert _digest("a0") in plan.actions and results[0] in plan.blobs  # the newest stays
    # a2 (used at 200) goes with its result before the blob "shared" (also 200): actions first at a tie
    assert _digest("a2") not in plan.actions and shared in plan.blobs
    assert outcome.actions_dropped == 2 and outcome.blobs_dropped == 2


def test_keep_bytes_keeps_a_result_blob_that_another_action_shares() -> None:
    plan = ImagePlan()
    layer = _layer(plan, "L", 1000)
    result = _blob(plan, "r", layer, 100, 500)
    other = _blob(plan, "x", layer, 100, 50)
    _action(plan, "old", result, 10)
    _action(plan, "young", result, 500)
    prune_by_bytes(plan, keep_bytes=150)
    assert _digest("old") not in plan.actions and result in plan.blobs and other not in plan.blobs


def test_nothing_to_prune_changes_nothing() -> None:
    plan = ImagePlan()
    layer = _layer(plan, "L", 100)
    _action(plan, "a", _blob(plan, "r", layer, 10, 5), 5)
    assert not prune_by_bytes(plan, keep_bytes=10).changed
    assert not prune_by_duration(plan, keep_seconds=10, now=10).changed
    assert len(plan.actions) == 1 and len(plan.blobs) == 1


def _sized_plan(layers: Dict[str, tuple]) -> ImagePlan:
    """layers: name → (size, live bytes, compression, origin)."""
    plan = ImagePlan()
    for name, (size, live, compression, origin) in layers.items():
        digest = _layer(plan, name, size, compression, origin)
        if live:
            _blob(plan, f"blob-of-{name}", digest, live, 1)
    return plan


def _names(plan: ImagePlan, chosen: List[str]) -> List[str]:
    by_digest = {"sha256:" + Digest.of(n.encode()).hash: n for n in ("A", "B", "C", "D", "N")}
    return [by_digest[d] for d in chosen]


def test_nothing_is_rewritten_in_a_healthy_image() -> None:
    plan = _sized_plan({"A": (100, 90, Compression.ZSTD, ORIGIN_BASE), "B": (100, 100, Compression.GZIP, ORIGIN_BASE)})
    assert choose_layers_to_rewrite(plan, compression=Compression.ZSTD, force_compression=False) == []


def test_force_compression_picks_carried_layers_of_another_compression_only() -> None:
    plan = _sized_plan(
        {
            "A": (100, 100, Compression.ZSTD, ORIGIN_BASE),
            "B": (100, 100, Compression.GZIP, ORIGIN_BASE),
            "N": (100, 100, Compression.GZIP, ORIGIN_NEW),
        }
    )
    chosen = choose_layers_to_rewrite(plan, compression=Compression.ZSTD, force_compression=True)
    assert _names(plan, chosen) == ["B"]


def test_mostly_dead_layers_are_rewritten_when_dead_bytes_pile_up() -> None:
    plan = _sized_plan(
        {
            "A": (1000, 100, Compression.ZSTD, ORIGIN_BASE),  # 10% live
            "B": (1000, 900, Compression.ZSTD, ORIGIN_BASE),
            "N": (1000, 50, Compression.ZSTD, ORIGIN_NEW),  # new layers are never rewritten
        }
    )
    assert _names(plan, choose_layers_to_rewrite(plan, compression=Compression.ZSTD, force_compression=False)) == ["A"]


def test_mostly_dead_layers_mounted_from_an_import_are_kept_unless_over_keep_bytes() -> None:
    plan = _sized_plan(
        {
            "A": (1000, 100, Compression.ZSTD, ORIGIN_IMPORTED),
            "B": (1000, 900, Compression.ZSTD, ORIGIN_BASE),
        }
    )
    assert choose_layers_to_rewrite(plan, compression=Compression.ZSTD, force_compression=False) == []
    chosen = choose_layers_to_rewrite(plan, compression=Compression.ZSTD, force_compression=False, keep_bytes=1500)
    assert _names(plan, chosen) == ["A"]


def test_over_keep_bytes_rewrites_from_the_emptiest_until_the_estimate_fits() -> None:
    plan = _sized_plan(
        {
            "A": (1000, 700, Compression.ZSTD, ORIGIN_BASE),
            "B": (1000, 800, Compression.ZSTD, ORIGIN_BASE),
            "C": (1000, 950, Compression.ZSTD, ORIGIN_BASE),
        }
    )
    chosen = choose_layers_to_rewrite(plan, compression=Compression.ZSTD, force_compression=False, keep_bytes=2600)
    assert _names(plan, chosen) == ["A", "B"]  # 3000 - 300 - 200 = 2500 <= 2600


def test_many_layers_merge_the_smallest_down_to_the_target_count() -> None:
    plan = ImagePlan()
    for number in range(12):
        digest = _layer(plan, f"layer{number}", 100 + number)
        _blob(plan, f"b{number}", digest, 100 + number, 1)
    chosen = choose_layers_to_rewrite(
        plan, compression=Compression.ZSTD, force_compression=False, compact_at=10, compact_to=6
    )
    assert len(chosen) == 7  # 12 - 7 + 1 merged layer = 6
    sizes = sorted(plan.layers[d].descriptor.size for d in chosen)
    assert sizes == [100, 101, 102, 103, 104, 105, 106]


def test_layer_groups_respect_the_size_bound() -> None:
    digests = [Digest(f"{n:064x}", size) for n, size in enumerate((40, 40, 40, 200, 10))]
    groups = group_for_layers(digests, 100)
    assert [[d.size_bytes for d in group] for group in groups] == [[40, 40], [40], [200], [10]]
    assert group_for_layers([], 100) == []


def test_index_entries_name_layers_by_position_and_refuse_pending_blobs() -> None:
    plan = ImagePlan()
    first = _layer(plan, "A", 100)
    second = _layer(plan, "B", 100)
    _blob(plan, "x", second, 10, 1)
    _blob(plan, "y", first, 10, 1)
    plan.drop_unreferenced_layers()
    layers, blobs, _ = plan.index_entries()
    assert [r.digest for r in layers] == [first, second]
    assert {b.digest.hash[:8]: b.layer for b in blobs} == {_digest("x").hash[:8]: 1, _digest("y").hash[:8]: 0}
    _blob(plan, "pending", None, 10, 1)
    try:
        plan.index_entries()
    except AssertionError:
        pass
    else:
        raise AssertionError("a pending blob must not reach the index")
