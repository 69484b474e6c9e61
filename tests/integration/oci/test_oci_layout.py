"""OciLayoutTarget: the ImageTarget interface on an OCI image-layout directory, checked with skopeo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from oci_fixtures import artifact_manifest, client_for, random_blob
from registry_fixtures import RegistryServer

from oci_cache.oci import OciLayoutTarget, copy_blob, open_target, push_blobs_concurrently
from oci_cache.oci.content import sha256_digest
from oci_cache.oci.errors import BlobNotFoundError, BlobRangeError, ContentMismatchError
from oci_cache.oci.media_types import OCI_MANIFEST
from oci_cache.oci.reference import parse_reference
from oci_cache.oci.registry_target import RegistryTarget
from oci_cache.oci.target import PushOutcome


def _leftovers(path: Path) -> list:
    return [p.name for p in path.rglob(".tmp-*")]


def test_layout_round_trip(tmp_path: Path) -> None:
    target = open_target("local", str(tmp_path / "layout"), tag="cache")
    assert isinstance(target, OciLayoutTarget) and target.tag == "cache"
    assert "layout" in target.describe()
    digest, data = random_blob(200_000)
    assert target.get_manifest("cache") is None and target.head_manifest("cache") is None
    assert target.blob_exists(digest) is None
    assert target.push_blob(digest, data) is PushOutcome.UPLOADED
    assert target.push_blob(digest, data) is PushOutcome.PRESENT
    assert target.blob_exists(digest) == len(data)
    assert target.read_blob(digest) == data
    assert target.read_blob(digest, 1000, 10) == data[1000:1010]
    assert target.read_blob(digest, 199_995, 100) == data[199_995:]
    with target.open_blob_stream(digest, 7, 3) as stream:
        assert stream.read() == data[7:10]
    with pytest.raises(BlobRangeError):
        target.read_blob(digest, 200_000, 1)
    with pytest.raises(BlobNotFoundError):
        target.read_blob(sha256_digest(b"absent"))

    manifest = artifact_manifest(target, data)
    manifest_digest = target.put_manifest("cache", OCI_MANIFEST, manifest)
    got = target.get_manifest("cache")
    assert got is not None and got.data == manifest and got.media_type == OCI_MANIFEST
    assert target.get_manifest(manifest_digest) == got
    assert target.head_manifest("cache") == manifest_digest

    root = tmp_path / "layout"
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["digest"] == manifest_digest and entry["size"] == len(manifest)
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "cache"
    assert entry["artifactType"] == "application/vnd.test.cache.v1"
    assert (root / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == data
    assert _leftovers(root) == []

    assert target.delete_manifest(manifest_digest) is True
    assert target.get_manifest("cache") is None
    assert target.delete_manifest(manifest_digest) is False


def test_layout_verifies_content(tmp_path: Path) -> None:
    target = OciLayoutTarget(tmp_path / "layout")
    digest, data = random_blob(1000)
    with pytest.raises(ContentMismatchError):
        target.push_blob(digest, data[:-1] + bytes([data[-1] ^ 0xFF]))
    assert target.blob_exists(digest) is None and _leftovers(tmp_path) == []
    target.push_blob(digest, data)
    (tmp_path / "layout" / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    with pytest.raises(ContentMismatchError, match="corrupt"):
        target.read_blob(digest)
    with pytest.raises(ContentMismatchError):
        target.put_manifest(sha256_digest(b"x"), OCI_MANIFEST, b"{}")


def test_concurrent_writers_keep_every_tag(tmp_path: Path) -> None:
    """Four processes, each with threads, tag manifests in one layout: no tag may be lost."""
    layout = tmp_path / "shared"
    script = textwrap.dedent(
        f"""
        import sys
        from concurrent.futures import ThreadPoolExecutor
        from oci_cache.oci import OciLayoutTarget
        target = OciLayoutTarget({str(layout)!r})
        def put(i):
            data = ('{{"schemaVersion":2,"n":"%s-%d"}}' % (sys.argv[1], i)).encode()
            target.put_manifest("w%s-%d" % (sys.argv[1], i), "application/vnd.oci.image.manifest.v1+json", data)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(put, range(12)))
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script, str(n)]) for n in range(4)]
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0, 0]
    tags = OciLayoutTarget(layout).tags()
    assert sorted(tags) == sorted(f"w{n}-{i}" for n in range(4) for i in range(12))
    assert _leftovers(layout) == []


@pytest.mark.registry
def test_skopeo_pushes_what_the_layout_wrote_and_the_registry_target_reads_it(
    tmp_path: Path, registry_plain: RegistryServer, unique_repo: str
) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    layout = OciLayoutTarget(tmp_path / "layout", tag="cache-main")
    blobs = [random_blob(50_000 + i) for i in range(3)]
    push_blobs_concurrently(layout, blobs)
    config = b"{}"
    layout.push_blob(sha256_digest(config), config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.test.cache.v1",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(config), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.test.layer.v1.tar+zstd", "digest": d, "size": len(b)} for d, b in blobs
            ],
            "annotations": {"test": "skopeo"},
        },
        indent=1,
    ).encode()
    manifest_digest = layout.put_manifest("cache-main", OCI_MANIFEST, manifest)

    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{tmp_path / 'layout'}:cache-main",
            f"docker://{registry_plain.host}/{unique_repo}:cache-main",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    remote = RegistryTarget(
        client_for(registry_plain.host), parse_reference(f"{registry_plain.host}/{unique_repo}:cache-main")
    )
    got = remote.get_manifest("cache-main")
    assert got is not None and got.digest == manifest_digest and got.data == manifest
    for digest, data in blobs:
        assert remote.read_blob(digest) == data

    # And back: skopeo writes a layout from the registry, our layout target reads it.
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            f"docker://{registry_plain.host}/{unique_repo}:cache-main",
            f"oci:{tmp_path / 'copy'}:again",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    copy = OciLayoutTarget(tmp_path / "copy", tag="again")
    copied = copy.get_manifest("again")
    assert copied is not None and copied.data == manifest and copied.media_type == OCI_MANIFEST
    assert copy.read_blob(blobs[0][0]) == blobs[0][1]
    # copy_blob moves a blob between homes, verified.
    fresh_digest, fresh = random_blob(1234)
    copy.push_blob(fresh_digest, fresh)
    assert copy_blob(copy, remote, fresh_digest) is PushOutcome.UPLOADED
    assert remote.read_blob(fresh_digest) == fresh


def test_temporary_files_of_killed_writers_are_removed_on_the_next_write(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A writer killed mid-write leaves blobs/sha256/.tmp-*; the next writer removes the
    old ones (never a fresh one: it may belong to a live writer)."""
    import os
    import time

    from oci_cache.digests import Digest
    from oci_cache.oci.layout import STALE_TEMP_SECONDS, OciLayoutTarget

    first = OciLayoutTarget(tmp_path / "layout")
    first.push_blob(Digest.of(b"one"), b"one")
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    stale = blobs / ".tmp-0123456789abcdef-dead"
    fresh = blobs / ".tmp-fedcba9876543210-live"
    stale_index = tmp_path / "layout" / ".tmp-index.json-dead"
    for path in (stale, fresh, stale_index):
        path.write_bytes(b"partial")
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(stale_index, (old, old))
    OciLayoutTarget(tmp_path / "layout").push_blob(Digest.of(b"two"), b"two")
    assert not stale.exists() and not stale_index.exists()
    assert fresh.exists()
