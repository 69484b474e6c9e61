"""The transport layers (oci/transport/), each on a scripted inner transport: no network."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest

from oci_cache.oci.credentials import Credentials, StaticCredentials
from oci_cache.oci.errors import RegistryUnauthorizedError, RegistryUnavailableError
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.redirect_memory import RedirectMemory
from oci_cache.oci.token_auth import RegistryAuth, repository_scope
from oci_cache.oci.transport.authorization import Authorizer
from oci_cache.oci.transport.failures import ConnectionFailed
from oci_cache.oci.transport.redirects import MAX_REDIRECTS, RedirectFollower
from oci_cache.oci.transport.request import Request
from oci_cache.oci.transport.retries import Retrier

REGISTRY = "https://registry.example"
BLOB = f"{REGISTRY}/v2/team/cache/blobs/sha256:{'a' * 64}"
STORAGE = "https://storage.example/signed/blob?X-Amz-Signature=s"
FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, total_timeout=5.0)


class Answer:
    def __init__(self, status: int, headers: Optional[Dict[str, str]] = None, body: bytes = b"") -> None:
        self.status = status
        self.headers = headers or {}
        self._body = body
        self.length_remaining = len(body)

    def read(self, n: Optional[int] = None) -> bytes:
        data, self._body = self._body, b""
        return data

    def drain_conn(self) -> None:
        self._body = b""

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class Script:
    """An inner transport that answers from a list and records what it was sent."""

    def __init__(self, *answers: Any) -> None:
        self.answers: List[Any] = list(answers)
        self.sent: List[Request] = []
        self.bodies: List[Any] = []

    def round_trip(self, request: Request) -> Any:
        self.sent.append(request)
        self.bodies.append(request.body() if request.body is not None else None)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_the_authorization_goes_to_the_registry_but_not_to_the_storage_it_redirects_to() -> None:
    inner = Script(Answer(307, {"Location": STORAGE}), Answer(200, body=b"blob"))
    follower = RedirectFollower(inner, "registry.example", lambda: REGISTRY)
    resp = follower.round_trip(Request("GET", BLOB, authorization="Bearer t"))
    assert resp.status == 200
    assert [(r.url, r.authorization) for r in inner.sent] == [(BLOB, "Bearer t"), (STORAGE, None)]


def test_before_the_ping_no_authorization_is_sent_anywhere() -> None:
    inner = Script(Answer(200))
    RedirectFollower(inner, "registry.example", lambda: None).round_trip(Request("GET", BLOB, authorization="Bearer t"))
    assert inner.sent[0].authorization is None


def test_a_blob_redirect_is_remembered_and_its_storage_asked_directly_next_time() -> None:
    memory = RedirectMemory()
    inner = Script(Answer(307, {"Location": STORAGE}), Answer(200), Answer(206))
    follower = RedirectFollower(inner, "registry.example", lambda: REGISTRY, memory)
    follower.round_trip(Request("GET", BLOB))
    follower.round_trip(Request("GET", BLOB, headers={"Range": "bytes=0-9"}))
    assert [r.url for r in inner.sent] == [BLOB, STORAGE, STORAGE]
    assert inner.sent[2].headers == {"Range": "bytes=0-9"}


def test_a_remembered_storage_that_fails_is_forgotten_and_the_registry_asked() -> None:
    memory = RedirectMemory()
    memory.remember(BLOB, STORAGE)
    inner = Script(Answer(403), Answer(200))
    resp = RedirectFollower(inner, "registry.example", lambda: REGISTRY, memory).round_trip(Request("GET", BLOB))
    assert resp.status == 200 and [r.url for r in inner.sent] == [STORAGE, BLOB]
    assert memory.lookup(BLOB) is None


def test_uploads_are_not_redirected_and_endless_redirects_are_an_error() -> None:
    put = Script(Answer(307, {"Location": STORAGE}))
    assert RedirectFollower(put, "r", lambda: REGISTRY).round_trip(Request("PUT", BLOB)).status == 307
    loop = Script(*[Answer(302, {"Location": BLOB}) for _ in range(MAX_REDIRECTS + 1)])
    with pytest.raises(Exception, match="more than 5 redirects"):
        RedirectFollower(loop, "r", lambda: REGISTRY).round_trip(Request("HEAD", BLOB))


def test_a_retried_request_makes_its_body_afresh_each_attempt() -> None:
    made: List[int] = []

    def body() -> bytes:
        made.append(1)
        return b"payload"

    inner = Script(Answer(503), Answer(201))
    resp = Retrier(inner, "registry.example", FAST).round_trip(Request("PUT", BLOB, body=body))
    assert resp.status == 201 and len(made) == 2 and inner.bodies == [b"payload", b"payload"]


def test_retryable_statuses_give_up_within_the_policy_with_the_registry_error_in_the_message() -> None:
    error = b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}'
    inner = Script(*[Answer(503, body=error) for _ in range(3)])
    with pytest.raises(RegistryUnavailableError, match=r"HTTP 503 .*UNAVAILABLE: try later.*gave up") as raised:
        Retrier(inner, "registry.example", FAST).round_trip(Request("GET", BLOB))
    assert len(inner.sent) == 3 and list(raised.value.codes) == ["UNAVAILABLE"]


def test_a_refused_connection_is_retried_once_only() -> None:
    inner = Script(ConnectionRefusedError(111, "refused"), ConnectionRefusedError(111, "refused"), Answer(200))
    with pytest.raises(ConnectionFailed, match="refused again after a quick retry"):
        Retrier(inner, "registry.example", RetryPolicy()).round_trip(Request("GET", BLOB))
    assert len(inner.sent) == 2


def test_a_401_renews_the_token_and_sends_once_more() -> None:
    issued: List[str] = []

    def token_endpoint(method: str, url: str, headers: Any, body: Any) -> Any:
        issued.append(url)
        return 200, {}, ('{"token": "t%d"}' % len(issued)).encode()

    auth = RegistryAuth("registry.example", StaticCredentials({"registry.example": Credentials("u", "p")}), token_endpoint)
    challenge = 'Bearer realm="https://auth.example/token",service="registry.example"'
    auth.prime(challenge)
    scopes = frozenset({repository_scope("team/cache", "pull")})
    inner = Script(Answer(401, {"WWW-Authenticate": challenge}), Answer(200))
    resp = Authorizer(inner, "registry.example", auth).round_trip(Request("GET", BLOB, scopes=scopes))
    assert resp.status == 200
    assert [r.authorization for r in inner.sent] == ["Bearer t1", "Bearer t2"]


def test_a_registry_that_keeps_answering_401_is_an_error_not_a_loop() -> None:
    auth = RegistryAuth("registry.example", StaticCredentials({"registry.example": Credentials("u", "p")}), lambda *a: (500, {}, b""))
    scopes = frozenset({repository_scope("team/cache", "pull")})
    inner = Script(*[Answer(401, {"WWW-Authenticate": 'Basic realm="r"'}) for _ in range(3)])
    with pytest.raises(RegistryUnauthorizedError):
        Authorizer(inner, "registry.example", auth).round_trip(Request("GET", BLOB, scopes=scopes))
    assert len(inner.sent) <= 3


def test_a_request_without_scopes_carries_no_authorization() -> None:
    inner = Script(Answer(200))
    auth = RegistryAuth("registry.example", StaticCredentials({"registry.example": Credentials("u", "p")}), lambda *a: (500, {}, b""))
    Authorizer(inner, "registry.example", auth).round_trip(Request("GET", REGISTRY + "/v2/"))
    assert inner.sent[0].authorization is None
