from __future__ import annotations

import pytest

from oci_cache.oci.errors import InvalidReferenceError
from oci_cache.oci.reference import is_loopback_host, parse_reference

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest, api_host",
    [
        ("ubuntu", "docker.io", "library/ubuntu", None, None, "registry-1.docker.io"),
        ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None, "registry-1.docker.io"),
        ("acme/mono:cache", "docker.io", "acme/mono", "cache", None, "registry-1.docker.io"),
        ("docker.io/ubuntu", "docker.io", "library/ubuntu", None, None, "registry-1.docker.io"),
        ("index.docker.io/acme/x:t", "docker.io", "acme/x", "t", None, "registry-1.docker.io"),
        ("ghcr.io/acme/mono:cache-main", "ghcr.io", "acme/mono", "cache-main", None, "ghcr.io"),
        ("localhost/x", "localhost", "x", None, None, "localhost"),
        ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", None, "localhost:5000"),
        ("127.0.0.1:5000/cache:main", "127.0.0.1:5000", "cache", "main", None, "127.0.0.1:5000"),
        ("myhost:443/x", "myhost:443", "x", None, None, "myhost:443"),
        (f"ghcr.io/a/b@sha256:{HEX}", "ghcr.io", "a/b", None, f"sha256:{HEX}", "ghcr.io"),
        (f"ghcr.io/a/b:t@sha256:{HEX}", "ghcr.io", "a/b", "t", f"sha256:{HEX}", "ghcr.io"),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/cache:x",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "team/cache",
            "x",
            None,
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ),
        (
            "harbor.example/proj/a__b.c-d---e:T_1.x-y",
            "harbor.example",
            "proj/a__b.c-d---e",
            "T_1.x-y",
            None,
            "harbor.example",
        ),
    ],
)
def test_parses_like_docker(text: str, registry: str, repository: str, tag: str, digest: str, api_host: str) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.api_host) == (
        registry,
        repository,
        tag,
        digest,
        api_host,
    )


def test_identifier_and_string_forms() -> None:
    assert parse_reference("ghcr.io/a/b").identifier == "latest"
    assert parse_reference("ghcr.io/a/b:t").identifier == "t"
    assert parse_reference(f"ghcr.io/a/b:t@sha256:{HEX}").identifier == f"sha256:{HEX}"
    assert str(parse_reference("ubuntu:1")) == "docker.io/library/ubuntu:1"
    assert str(parse_reference("localhost:5000/a").with_tag("x")) == "localhost:5000/a:x"


@pytest.mark.parametrize(
    "text, message",
    [
        ("ghcr.io/Acme/Mono:tag", "must be lowercase"),
        ("Acme/mono", "must be lowercase"),
        ("bad_host.example/a", "invalid registry host"),
        ("ghcr.io/a/b:bad tag", "invalid tag"),
        ("ghcr.io/a/b:-tag", "invalid tag"),
        ("ghcr.io/a//b", "invalid repository name"),
        ("ghcr.io/a/b-", "invalid repository name"),
        ("ghcr.io/", "missing repository name"),
        ("ghcr.io/a@sha256:abc", "invalid digest"),
        (f"ghcr.io/a@sha512:{HEX}{HEX}", "only sha256"),
        ("https://ghcr.io/a/b", "leave out the scheme"),
        ("", "empty image reference"),
        ("ghcr.io/" + "a" * 250, "longer than 255"),
    ],
)
def test_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        parse_reference(text)


@pytest.mark.parametrize(
    "host, expected",
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("ghcr.io", False),
        ("10.0.0.1:5000", False),
        ("registry.localhost:1", True),
    ],
)
def test_loopback_detection(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected
