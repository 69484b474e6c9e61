from __future__ import annotations

from oci_cache.oci.www_authenticate import find_challenge, parse_www_authenticate


def test_docker_hub_bearer_challenge() -> None:
    [c] = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/ubuntu:pull"'
    )
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.params["service"] == "registry.docker.io"
    assert c.scopes == ["repository:library/ubuntu:pull"]


def test_several_scopes_and_error_parameter() -> None:
    [c] = parse_www_authenticate(
        'Bearer realm="http://127.0.0.1:1/token",service="svc",'
        'scope="repository:a:pull,push repository:b:pull",error="insufficient_scope"'
    )
    assert c.scopes == ["repository:a:pull,push", "repository:b:pull"]
    assert c.params["error"] == "insufficient_scope"


def test_basic_challenge_and_case_insensitivity() -> None:
    [c] = parse_www_authenticate('BASIC Realm="Registry Realm"')
    assert c.scheme == "basic" and c.realm == "Registry Realm"


def test_multiple_challenges_with_commas_inside_quotes() -> None:
    challenges = parse_www_authenticate('Basic realm="a, b", Bearer realm="https://x/token",service="s, t"')
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].realm == "a, b"
    assert find_challenge(challenges, "bearer").params["service"] == "s, t"  # type: ignore[union-attr]


def test_escapes_tokens_and_spaces() -> None:
    [c] = parse_www_authenticate('Bearer  realm = "https://x/t\\"q" , service=plain-token')
    assert c.realm == 'https://x/t"q'
    assert c.params["service"] == "plain-token"


def test_token68_and_garbage() -> None:
    [c] = parse_www_authenticate("Negotiate YWJjZA==")
    assert c.scheme == "negotiate" and c.token68 == "YWJjZA=="
    assert parse_www_authenticate(None) == []
    assert parse_www_authenticate("") == []
    assert [c.scheme for c in parse_www_authenticate(', , Bearer realm="r", ')] == ["bearer"]
    [u] = parse_www_authenticate('Bearer realm="unterminated')
    assert u.realm == "unterminated"
