"""What every layer does with an answer: drain or read it, name its error, describe its URL."""

from __future__ import annotations

import json
from typing import Any, List, Optional, Set
from urllib.parse import urlsplit

DRAIN_LIMIT = 256 << 10
"""A response with at most this much left unread is drained so its connection is reused."""


def discard(resp: Any) -> None:
    """Done with a response: drain a short rest so the connection is reused, or close it."""
    remaining = getattr(resp, "length_remaining", None)
    try:
        if remaining is None or remaining <= DRAIN_LIMIT:
            resp.drain_conn()
        else:
            resp.close()  # e.g. a stream closed early: don't download the rest of a big blob
    except Exception:  # a broken connection is simply not reused
        pass
    resp.release_conn()


def read_all(resp: Any) -> bytes:
    try:
        return resp.read()
    finally:
        resp.release_conn()


def read_error_body(resp: Any) -> bytes:
    try:
        return resp.read(64 << 10) or b""
    except Exception:
        return b""
    finally:
        discard(resp)


def content_length(resp: Any) -> Optional[int]:
    value = resp.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def error_codes(body: bytes) -> List[str]:
    """The `code`s of an OCI error body ({"errors": [{"code": …}]})."""
    try:
        errors = json.loads(body.decode("utf-8")).get("errors") or []
        return [str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code")]
    except (ValueError, AttributeError, UnicodeDecodeError):
        return []


def error_summary(body: bytes, prefix: str = "") -> str:
    """ "CODE: message; CODE: message" from an OCI error body (never its `detail`), or a short text."""
    if not body:
        return ""
    try:
        errors = json.loads(body.decode("utf-8")).get("errors") or []
        parts = [f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)]
        text = "; ".join(parts)
    except (ValueError, AttributeError, UnicodeDecodeError):
        text = body[:200].decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else ""
    return f"{prefix}({text[:300]})" if text else ""


def safe_url(url: str) -> str:
    """scheme://host/path, without the query (signed URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def same_origin(url: str, base: Optional[str]) -> bool:
    """Same scheme, host and port (80/443 when not given) as `base`; never when `base` is None."""
    if base is None:
        return False
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port or _default_port(a.scheme)) == (
        b.scheme,
        b.hostname,
        b.port or _default_port(b.scheme),
    )


def connection_refused(error: BaseException) -> bool:
    """True when the TCP connection was refused (urllib3 keeps the OSError as the cause)."""
    seen: Set[int] = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def reason(error: BaseException) -> str:
    """A short reason for a urllib3/OS error (urllib3 nests the cause)."""
    cause = getattr(error, "reason", None) or error
    text = str(cause) or type(cause).__name__
    return text[:300]


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
