"""Manifests against a real docker-registry: byte-exact, media types, artifactType, delete."""

from __future__ import annotations

import json

import pytest
from oci_fixtures import artifact_manifest, client_for, random_blob
from registry_fixtures import RegistryServer

from oci_cache.oci.content import sha256_digest
from oci_cache.oci.errors import ContentMismatchError, InvalidReferenceError, RegistryError
from oci_cache.oci.media_types import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from oci_cache.oci.reference import parse_reference
from oci_cache.oci.registry_target import RegistryTarget

pytestmark = pytest.mark.registry


@pytest.fixture
def target(registry_plain: RegistryServer, unique_repo: str) -> RegistryTarget:
    return RegistryTarget(
        client_for(registry_plain.host), parse_reference(f"{registry_plain.host}/{unique_repo}:cache")
    )


def test_put_get_head_by_tag_and_digest_byte_exact(target: RegistryTarget) -> None:
    _, layer = random_blob(4096)
    data = artifact_manifest(target, layer)
    digest = target.put_manifest("cache", OCI_MANIFEST, data)
    assert digest == sha256_digest(data)
    assert target.head_manifest("cache") == digest
    got = target.get_manifest("cache")
    assert got is not None
    assert got.data == data and got.media_type == OCI_MANIFEST and got.digest == digest
    assert json.loads(got.data)["artifactType"] == "application/vnd.test.cache.v1"
    by_digest = target.get_manifest(digest)
    assert by_digest is not None and by_digest.data == data
    assert target.head_manifest(digest) == digest


def test_absent_manifests_are_none(target: RegistryTarget) -> None:
    assert target.get_manifest("nope") is None
    assert target.head_manifest("nope") is None
    assert target.get_manifest(sha256_digest(b"nothing")) is None


def test_moving_a_tag_and_deleting(target: RegistryTarget) -> None:
    _, layer1 = random_blob(100)
    _, layer2 = random_blob(100)
    first = target.put_manifest("cache", OCI_MANIFEST, artifact_manifest(target, layer1))
    second = target.put_manifest("cache", OCI_MANIFEST, artifact_manifest(target, layer2))
    assert first != second and target.head_manifest("cache") == second
    assert target.get_manifest(first) is not None  # the old one stays reachable by digest
    assert target.delete_manifest(first) is True
    assert target.get_manifest(first) is None
    assert target.delete_manifest(first) is False  # already gone
    assert target.head_manifest("cache") == second
    with pytest.raises(InvalidReferenceError):
        target.delete_manifest("cache")


def test_docker_media_types_and_indexes(target: RegistryTarget) -> None:
    _, layer = random_blob(64)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    target.push_blob(sha256_digest(config), config)
    target.push_blob(sha256_digest(layer), layer)
    docker = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": sha256_digest(layer),
                    "size": len(layer),
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    docker_digest = target.put_manifest("docker", DOCKER_MANIFEST, docker)
    got = target.get_manifest("docker")
    assert got is not None and got.media_type == DOCKER_MANIFEST and got.data == docker

    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": docker_digest,
                    "size": len(docker),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    target.put_manifest("index", OCI_INDEX, index)
    got_index = target.get_manifest("index")
    assert got_index is not None and got_index.media_type == OCI_INDEX and got_index.data == index


def test_put_by_digest_and_mismatch(target: RegistryTarget) -> None:
    _, layer = random_blob(10)
    data = artifact_manifest(target, layer, artifact_type=None)
    digest = sha256_digest(data)
    assert target.put_manifest(digest, OCI_MANIFEST, data) == digest
    assert target.get_manifest(digest) is not None
    with pytest.raises(ContentMismatchError):
        target.put_manifest(sha256_digest(b"other"), OCI_MANIFEST, data)


def test_manifest_with_missing_blob_is_rejected_with_a_hint(target: RegistryTarget) -> None:
    data = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sha256_digest(b"never pushed"), "size": 12}],
        }
    ).encode()
    with pytest.raises(RegistryError, match="push every blob it references first") as info:
        target.put_manifest("broken", OCI_MANIFEST, data)
    assert info.value.status == 400
