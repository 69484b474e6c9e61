"""Errors of the OCI transport layer (registries and image-layout directories).

Every error is a `CacheError`, so the gRPC layer can map it to a status code, and
every message says what went wrong and, where it can, what to do about it.
Messages never contain credentials, tokens, or signed URL query strings.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from oci_cache.errors import (
    CacheError,
    DigestMismatchError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    UnauthenticatedError,
    UnavailableError,
)


class OciError(CacheError):
    """Base of every error raised by oci_cache.oci."""

    grpc_code_name = "UNAVAILABLE"


class InvalidReferenceError(OciError, InvalidArgumentError):
    """A malformed image reference, digest or tag."""

    grpc_code_name = "INVALID_ARGUMENT"


class BlobNotFoundError(OciError, NotFoundError):
    """A blob (or manifest, when asked for strictly) that the target does not hold."""

    grpc_code_name = "NOT_FOUND"


class BlobRangeError(OciError, OutOfRangeError):
    """A Range read that starts past the end of the blob."""

    grpc_code_name = "OUT_OF_RANGE"


class ContentMismatchError(OciError, DigestMismatchError):
    """Bytes whose length or SHA-256 differ from the digest they were fetched or pushed by."""

    grpc_code_name = "DATA_LOSS"


class CredentialsError(OciError, UnauthenticatedError):
    """Credentials could not be read (bad config.json, failing credential helper)."""

    grpc_code_name = "UNAUTHENTICATED"


class RegistryError(OciError):
    """A registry answered with an error, or could not be reached.

    `status` is the HTTP status (None when no response arrived); `codes` are the
    OCI error codes from the response body (e.g. ("BLOB_UNKNOWN",)).
    """

    grpc_code_name = "UNAVAILABLE"

    def __init__(self, message: str, status: Optional[int] = None, codes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status: Optional[int] = status
        self.codes: Tuple[str, ...] = tuple(codes)


class RegistryNotFoundError(RegistryError, BlobNotFoundError):
    """404 for something that must exist (e.g. the repository on push)."""

    grpc_code_name = "NOT_FOUND"


class RegistryUnauthorizedError(RegistryError, UnauthenticatedError):
    """401: no credentials where some are needed, or the credentials were rejected."""

    grpc_code_name = "UNAUTHENTICATED"


class RegistryDeniedError(RegistryError, UnauthenticatedError):
    """403 / DENIED / insufficient_scope: authenticated, but not allowed to do this."""

    grpc_code_name = "PERMISSION_DENIED"


class RegistryUnavailableError(RegistryError, UnavailableError):
    """Unreachable, TLS failure, or still failing (429/5xx) after the retry budget.

    `retry_after` is the registry's Retry-After in seconds, when it sent one.
    """

    grpc_code_name = "UNAVAILABLE"

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        codes: Sequence[str] = (),
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message, status, codes)
        self.retry_after: Optional[float] = retry_after
