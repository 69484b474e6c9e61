"""Retries: connection errors and 408/429/5xx sent again within the request's RetryPolicy.

Backoff with jitter, Retry-After honoured (http_retry.py). A refused connection (nothing
listens) gets one quick retry only, so an unreachable registry fails in a fraction of a
second instead of stalling a build. TLS failures are not retried: they are named (not TLS
at all, an untrusted certificate) so the user knows which setting to change.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Optional, Sequence
from urllib.parse import urlsplit

from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import SSLError as Urllib3SSLError

from oci_cache.oci.errors import RegistryUnavailableError
from oci_cache.oci.http_retry import RETRYABLE_STATUSES, RetryBudget, RetryPolicy, parse_retry_after
from oci_cache.oci.transport.failures import ConnectionFailed, PlainHttpServer
from oci_cache.oci.transport.request import Body, Request, Transport
from oci_cache.oci.transport.responses import connection_refused, error_codes, error_summary, read_error_body, reason, safe_url

logger = logging.getLogger(__name__)

REFUSED_RETRY_DELAY = 0.1  # seconds before the one retry of a refused connection
_NOT_TLS_MARKERS = (
    "wrong version number",
    "wrong_version_number",
    "record layer failure",
    "unknown protocol",
    "http request",
    "packet length too long",
    "record_layer_failure",
)


class Retrier:
    def __init__(self, inner: Transport, registry: str, policy: RetryPolicy) -> None:
        self._inner = inner
        self._registry = registry
        self.policy = policy

    def round_trip(self, request: Request) -> Any:
        budget = RetryBudget(request.retry or self.policy)
        refusals = 0
        method, url = request.method, request.url
        while True:
            try:
                payload = request.body() if request.body is not None else None
            except OSError as e:
                raise RegistryUnavailableError(f"cannot read the data to send to {self._registry}: {e}") from None
            try:
                resp = self._inner.round_trip(_with_payload(request, payload))
            except Urllib3SSLError as e:
                raise self._tls_error(url, e) from None
            except (Urllib3Error, OSError) as e:
                refused = connection_refused(e)
                why = "connection refused" if refused else reason(e)
                message = f"cannot reach {self._registry} ({method} {safe_url(url)}): {why}"
                if refused:
                    # Nothing listens there: backing off for seconds would only stall the build.
                    refusals += 1
                    if refusals > 1 or budget.policy.max_attempts <= 1:
                        suffix = " (refused again after a quick retry)" if refusals > 1 else ""
                        raise ConnectionFailed(message + suffix, why) from None
                    logger.info("%s; retrying once in %.1fs", message, REFUSED_RETRY_DELAY)
                    time.sleep(REFUSED_RETRY_DELAY)
                    continue
                sleep_or_raise(budget, None, message, connection_reason=why)
                continue
            finally:
                if payload is not None and hasattr(payload, "close"):
                    payload.close()
            if resp.status not in RETRYABLE_STATUSES:
                return resp
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            status, error_body = resp.status, read_error_body(resp)
            message = (
                f"{self._registry} answered HTTP {status} to {method} {safe_url(url)}{error_summary(error_body, ' ')}"
            )
            sleep_or_raise(budget, retry_after, message, status, error_codes(error_body))

    def _tls_error(self, url: str, error: Exception) -> RegistryUnavailableError:
        why = reason(error)
        lowered = why.lower()
        netloc = urlsplit(url).netloc
        if any(marker in lowered for marker in _NOT_TLS_MARKERS):
            return PlainHttpServer(
                f"{self._registry} does not speak TLS (HTTPS) on {netloc}; "
                "if it is a plain-HTTP registry, set insecure=true for it"
            )
        if "certificate" in lowered or "verify" in lowered:
            return RegistryUnavailableError(
                f"the TLS certificate of {netloc} is not trusted ({why}); trust the CA that signed it "
                "(SSL_CERT_FILE=PATH in the daemon's environment) or, for a lab registry, set insecure=true"
            )
        return RegistryUnavailableError(f"TLS connection to {netloc} failed: {why}")


def sleep_or_raise(
    budget: RetryBudget,
    retry_after: Optional[float],
    message: str,
    status: Optional[int] = None,
    codes: Sequence[str] = (),
    connection_reason: Optional[str] = None,
) -> None:
    """Waits before the next attempt, or raises once the budget is spent: ConnectionFailed when
    `connection_reason` says no HTTP answer came, else RegistryUnavailableError. The verbs use
    it too, for a body cut off mid-read."""
    delay = budget.next_delay(retry_after)
    if delay is None:
        suffix = f" (gave up {budget.gave_up_reason})" if budget.policy.max_attempts > 1 else ""
        if connection_reason is not None:
            raise ConnectionFailed(message + suffix, connection_reason)
        raise RegistryUnavailableError(message + suffix, status, codes, retry_after)
    logger.info("%s; retrying in %.1fs", message, delay)
    time.sleep(delay)


def _with_payload(request: Request, payload: Optional[Body]) -> Request:
    return dataclasses.replace(request, body=None if payload is None else (lambda: payload))
