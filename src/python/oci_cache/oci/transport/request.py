"""One API request as the transport layers pass it down, and the interface they share."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Protocol, Union

from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.token_auth import Scopes

Body = Union[bytes, Any]
"""What urllib3 sends: bytes or a readable file object."""

BodyFactory = Callable[[], Body]
"""Makes the body afresh for each attempt (a retried upload must be read again)."""

@dataclasses.dataclass(frozen=True)
class Request:
    """`scopes` None: no Authorization is wanted (the ping, token requests).
    `authorization` is set by the Authorizer; the redirect layer sends it to the registry's
    origin only. `retry` None: the registry's RetryPolicy."""

    method: str
    url: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    body: Optional[BodyFactory] = None
    scopes: Optional[Scopes] = None
    authorization: Optional[str] = None
    retry: Optional[RetryPolicy] = None


class Transport(Protocol):
    def round_trip(self, request: Request) -> Any:
        """An unread urllib3 response; the caller reads it or `responses.discard`s it."""
        ...
