"""One registry's transport stack: Authorizer → Retrier → RedirectFollower → PooledSender."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Mapping, Optional, Tuple

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from oci_cache.oci.credentials import CredentialSource
from oci_cache.oci.errors import RegistryUnavailableError
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.redirect_memory import RedirectMemory
from oci_cache.oci.token_auth import RegistryAuth
from oci_cache.oci.transport.authorization import Authorizer
from oci_cache.oci.transport.ping import find_base_url, first_answer
from oci_cache.oci.transport.pools import PooledSender
from oci_cache.oci.transport.redirects import RedirectFollower
from oci_cache.oci.transport.request import Request
from oci_cache.oci.transport.responses import discard, reason
from oci_cache.oci.transport.retries import Retrier

TOKEN_RESPONSE_LIMIT = 1 << 20


class RegistryTransport:
    """`round_trip` sends an API request: a path is resolved against the registry's base URL,
    found by the ping on first use. `may_use_http`: plain http is tried after https."""

    def __init__(
        self,
        registry: str,
        api_host: str,
        hostname: str,
        credentials: CredentialSource,
        *,
        may_use_http: bool,
        insecure: bool,
        ca_bundle: Optional[str],
        retry: RetryPolicy,
        timeout: urllib3.Timeout,
        max_connections: int,
    ) -> None:
        self._registry = registry
        self._api_host = api_host
        self._schemes = ("https", "http") if may_use_http else ("https",)
        self._base: Optional[str] = None
        self._trying: Optional[str] = None
        self._base_lock = threading.Lock()
        self._sender = PooledSender(
            hostname, timeout, insecure=insecure, ca_bundle=ca_bundle, max_connections=max_connections
        )
        self.redirect_memory = RedirectMemory()
        self.retrier = Retrier(RedirectFollower(self._sender, registry, self.known_base_url, self.redirect_memory), registry, retry)
        self.auth = RegistryAuth(registry, credentials, self._fetch_token, allow_plain_http_realm=insecure)
        self._authorizer = Authorizer(self.retrier, registry, self.auth)

    def round_trip(self, request: Request) -> Any:
        if "://" in request.url:
            return self._authorizer.round_trip(request)
        if self._base is None and request.method in ("GET", "HEAD") and request.body is None:
            with self._base_lock:
                if self._base is None:
                    return self._first_request(request)
        return self._authorizer.round_trip(dataclasses.replace(request, url=self.base_url() + request.url))

    def base_url(self) -> str:
        """ "https://host[:port]" (or http://), found by pinging /v2/ once (unless the
        first request, a GET or HEAD, found it)."""
        if self._base is not None:
            return self._base
        with self._base_lock:
            if self._base is None:
                self._base = find_base_url(self.retrier, self._registry, self._api_host, self._schemes, self.auth)
            return self._base

    def known_base_url(self) -> Optional[str]:
        """The base URL once found (or the one being tried by the first request), else None
        (nothing is sent to find it)."""
        return self._base or self._trying

    def _first_request(self, request: Request) -> Any:
        """Sends the client's first request in place of the ping (one round trip fewer):
        its scheme is the first that answers, and a 401 primes the authorization as the
        ping's would (the Authorizer answers it). A 404 may mean that this is not a
        registry at all: only then is the ping sent, to tell."""

        def send(base: str) -> Any:
            self._trying = base
            return self._authorizer.round_trip(dataclasses.replace(request, url=base + request.url))

        try:
            base, resp = first_answer(
                send, self._registry, self._api_host, self._schemes, f"{request.method} {request.url}"
            )
        finally:
            self._trying = None
        if resp.status == 404:
            try:  # raises RegistryError when /v2/ is not there either
                base = find_base_url(self.retrier, self._registry, self._api_host, self._schemes, self.auth)
            except BaseException:
                discard(resp)
                raise
        self._base = base
        return resp

    def close(self) -> None:
        self._sender.close()

    def _fetch_token(
        self, method: str, url: str, headers: Mapping[str, str], body: Optional[bytes]
    ) -> Tuple[int, Mapping[str, str], bytes]:
        """token_auth's transport: to the token realm, with retries and redirects, no Authorization
        of ours (the realm gets the credentials token_auth puts in `headers`)."""
        resp = self.retrier.round_trip(Request(method, url, headers, (lambda: body) if body is not None else None))
        try:
            data = resp.read(TOKEN_RESPONSE_LIMIT)
        except Urllib3Error as e:
            raise RegistryUnavailableError(f"reading the token for {self._registry}: {reason(e)}") from None
        finally:
            discard(resp)
        return resp.status, dict(resp.headers), data
