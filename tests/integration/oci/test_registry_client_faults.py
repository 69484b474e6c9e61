"""The registry client under the faults of tests/fault_proxy.py, and an unreachable
registry: a refused connection fails fast and names the URLs actually tried; altered
bodies of content-addressed reads are read again; truncated and reset answers are
retried; a stall ends at the read timeout (OCI_CACHE_REGISTRY_READ_TIMEOUT)."""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from oci_fixtures import client_for, random_blob

from fault_proxy import BLOB_PATH, MANIFEST_PATH, FaultPlan, FaultRule, RegistryFaultProxy
from registry_fixtures import RegistryServer, free_port

from oci_cache.oci.errors import ContentMismatchError, RegistryUnavailableError
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.media_types import OCI_MANIFEST

pytestmark = pytest.mark.registry

GET = frozenset({"GET"})


@pytest.fixture
def proxy(registry_plain: RegistryServer) -> Iterator[RegistryFaultProxy]:
    proxy = RegistryFaultProxy(registry_plain.host)
    yield proxy
    proxy.stop()


def test_a_refused_loopback_registry_fails_fast_naming_both_schemes() -> None:
    port = free_port()
    client = client_for(f"127.0.0.1:{port}", retry=RetryPolicy())  # the default: 6 attempts
    started = time.monotonic()
    digest = random_blob(1)[0]
    with pytest.raises(RegistryUnavailableError) as info:
        client.blob_exists("x/y", digest)  # the first request, in place of the ping
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, f"{elapsed:.1f}s to give up on a refused connection"
    path = f"/v2/x/y/blobs/{digest}"
    assert str(info.value) == (
        f"cannot reach 127.0.0.1:{port} over https or http "
        f"(HEAD https://127.0.0.1:{port}{path} and HEAD http://127.0.0.1:{port}{path}: connection refused)"
    )
    assert client.describe() == f"127.0.0.1:{port} (https or http)"


def test_a_registry_gone_after_the_first_request_is_named_by_its_plain_http_url(
    proxy: RegistryFaultProxy, unique_repo: str
) -> None:
    client = client_for(proxy.host, retry=RetryPolicy())
    digest, data = random_blob(100)
    client.push_blob(unique_repo, digest, data)
    assert client.describe() == f"{proxy.host} (http)"
    proxy.stop()
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as info:
        client.read_blob(unique_repo, digest)
    assert time.monotonic() - started < 1.5
    message = str(info.value)
    assert message.startswith(f"cannot reach {proxy.host} (GET http://{proxy.host}/v2/{unique_repo}/blobs/{digest})")
    assert "connection refused" in message and "https" not in message


def test_altered_blob_and_manifest_bodies_are_read_again(proxy: RegistryFaultProxy, unique_repo: str) -> None:
    client = client_for(proxy.host)
    digest, data = random_blob(20_000)
    client.push_blob(unique_repo, digest, data)
    manifest = (
        b'{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.empty.v1+json",'
        b'"digest":"%s","size":%d},"layers":[]}' % (OCI_MANIFEST.encode(), digest.encode(), len(data))
    )
    client.put_manifest(unique_repo, "t", OCI_MANIFEST, manifest)

    proxy.set_plan(FaultPlan(rules=[FaultRule("corrupt", 1.0, methods=GET, limit=2)]))
    assert client.read_blob(unique_repo, digest) == data  # two altered answers, then the right one
    assert proxy.injected_kinds()["corrupt"] == 2
    proxy.set_plan(FaultPlan(rules=[FaultRule("corrupt", 1.0, methods=GET, path=MANIFEST_PATH, limit=1)]))
    fetched = client.get_manifest(unique_repo, "t")
    assert fetched is not None and fetched.data == manifest

    proxy.set_plan(FaultPlan(rules=[FaultRule("corrupt", 1.0, methods=GET, path=BLOB_PATH)]))
    with pytest.raises(ContentMismatchError):  # always altered: a content error, not a wrong byte
        client.read_blob(unique_repo, digest)
    assert proxy.injected_kinds()["corrupt"] == 2 + 1 + 3  # (cumulative) then the manifest once, then 3 blob reads


@pytest.mark.parametrize("kind", ["truncate", "reset_body", "503"])
def test_truncated_reset_and_unavailable_reads_are_retried(
    kind: str, proxy: RegistryFaultProxy, unique_repo: str
) -> None:
    client = client_for(proxy.host)
    digest, data = random_blob(50_000)
    client.push_blob(unique_repo, digest, data)
    proxy.set_plan(FaultPlan(rules=[FaultRule(kind, 1.0, methods=GET, path=BLOB_PATH, limit=2)]))
    assert client.read_blob(unique_repo, digest) == data
    assert client.read_blob(unique_repo, digest, 1000, 500) == data[1000:1500]
    assert proxy.injected_kinds()[kind] == 2


def test_a_reset_upload_is_restarted(proxy: RegistryFaultProxy, unique_repo: str) -> None:
    client = client_for(proxy.host)
    client.base_url()
    digest, data = random_blob(80_000)
    proxy.set_plan(FaultPlan(rules=[FaultRule("reset_request", 1.0, methods=frozenset({"PUT"}), limit=1)]))
    client.push_blob(unique_repo, digest, data)
    assert proxy.injected_kinds()["reset_request"] == 1
    proxy.clear()
    assert client.read_blob(unique_repo, digest) == data


def test_a_stall_ends_at_the_read_timeout_from_the_environment(
    proxy: RegistryFaultProxy, unique_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCI_CACHE_REGISTRY_READ_TIMEOUT", "0.5")
    client = client_for(proxy.host, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    client.base_url()
    proxy.set_plan(FaultPlan(rules=[FaultRule("stall", 1.0, stall_seconds=5.0)]))
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="timed out"):
        client.blob_exists(unique_repo, random_blob(1)[0])
    assert time.monotonic() - started < 2.5  # two attempts of 0.5 s, not two stalls of 5 s


def test_the_same_seed_makes_the_same_decisions(proxy: RegistryFaultProxy, unique_repo: str) -> None:
    client = client_for(proxy.host, retry=RetryPolicy(max_attempts=1))
    client.base_url()
    digest = random_blob(1)[0]

    def run(seed: int) -> list:
        proxy.injected.clear()
        proxy.set_plan(FaultPlan(seed=seed, rules=[FaultRule("503", 0.5)]))
        outcomes = []
        for _ in range(30):
            try:
                client.blob_exists(unique_repo, digest)
                outcomes.append("ok")
            except RegistryUnavailableError:
                outcomes.append("503")
        return outcomes

    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first != other
    assert 5 < first.count("503") < 25
