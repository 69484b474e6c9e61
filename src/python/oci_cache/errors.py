"""Errors with a meaning that clients can see (each maps to one gRPC status code)."""

from __future__ import annotations


class CacheError(Exception):
    """Base of the errors that the gRPC layer turns into a status code."""

    grpc_code_name = "INTERNAL"


class NotFoundError(CacheError):
    grpc_code_name = "NOT_FOUND"


class InvalidArgumentError(CacheError):
    grpc_code_name = "INVALID_ARGUMENT"


class OutOfRangeError(CacheError):
    grpc_code_name = "OUT_OF_RANGE"


class ResourceExhaustedError(CacheError):
    grpc_code_name = "RESOURCE_EXHAUSTED"


class FailedPreconditionError(CacheError):
    grpc_code_name = "FAILED_PRECONDITION"


class UnauthenticatedError(CacheError):
    grpc_code_name = "UNAUTHENTICATED"


class UnavailableError(CacheError):
    grpc_code_name = "UNAVAILABLE"


class DigestMismatchError(InvalidArgumentError):
    """Bytes whose digest differs from the one they were claimed to have."""
