"""Remembered blob redirects (oci/redirect_memory.py): the second read of a blob goes to the
storage host the registry redirected the first one to, without asking the registry again;
a remembered target expires, and one that fails is forgotten."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import pytest
from oci_fixtures import client_for, random_blob
from registry_fixtures import RegistryServer

from oci_cache.oci.redirect_memory import RedirectMemory

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from wan_link import RegistryFront, WanLink  # noqa: E402

pytestmark = pytest.mark.registry

BLOB_URL = "https://registry.example/v2/acme/cache/blobs/sha256:" + "a" * 64
STORAGE_URL = "https://storage.example/signed?X-Amz-Signature=abc"


def test_the_second_read_of_a_blob_goes_straight_to_the_storage_it_was_redirected_to(
    registry_plain: RegistryServer, unique_repo: str
) -> None:
    digest, data = random_blob(300_000)
    client_for(registry_plain.host).push_blob(unique_repo, digest, data)
    link = WanLink(rtt=0.0, bandwidth=0, setup=0.0)
    front = RegistryFront(link, registry_plain.host)
    try:
        client = client_for(front.address)
        assert client.read_blob(unique_repo, digest, 1000, 2000) == data[1000:3000]
        assert link.snapshot().requests.get("GET blob (307)") == 1
        assert client.read_blob(unique_repo, digest, 5000, 100) == data[5000:5100]
        assert client.read_blob(unique_repo, digest) == data
        counts = link.snapshot().requests
        assert counts.get("GET blob (307)") == 1  # the registry was asked once
        assert counts.get("GET blob") == 3  # the storage served all three
    finally:
        front.close()
        link.close()


def test_a_remembered_target_that_fails_is_forgotten_and_the_registry_asked_again(
    registry_plain: RegistryServer, unique_repo: str
) -> None:
    digest, data = random_blob(50_000)
    client_for(registry_plain.host).push_blob(unique_repo, digest, data)
    link = WanLink(rtt=0.0, bandwidth=0, setup=0.0)
    front = RegistryFront(link, registry_plain.host)
    try:
        client = client_for(front.address)
        assert client.read_blob(unique_repo, digest) == data
        blob_url = f"{client.base_url()}/v2/{unique_repo}/blobs/{digest}"
        gone = f"http://{front.storage_address}/v2/{unique_repo}/blobs/sha256:{'0' * 64}"  # answers 404
        client.transport.redirect_memory.remember(blob_url, gone)  # as if the signed URL had been revoked
        assert client.read_blob(unique_repo, digest) == data
        assert client.transport.redirect_memory.lookup(blob_url) != gone
        assert link.snapshot().requests.get("GET blob (307)") == 2
    finally:
        front.close()
        link.close()


def test_a_remembered_target_expires_and_can_be_forgotten() -> None:
    now: List[float] = [100.0]
    memory = RedirectMemory(ttl=60.0, clock=lambda: now[0])
    memory.remember(BLOB_URL, STORAGE_URL)
    assert memory.lookup(BLOB_URL) == STORAGE_URL
    now[0] += 59.0
    assert memory.lookup(BLOB_URL) == STORAGE_URL
    now[0] += 1.0
    assert memory.lookup(BLOB_URL) is None
    memory.remember(BLOB_URL, STORAGE_URL)
    memory.forget(BLOB_URL)
    assert memory.lookup(BLOB_URL) is None


def test_only_blob_gets_redirected_to_another_origin_are_remembered() -> None:
    memory = RedirectMemory()
    memory.remember("https://registry.example/v2/acme/cache/manifests/latest", STORAGE_URL)
    memory.remember(BLOB_URL, "https://registry.example/elsewhere/blob")  # same origin: may carry auth
    memory.remember(BLOB_URL + "?digest=x", STORAGE_URL)
    assert memory.lookup("https://registry.example/v2/acme/cache/manifests/latest") is None
    assert memory.lookup(BLOB_URL) is None
    assert memory.lookup(BLOB_URL + "?digest=x") is None
