"""The bottom layer: one HTTP exchange on urllib3's pools, no redirects, no retries."""

from __future__ import annotations

import ssl
import warnings
from typing import Any, Dict, Optional
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import InsecureRequestWarning

from oci_cache.oci.transport.request import Request

USER_AGENT = "pants-oci-cache/0.1 (urllib3)"
READ_CHUNK = 1 << 20
# urllib3 2 reads responses READ_CHUNK bytes at a time (`blocksize`); urllib3 1.26, which Pants
# 2.24-2.29 pin in their own environment (and so in a `[GLOBAL].plugins` install), has no such
# pool setting and reads with http.client's default.
URLLIB3_2 = int(urllib3.__version__.split(".")[0]) >= 2
_BLOCKSIZE = {"blocksize": READ_CHUNK} if URLLIB3_2 else {}


class PooledSender:
    """Sends to the registry's host on one pool (with its TLS settings: `insecure`, `ca_bundle`)
    and to any other host (the storage a blob GET redirects to) on another, with default TLS."""

    def __init__(
        self,
        hostname: str,
        timeout: urllib3.Timeout,
        *,
        insecure: bool = False,
        ca_bundle: Optional[str] = None,
        max_connections: int = 16,
    ) -> None:
        self._hostname = hostname
        self._timeout = timeout
        self._registry_pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=max_connections,
            retries=False,
            timeout=timeout,
            **_BLOCKSIZE,
            **tls_settings(insecure, ca_bundle),
        )
        self._other_pool = urllib3.PoolManager(
            num_pools=16, maxsize=max_connections, retries=False, timeout=timeout, **_BLOCKSIZE
        )
        if insecure:
            warnings.filterwarnings(
                "ignore",
                message=f"Unverified HTTPS request is being made to host '{hostname}'",
                category=InsecureRequestWarning,
            )

    def round_trip(self, request: Request) -> Any:
        headers = {"User-Agent": USER_AGENT}
        headers.update(request.headers)
        if request.authorization is not None:
            headers["Authorization"] = request.authorization
        pool = self._registry_pool if urlsplit(request.url).hostname == self._hostname else self._other_pool
        return pool.urlopen(
            request.method,
            request.url,
            body=request.body() if request.body is not None else None,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            timeout=self._timeout,
        )

    def close(self) -> None:
        self._registry_pool.clear()
        self._other_pool.clear()


def tls_settings(insecure: bool, ca_bundle: Optional[str]) -> Dict[str, Any]:
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return {"ssl_context": context, "cert_reqs": "CERT_NONE"}
    if ca_bundle and not URLLIB3_2:
        # urllib3 1.26 checks host names itself (IP addresses too) only in a context it made.
        return {"ca_certs": ca_bundle, "cert_reqs": "CERT_REQUIRED"}
    if ca_bundle:
        return {"ssl_context": ssl.create_default_context(cafile=ca_bundle)}
    return {}
