from __future__ import annotations

import pytest

from oci_cache.oci.credentials import NoCredentials
from oci_cache.oci.errors import InvalidReferenceError
from oci_cache.oci.registry_client import RegistryClient, _add_query, _parse_content_range
from oci_cache.oci.transport.responses import safe_url


def test_upload_url_keeps_its_own_query() -> None:
    assert _add_query("http://r/v2/x/blobs/uploads/u?_state=abc%3D", "digest", "sha256:00") == (
        "http://r/v2/x/blobs/uploads/u?_state=abc%3D&digest=sha256:00"
    )
    assert _add_query("http://r/v2/x/blobs/uploads/u", "digest", "sha256:00") == (
        "http://r/v2/x/blobs/uploads/u?digest=sha256:00"
    )


def test_urls_in_messages_lose_query_and_userinfo() -> None:
    assert safe_url("https://user:pw@s3.example/bucket/blob?X-Amz-Signature=secret") == "https://s3.example/bucket/blob"


def test_content_range_parsing() -> None:
    assert _parse_content_range("bytes 10-19/100") == (10, 19, 100)
    assert _parse_content_range("bytes 10-19/*") == (10, 19, None)
    assert _parse_content_range("garbage") == (None, None, None)


@pytest.mark.parametrize("repository", ["a/../b", "Upper/case", "", "a//b", "x?y"])
def test_repository_names_are_validated_before_any_request(repository: str) -> None:
    client = RegistryClient("203.0.113.1:1", credentials=NoCredentials())  # never contacted
    with pytest.raises(InvalidReferenceError):
        client.blob_exists(repository, "sha256:" + "0" * 64)
    with pytest.raises(InvalidReferenceError):
        client.get_manifest("ok/repo", "bad tag")


def test_docker_hub_aliases_use_the_api_host() -> None:
    client = RegistryClient("index.docker.io", credentials=NoCredentials())
    assert client.registry == "docker.io" and client.api_host == "registry-1.docker.io"
