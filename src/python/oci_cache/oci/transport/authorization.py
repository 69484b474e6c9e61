"""Authorization: each request carries a credential for exactly the scopes it needs.

Pull for reads; pull,push for writes; delete for DELETE (token_auth.py keeps the tokens,
shared by every repository and thread). A 401 renews or escalates the token and sends once
more; a registry that keeps answering 401 is an error, not a loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from oci_cache.oci.errors import RegistryUnauthorizedError
from oci_cache.oci.token_auth import RegistryAuth
from oci_cache.oci.transport.request import Request, Transport
from oci_cache.oci.transport.responses import discard, safe_url


class Authorizer:
    def __init__(self, inner: Transport, registry: str, auth: RegistryAuth) -> None:
        self._inner = inner
        self._registry = registry
        self._auth = auth

    def round_trip(self, request: Request) -> Any:
        if request.scopes is None:
            return self._inner.round_trip(request)
        unauthorized = 0
        rejected = 0  # 401s to a request that carried a credential (the first one may carry none)
        while True:
            authorization = self._auth.authorization(request.scopes)
            resp = self._inner.round_trip(dataclasses.replace(request, authorization=authorization))
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate")
            discard(resp)
            unauthorized += 1
            rejected += authorization is not None
            self._auth.handle_unauthorized(challenge, request.scopes, authorization, repeated=rejected > 1)
            if unauthorized > 2:
                raise RegistryUnauthorizedError(
                    f"{self._registry} keeps answering 401 for {request.method} {safe_url(request.url)}", 401
                )
