"""TLS, insecure mode, retries through a fault-injecting proxy, and redirects to a storage host."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from oci_fixtures import client_for, random_blob
from registry_fixtures import FaultProxy, RegistryServer, StaticFileServer, start_registry

from oci_cache.oci.credentials import Credentials, StaticCredentials
from oci_cache.oci.errors import RegistryUnavailableError
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.media_types import OCI_MANIFEST
from oci_cache.oci.target import PushOutcome

pytestmark = pytest.mark.registry


# ------------------------------------------------------------------------------ TLS


def test_tls_with_the_ca_bundle(registry_tls: RegistryServer, unique_repo: str) -> None:
    client = client_for(registry_tls.host, ca_bundle=registry_tls.ca_bundle)
    digest, data = random_blob(100_000)
    assert client.push_blob(unique_repo, digest, data) is PushOutcome.UPLOADED
    assert client.read_blob(unique_repo, digest) == data
    assert client.base_url() == f"https://{registry_tls.host}"
    assert "https" in client.describe()


def test_tls_without_the_ca_fails_clearly(registry_tls: RegistryServer, unique_repo: str) -> None:
    client = client_for(registry_tls.host)
    with pytest.raises(RegistryUnavailableError, match="not trusted.*SSL_CERT_FILE=PATH.*insecure=true"):
        client.blob_exists(unique_repo, random_blob(1)[0])


def test_insecure_accepts_an_unverified_certificate(registry_tls: RegistryServer, unique_repo: str) -> None:
    client = client_for(registry_tls.host, insecure=True)
    digest, data = random_blob(1000)
    assert client.push_blob(unique_repo, digest, data) is PushOutcome.UPLOADED
    assert client.base_url().startswith("https://")  # TLS kept, just not verified
    assert "insecure" in client.describe()


def test_insecure_and_loopback_fall_back_to_plain_http(registry_plain: RegistryServer, unique_repo: str) -> None:
    for client in (client_for(registry_plain.host, insecure=True), client_for(registry_plain.host)):
        assert client.push_blob(unique_repo, *random_blob(10)) is PushOutcome.UPLOADED
        assert client.base_url() == f"http://{registry_plain.host}"


# ------------------------------------------------------------------------------ retries


@pytest.fixture
def proxy(registry_plain: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry_plain.host)
    yield proxy
    proxy.stop()


def test_retries_5xx_and_dropped_connections(proxy: FaultProxy, unique_repo: str) -> None:
    client = client_for(proxy.host)
    client.base_url()  # ping first, so the faults hit the transfers
    digest, data = random_blob(50_000)
    proxy.fail_next(2, 503, method="HEAD")
    proxy.fail_next(1, 502, method="PUT")  # the upload restarts from a fresh POST
    proxy.fail_next(1, 0, method="GET")  # connection dropped without an answer
    assert client.push_blob(unique_repo, digest, data) is PushOutcome.UPLOADED
    assert client.read_blob(unique_repo, digest) == data
    assert proxy.pending_faults() == 0
    statuses = [status for method, _, status in proxy.seen]
    assert statuses.count(503) == 2 and statuses.count(502) == 1 and statuses.count(0) == 1
    assert [m for m, _, _ in proxy.seen].count("POST") == 2


def test_retry_after_is_honoured(proxy: FaultProxy, unique_repo: str) -> None:
    client = client_for(proxy.host)
    client.base_url()
    proxy.fail_next(1, 429, headers={"Retry-After": "1"}, method="HEAD")
    started = time.monotonic()
    assert client.blob_exists(unique_repo, random_blob(1)[0]) is None
    assert time.monotonic() - started >= 1.0


def test_gives_up_within_the_budget_with_a_clear_error(proxy: FaultProxy, unique_repo: str) -> None:
    client = client_for(
        proxy.host, retry=RetryPolicy(max_attempts=10, initial_delay=0.01, max_delay=0.05, total_timeout=5)
    )
    client.base_url()
    proxy.fail_next(1, 429, headers={"Retry-After": "3600"}, method="HEAD")
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="429.*retry after 3600s") as info:
        client.blob_exists(unique_repo, random_blob(1)[0])
    assert time.monotonic() - started < 2
    assert info.value.status == 429 and info.value.retry_after == 3600
    proxy.fail_next(20, 503)
    with pytest.raises(RegistryUnavailableError, match="503.*gave up after 10 attempts"):
        client.blob_exists(unique_repo, random_blob(1)[0])


def test_unreachable_registry_is_a_clear_error() -> None:
    from registry_fixtures import free_port

    client = client_for(f"127.0.0.1:{free_port()}", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    with pytest.raises(RegistryUnavailableError, match="cannot reach 127.0.0.1"):
        client.blob_exists("x", random_blob(1)[0])


# ------------------------------------------------------------------------------ redirects


def test_blob_redirect_to_storage_drops_authorization(tmp_path: Path, unique_repo: str) -> None:
    """The registry redirects blob GETs to a storage host (its `redirect` middleware); the client
    follows without sending the registry's Authorization there."""
    storage_root = tmp_path / "registry" / "storage"
    storage_root.mkdir(parents=True)
    storage = StaticFileServer(storage_root, bind_host="127.0.0.1")
    server = start_registry(
        tmp_path / "registry",
        htpasswd_users={"alice": "redirect-pw"},
        redirect_base_url=f"http://localhost:{storage.port}/",
    )
    try:
        client = client_for(
            server.host, credentials=StaticCredentials({server.host: Credentials("alice", "redirect-pw")})
        )
        digest, data = random_blob(200_000)
        client.push_blob(unique_repo, digest, data)
        assert client.read_blob(unique_repo, digest) == data
        assert client.read_blob(unique_repo, digest, 1000, 5000) == data[1000:6000]  # storage answers 200: sliced
        with client.open_blob_stream(unique_repo, digest, 150_000, 100) as stream:
            assert stream.read() == data[150_000:150_100]
        assert client.blob_exists(unique_repo, digest) == len(data)
        hits = [r for r in storage.requests if digest.split(":")[1] in r[1]]
        assert len(hits) >= 3, storage.requests
        assert all("Authorization" not in headers for _, _, headers in hits)
        # Manifests are not redirected and still work with auth.
        client.push_blob(unique_repo, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", b"{}")
        manifest = (
            b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
            b'{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e'
            b'94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}'
        )
        assert client.put_manifest(unique_repo, "t", OCI_MANIFEST, manifest)
    finally:
        server.stop()
        storage.stop()
