"""Which scheme a registry speaks, and which auth scheme it asks for.

https first; plain http too only where it may be used (`insecure`, or a loopback registry).
Two ways to learn it:

- `find_base_url`, the ping (`GET /v2/`): a 401 is the normal answer of a registry that
  wants credentials, and its challenge primes the authorization state before the first
  real request;
- `first_answer`, with the client's first real request (a GET or HEAD) instead of a ping:
  across a wide-area link that saves a round trip, because a 401 to that request carries
  the same challenge (transport/authorization.py answers it and sends once more).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, List, Sequence, Tuple

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
    base, resp = first_answer(
        lambda base: transport.round_trip(Request("GET", base + "/v2/")), registry, api_host, schemes, "GET /v2/"
    )
    status = resp.status
    challenge = resp.headers.get("WWW-Authenticate")
    discard(resp)
    if status == 401:
        auth.prime(challenge)
    elif status == 404:
        raise RegistryError(f"{base}/v2/ answered 404: {registry} does not serve the OCI distribution API there", 404)
    return base


def first_answer(
    send: Callable[[str], Any], registry: str, api_host: str, schemes: Sequence[str], what: str
) -> Tuple[str, Any]:
    """(base, response) of the first scheme in `schemes` for which `send(base)` gets an
    HTTP answer, whatever its status. `what` ("GET /v2/") names the request in errors."""
    method, _, path = what.partition(" ")
    unreachable: List[ConnectionFailed] = []
    for scheme in schemes:
        base = f"{scheme}://{api_host}"
        try:
            return base, send(base)
        except PlainHttpServer:
            if scheme == schemes[-1]:
                raise
            logger.debug("%s does not speak TLS; using plain HTTP", api_host)
            continue
        except ConnectionFailed as e:
            if scheme == schemes[-1]:
                if unreachable:  # both schemes failed: name both URLs tried
                    first, tried = unreachable[0].reason, f"{method} https://{api_host}{path}"
                    both = (
                        f"{tried} and {method} {base}{path}: {e.reason}"
                        if first == e.reason
                        else f"{tried}: {first}; {method} {base}{path}: {e.reason}"
                    )
                    raise ConnectionFailed(f"cannot reach {registry} over https or http ({both})", e.reason) from None
                raise
            unreachable.append(e)
            continue
    raise AssertionError("no scheme to try")
