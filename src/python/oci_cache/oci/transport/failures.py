"""The two ways a registry may give no HTTP answer at all, as the layers raise them."""

from __future__ import annotations

from oci_cache.oci.errors import RegistryUnavailableError


class PlainHttpServer(RegistryUnavailableError):
    """The host answered a TLS handshake with something that is not TLS (a plain-HTTP server)."""


class ConnectionFailed(RegistryUnavailableError):
    """No HTTP answer at all: refused, reset, timed out. `reason` is the short cause."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
