"""Blob transfers against a real docker-registry (plain HTTP, no auth)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from oci_fixtures import client_for, random_blob
from registry_fixtures import RegistryServer

from oci_cache.digests import Digest
from oci_cache.oci import open_target, push_blobs_concurrently
from oci_cache.oci.content import sha256_digest
from oci_cache.oci.errors import BlobNotFoundError, BlobRangeError, ContentMismatchError, InvalidReferenceError
from oci_cache.oci.registry_target import RegistryTarget
from oci_cache.oci.target import PushOutcome

pytestmark = pytest.mark.registry


@pytest.fixture
def target(registry_plain: RegistryServer, unique_repo: str) -> RegistryTarget:
    from oci_cache.oci.reference import parse_reference

    return RegistryTarget(client_for(registry_plain.host), parse_reference(f"{registry_plain.host}/{unique_repo}:t"))


def test_push_head_read_round_trip(target: RegistryTarget) -> None:
    digest, data = random_blob(300_000)
    assert target.blob_exists(digest) is None
    assert target.push_blob(digest, data) is PushOutcome.UPLOADED
    assert target.blob_exists(digest) == len(data)
    assert target.push_blob(digest, data) is PushOutcome.PRESENT
    assert target.read_blob(digest) == data
    as_digest = Digest(digest.split(":")[1], len(data))
    assert target.read_blob(as_digest) == data
    with target.open_blob_stream(digest) as stream:
        assert b"".join(stream) == data


def test_empty_blob(target: RegistryTarget) -> None:
    digest = sha256_digest(b"")
    assert target.push_blob(digest, b"") is PushOutcome.UPLOADED
    assert target.read_blob(digest) == b""
    assert target.blob_exists(digest) == 0


def test_range_reads_return_exact_slices(target: RegistryTarget) -> None:
    digest, data = random_blob(1_000_000)
    target.push_blob(digest, data)
    assert target.read_blob(digest, 0, 1) == data[:1]
    assert target.read_blob(digest, 123_456, 65_536) == data[123_456 : 123_456 + 65_536]
    assert target.read_blob(digest, 999_000) == data[999_000:]
    assert target.read_blob(digest, 999_990, 100) == data[999_990:]  # cut at the end
    assert target.read_blob(digest, 5, 0) == b""
    with target.open_blob_stream(digest, 500_000, 10_000) as stream:
        assert stream.read() == data[500_000:510_000]
    with pytest.raises(BlobRangeError):
        target.read_blob(digest, 1_000_000, 10)
    with pytest.raises(InvalidReferenceError):
        target.read_blob(digest, -1)


def test_missing_blob_errors(target: RegistryTarget) -> None:
    digest, _ = random_blob(10)
    with pytest.raises(BlobNotFoundError, match="is not in"):
        target.read_blob(digest)
    with pytest.raises(BlobNotFoundError):
        target.open_blob_stream(digest, 0, 5)


def test_upload_from_path_and_stream_and_in_chunks(
    registry_plain: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    digest, data = random_blob(3_000_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    target = open_target("registry", f"{registry_plain.host}/{unique_repo}")
    assert target.push_blob(digest, path) is PushOutcome.UPLOADED
    assert target.read_blob(digest) == data

    digest2, data2 = random_blob(2_500_000)
    assert target.push_blob(digest2, io.BytesIO(data2)) is PushOutcome.UPLOADED
    assert target.read_blob(digest2) == data2

    chunked = client_for(registry_plain.host, upload_chunk_size=1_000_000)
    digest3, data3 = random_blob(2_500_001)
    assert chunked.push_blob(unique_repo, digest3, data3) is PushOutcome.UPLOADED
    assert chunked.read_blob(unique_repo, digest3) == data3
    target.close()


def test_wrong_content_is_refused(target: RegistryTarget) -> None:
    digest, data = random_blob(1000)
    with pytest.raises(ContentMismatchError, match="are not that blob"):
        target.push_blob(digest, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ContentMismatchError, match="has 999 bytes"):
        target.push_blob(Digest(digest.split(":")[1], 1000), data[:-1])
    assert target.blob_exists(digest) is None


def test_download_is_verified(registry_plain: RegistryServer, unique_repo: str) -> None:
    """Corrupt the registry's stored copy: reads must refuse it, range reads pass (caller verifies)."""
    target = open_target("registry", f"{registry_plain.host}/{unique_repo}")
    digest, data = random_blob(5000)
    target.push_blob(digest, data)
    hex_ = digest.split(":")[1]
    stored = registry_plain.root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"
    stored.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    with pytest.raises(ContentMismatchError, match="corrupt"):
        target.read_blob(digest)
    with pytest.raises(ContentMismatchError):
        with target.open_blob_stream(digest) as stream:
            stream.read()
    assert target.read_blob(digest, 1, 10) == data[1:11]


def test_cross_repository_mount(registry_plain: RegistryServer, unique_repo: str) -> None:
    client = client_for(registry_plain.host)
    digest, data = random_blob(50_000)
    client.push_blob(unique_repo + "-src", digest, data)
    assert client.mount_blob(unique_repo + "-dst", digest, unique_repo + "-src") is True
    assert client.read_blob(unique_repo + "-dst", digest) == data
    other, other_data = random_blob(100)
    assert client.mount_blob(unique_repo + "-dst", other, unique_repo + "-src") is False  # not there: declined
    assert (
        client.push_blob(unique_repo + "-third", digest, data, mount_from=unique_repo + "-src") is PushOutcome.MOUNTED
    )
    # A mount that the registry declines falls back to uploading.
    assert (
        client.push_blob(unique_repo + "-third", other, other_data, mount_from=unique_repo + "-src")
        is PushOutcome.UPLOADED
    )


def test_concurrent_pushes_and_reads(target: RegistryTarget) -> None:
    blobs = [random_blob(20_000 + i) for i in range(40)]
    outcomes = push_blobs_concurrently(target, blobs, max_workers=8)
    assert outcomes == [PushOutcome.UPLOADED] * 40
    errors = []

    def read(i: int) -> None:
        try:
            digest, data = blobs[i]
            assert target.read_blob(digest) == data
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert push_blobs_concurrently(target, blobs[:5]) == [PushOutcome.PRESENT] * 5
