"""Cache images meeting the world: standard tools copying them (skopeo), a corrupted
blob in the registry's storage, missing and unreachable refs, an image from a newer
major format version."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from action_scenario import RecordedAction, make_action, store_action
from cache_nodes import open_node
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.exporter import CacheExporter
from oci_cache.image_format import Descriptor, build_manifest
from oci_cache.image_format.manifest import CONFIG_MEDIA_TYPE
from oci_cache.image_format import CacheImage
from oci_cache.oci.content import sha256_digest
from oci_cache.store.local_store import LocalStore
from registry_fixtures import FaultProxy
from server_fixtures import free_port


def _export(tmp_path: Path, cache_to: str, seeds=(1, 2, 3)) -> List[RecordedAction]:
    store = LocalStore(tmp_path / "exporter-store", 1 << 30)
    try:
        actions = [make_action(seed) for seed in seeds]
        for recorded in actions:
            store_action(store, recorded)
        report = CacheExporter(store, tmp_path / "exporter-work", confirm_delay=0).export([parse_cache_to(cache_to)])
        assert report.ok, report.targets[0].message
    finally:
        store.close()
    return actions


def _skopeo(*args: str) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _all_served(tmp_path: Path, name: str, cache_from: str, actions: List[RecordedAction]) -> None:
    node = open_node(tmp_path / name, cache_from=[cache_from])
    try:
        assert all(node.serves(recorded) for recorded in actions)
    finally:
        node.close()


@pytest.mark.parametrize("options", ["", "compression=gzip,oci-mediatypes=false"])
def test_skopeo_copies_registry_to_registry_and_to_a_layout(registry_plain, unique_repo: str, tmp_path: Path, options: str) -> None:  # type: ignore[no-untyped-def]
    source = f"{registry_plain.host}/{unique_repo}:cache"
    actions = _export(tmp_path, f"type=registry,ref={source}" + (f",{options}" if options else ""))
    original = load_cache_image(open_entry_target(parse_cache_from(source)))

    copy = f"{registry_plain.host}/{unique_repo}-copy:cache"
    _skopeo("--preserve-digests", f"docker://{source}", f"docker://{copy}")
    copied = load_cache_image(open_entry_target(parse_cache_from(copy)))
    assert copied.digest == original.digest and copied.manifest.data == original.manifest.data
    _all_served(tmp_path, "from-registry-copy", copy, actions)

    if "oci-mediatypes=false" in options:
        return  # skopeo 1.9 writes, but does not read back, Docker media types in an OCI layout
    layout = tmp_path / "skopeo-layout"
    _skopeo("--preserve-digests", f"docker://{source}", f"oci:{layout}:cache")
    in_layout = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout},tag=cache")))
    assert in_layout.digest == original.digest
    _all_served(tmp_path, "from-layout-copy", f"type=local,src={layout},tag=cache", actions)


def test_a_local_export_pushed_with_skopeo_is_imported_from_the_registry(registry_plain, unique_repo: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    layout = tmp_path / "layout"
    actions = _export(tmp_path, f"type=local,dest={layout},tag=main,compression=estargz")
    ref = f"{registry_plain.host}/{unique_repo}:main"
    _skopeo(f"oci:{layout}:main", f"docker://{ref}")
    pushed = load_cache_image(open_entry_target(parse_cache_from(ref)))
    assert (
        pushed.digest
        == load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout},tag=main"))).digest
    )
    _all_served(tmp_path, "importer", ref, actions)


def _blob_data_file(registry, digest: str) -> Path:  # type: ignore[no-untyped-def]
    hex_digest = digest.split(":", 1)[1]
    return (
        Path(registry.root) / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"
    )


@pytest.mark.parametrize("compression", ["zstd", "uncompressed"])
def test_a_corrupted_blob_in_the_registry_is_never_served(registry_plain, unique_repo: str, tmp_path: Path, compression: str) -> None:  # type: ignore[no-untyped-def]
    ref = f"{registry_plain.host}/{unique_repo}:cache"
    actions = _export(tmp_path, f"type=registry,ref={ref},compression={compression}")
    image = load_cache_image(open_entry_target(parse_cache_from(ref)))
    victim = actions[0]
    target_blob = max(victim.outputs, key=lambda d: d.size_bytes)
    entry = image.index.find_blob(target_blob)
    assert entry is not None
    data_file = _blob_data_file(registry_plain, image.layers[entry.layer].digest)
    raw = bytearray(data_file.read_bytes())
    position = entry.compressed_offset + entry.compressed_length // 2
    raw[position] ^= 0xFF
    data_file.write_bytes(bytes(raw))  # the registry serves whatever its storage holds

    node = open_node(tmp_path / "importer", cache_from=[ref])
    try:
        assert node.blobs.find_missing([target_blob]) == []  # the index lists it
        assert node.actions.get_action_result(victim.action) is None  # fetched, failed verification: a miss
        assert node.blobs.find_missing([target_blob]) == [target_blob]  # no longer claimed
        with pytest.raises(Exception) as raised:
            node.blobs.read_bytes(target_blob)
        assert "not found" in str(raised.value)
        assert not node.local.contains(target_blob)
        assert node.blobs.imports.counters.snapshot().failures >= 1
        # The other actions' ranges are intact: still served, byte-exact.
        assert all(node.serves(recorded) for recorded in actions[1:])
    finally:
        node.close()


def test_missing_and_unreachable_refs_are_one_warning_each_and_an_empty_cache(registry_plain, unique_repo: str, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    missing = f"{registry_plain.host}/{unique_repo}:does-not-exist"
    unreachable = f"127.0.0.1:{free_port()}/nobody/home:cache"
    absent_layout = f"type=local,src={tmp_path / 'no-such-layout'}"
    cache_to = f"type=registry,ref={registry_plain.host}/{unique_repo}:out"
    recorded = make_action(7)
    with caplog.at_level(logging.WARNING, logger="oci_cache.cache_image"):
        node = open_node(tmp_path / "node", cache_from=[missing, unreachable, absent_layout], cache_to=[cache_to])
        try:
            assert node.actions.get_action_result(recorded.action) is None
            assert node.blobs.find_missing(list(recorded.outputs)) == sorted(
                recorded.outputs, key=list(recorded.outputs).index
            )
            node.write(recorded)
            assert node.serves(recorded)
            report = node.export()
            assert report.ok, report.targets[0].message
        finally:
            node.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "does-not-exist" in w]) == 1
    assert len([w for w in warnings if "nobody/home" in w]) == 1
    assert len([w for w in warnings if "no-such-layout" in w]) == 1
    assert all("empty cache" in w for w in warnings if "cache-from" in w)


def _rewrite_config(target, image, change) -> None:  # type: ignore[no-untyped-def]
    """Pushes the image again with its config changed by `change(dict)`."""
    config = json.loads(target.read_blob(image.image.config.as_digest))
    change(config)
    data = json.dumps(config, separators=(",", ":")).encode()
    target.push_blob(sha256_digest(data), data)
    descriptor = Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(data), len(data))
    manifest, media_type = build_manifest(CacheImage(descriptor, image.layers, image.image.index))
    target.put_manifest(target.tag, media_type, manifest)


def test_a_newer_major_format_is_a_warning_and_a_miss_and_is_not_overwritten(registry_plain, unique_repo: str, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    ref = f"{registry_plain.host}/{unique_repo}:cache"
    actions = _export(tmp_path, f"type=registry,ref={ref}")
    target = open_entry_target(parse_cache_from(ref))
    _rewrite_config(target, load_cache_image(target), lambda config: config.update(formatVersion="2.0"))
    newer_digest = target.head_manifest("cache")
    with caplog.at_level(logging.WARNING, logger="oci_cache.cache_image"):
        node = open_node(tmp_path / "node", cache_from=[ref], cache_to=[f"type=registry,ref={ref}"])
        try:
            assert not any(node.serves(recorded) for recorded in actions)
            node.write(make_action(50))
            report = node.export()
        finally:
            node.close()
    assert any("newer" in r.getMessage() and "upgrade pants-oci-cache" in r.getMessage() for r in caplog.records)
    assert not report.ok and "refusing to overwrite" in report.targets[0].message
    assert target.head_manifest("cache") == newer_digest
    target.close()


def test_a_foreign_image_at_the_ref_is_not_overwritten(registry_plain, unique_repo: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = open_entry_target(parse_cache_from(f"{registry_plain.host}/{unique_repo}:app"))
    config = b'{"architecture":"amd64","os":"linux"}'
    target.push_blob(sha256_digest(config), config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    digest = target.put_manifest("app", "application/vnd.oci.image.manifest.v1+json", manifest)
    store = LocalStore(tmp_path / "store", 1 << 30)
    try:
        store_action(store, make_action(3))
        entry = parse_cache_to(f"type=registry,ref={registry_plain.host}/{unique_repo}:app,ignore-error=true")
        report = CacheExporter(store, tmp_path / "work", confirm_delay=0).export([entry])
    finally:
        store.close()
    assert not report.targets[0].ok and report.targets[0].ignored_error and report.ok
    assert "not a pants-oci-cache image" in report.targets[0].message
    assert target.head_manifest("app") == digest
    target.close()


@pytest.mark.usefixtures("lazy_reads_only")
def test_entries_used_from_another_ref_are_carried_forward_and_layers_mounted(registry_plain, unique_repo: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    main = f"{registry_plain.host}/{unique_repo}-main:cache"
    branch = f"{registry_plain.host}/{unique_repo}-branch:cache"
    used, unused, referenced = make_action(61), make_action(62), make_action(63)
    actions = [used, unused, referenced]
    store = LocalStore(tmp_path / "main-store", 1 << 30)
    for recorded in actions:
        store_action(store, recorded)
    assert CacheExporter(store, tmp_path / "main-work", confirm_delay=0).export([parse_cache_to(f"type=registry,ref={main}")]).ok
    store.close()
    main_image = load_cache_image(open_entry_target(parse_cache_from(main)))

    node = open_node(tmp_path / "branch-node", cache_from=[main], cache_to=[f"type=registry,ref={branch}"])
    try:
        assert node.serves(used)  # a hit from main: carried forward
        # A client writes a result whose outputs FindMissingBlobs reported present (they are in main):
        assert node.blobs.find_missing(list(referenced.outputs)) == []
        node.actions.put_action_result(referenced.action, referenced.result)
        assert not any(node.local.contains(d) for d in referenced.outputs)
        report = node.export()
        assert report.ok, report.targets[0].message
    finally:
        node.close()
    branch_image = load_cache_image(open_entry_target(parse_cache_from(branch)))
    kept = {a.action for a in branch_image.index.iter_actions()}
    assert kept == {used.action, referenced.action}  # not the unused one
    # The referenced outputs stayed in main's layer, mounted into the branch repository, not re-uploaded.
    assert main_image.layers[0].digest in {d.digest for d in branch_image.layers}
    assert report.targets[0].bytes_uploaded < main_image.layers[0].size
    reader = open_node(tmp_path / "reader", cache_from=[branch])
    try:
        assert reader.serves(used) and reader.serves(referenced) and not reader.serves(unused)
    finally:
        reader.close()


@pytest.mark.usefixtures("lazy_reads_only")
def test_an_unreachable_layer_is_a_miss_this_time_only(registry_plain, unique_repo: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proxy = FaultProxy(registry_plain.host)
    try:
        ref = f"{proxy.host}/{unique_repo}:cache"
        actions = _export(tmp_path, f"type=registry,ref={ref}", seeds=(71,))
        node = open_node(tmp_path / "node", cache_from=[ref])
        try:
            # One fetch makes 3 attempts (the import retry budget): each gets a 503.
            proxy.fail_next(count=3, status=503, method="GET", path_contains="/blobs/")
            assert node.actions.get_action_result(actions[0].action) is None  # a miss
            assert proxy.pending_faults() == 0 and node.blobs.imports.counters.snapshot().failures == 1
            assert node.serves(actions[0])  # not marked bad: served once the registry answers
        finally:
            node.close()
    finally:
        proxy.stop()
