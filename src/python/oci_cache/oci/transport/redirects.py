"""Redirects followed by hand, so the Authorization goes to the registry's own origin only.

Blob GETs of GHCR, ECR and Docker Hub redirect to a storage host with a signed URL; sending
the registry's token there would leak it. Only GET and HEAD are followed (an upload that
redirects is answered as it is). A blob GET's storage URL is remembered (redirect_memory.py)
and tried first next time; the registry is asked again when it fails.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Optional
from urllib.parse import urljoin

from urllib3.exceptions import HTTPError as Urllib3Error

from oci_cache.oci.errors import RegistryError
from oci_cache.oci.redirect_memory import RedirectMemory
from oci_cache.oci.transport.request import Request, Transport
from oci_cache.oci.transport.responses import discard, safe_url, same_origin

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class RedirectFollower:
    """`registry_origin()` is the registry's "scheme://host[:port]" once known (None before the
    ping: then no Authorization is sent anywhere); `registry` names it in errors."""

    def __init__(
        self,
        inner: Transport,
        registry: str,
        registry_origin: Callable[[], Optional[str]],
        memory: Optional[RedirectMemory] = None,
    ) -> None:
        self._inner = inner
        self._registry = registry
        self._registry_origin = registry_origin
        self.memory = memory if memory is not None else RedirectMemory()

    def round_trip(self, request: Request) -> Any:
        if request.method == "GET":
            remembered = self._remembered(request)
            if remembered is not None:
                return remembered
        url = request.url
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._inner.round_trip(self._hop(request, url))
            location = resp.headers.get("Location")
            if resp.status in REDIRECT_STATUSES and request.method in ("GET", "HEAD") and location:
                discard(resp)
                url = urljoin(url, location)
                logger.debug("following a redirect to %s", safe_url(url))
                continue
            logger.debug("%s %s -> %d", request.method, safe_url(url), resp.status)
            if request.method == "GET" and url != request.url and resp.status in (200, 206):
                self.memory.remember(request.url, url)
            return resp
        raise RegistryError(
            f"{self._registry}: more than {MAX_REDIRECTS} redirects for {request.method} {safe_url(url)}"
        )

    def _hop(self, request: Request, url: str) -> Request:
        authorization = request.authorization if same_origin(url, self._registry_origin()) else None
        return dataclasses.replace(request, url=url, authorization=authorization)

    def _remembered(self, request: Request) -> Any:
        """The response of the storage a blob GET was redirected to lately, or None: then ask
        the registry (the target expired, failed or was never known)."""
        target = self.memory.lookup(request.url)
        if target is None:
            return None
        try:
            resp = self._inner.round_trip(self._hop(request, target))
        except (Urllib3Error, OSError):
            self.memory.forget(request.url)
            return None
        if resp.status in (200, 206):
            logger.debug("GET %s (remembered redirect) -> %d", safe_url(target), resp.status)
            return resp
        discard(resp)
        self.memory.forget(request.url)
        return None
