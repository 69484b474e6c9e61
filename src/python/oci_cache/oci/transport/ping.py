"""The ping (`GET /v2/`): which scheme a registry speaks, and which auth scheme it asks for.

https first; plain http too only where it may be used (`insecure`, or a loopback registry).
A 401 is the normal answer of a registry that wants credentials: its challenge primes the
authorization state before the first real request.
"""

from __future__ import annotations

import logging
from typing import List, Sequence

from oci_cache.oci.errors import RegistryError
from oci_cache.oci.token_auth import RegistryAuth
from oci_cache.oci.transport.failures import ConnectionFailed, PlainHttpServer
from oci_cache.oci.transport.request import Request, Transport
from oci_cache.oci.transport.responses import discard

logger = logging.getLogger(__name__)


def find_base_url(
    transport: Transport, registry: str, api_host: str, schemes: Sequence[str], auth: RegistryAuth
) -> str:
    """ "scheme://api_host" of the first scheme in `schemes` that answers the API.
    `transport` sends without authorization (the retrying layer)."""
    unreachable: List[ConnectionFailed] = []
    for scheme in schemes:
        base = f"{scheme}://{api_host}"
        try:
            resp = transport.round_trip(Request("GET", base + "/v2/"))
        except PlainHttpServer:
            if scheme == schemes[-1]:
                raise
            logger.debug("%s does not speak TLS; using plain HTTP", api_host)
            continue
        except ConnectionFailed as e:
            if scheme == schemes[-1]:
                if unreachable:  # both schemes failed: name both URLs tried
                    first, tried = unreachable[0].reason, f"GET https://{api_host}/v2/"
                    both = (
                        f"{tried} and GET {base}/v2/: {e.reason}"
                        if first == e.reason
                        else f"{tried}: {first}; GET {base}/v2/: {e.reason}"
                    )
                    raise ConnectionFailed(f"cannot reach {registry} over https or http ({both})", e.reason) from None
                raise
            unreachable.append(e)
            continue
        status = resp.status
        challenge = resp.headers.get("WWW-Authenticate")
        discard(resp)
        if status == 401:
            auth.prime(challenge)
        elif status == 404:
            raise RegistryError(f"{base}/v2/ answered 404: {registry} does not serve the OCI distribution API there", 404)
        return base
    raise AssertionError("no scheme to try")
