"""Errors of loading, importing and exporting cache images.

Every one is a CacheError with a message that says what is wrong and where (the
target's `describe()`, never credentials). Importers turn each of them into one
warning and an empty cache; exporters into a failed ExportTargetReport.
"""

from __future__ import annotations

from oci_cache.errors import CacheError, NotFoundError
from oci_cache.image_format.errors import UnsupportedFormatVersionError


class CacheImageError(CacheError):
    """A cache image could not be used (base of the errors below)."""

    grpc_code_name = "UNAVAILABLE"


class CacheImageNotFoundError(CacheImageError, NotFoundError):
    """Nothing is stored at the reference (no manifest for the tag)."""

    grpc_code_name = "NOT_FOUND"


class NotACacheImageError(CacheImageError):
    """The reference holds something that is not a pants-oci-cache image (a container
    image, another tool's artifact). Exports refuse to overwrite it."""

    grpc_code_name = "FAILED_PRECONDITION"


class CorruptCacheImageError(CacheImageError):
    """A pants-oci-cache image whose manifest, config, index or layers are missing,
    malformed or inconsistent."""

    grpc_code_name = "DATA_LOSS"


class UnverifiedImagePartError(CorruptCacheImageError):
    """The config or index layer kept arriving with bytes that do not hash to its digest:
    damaged on the way or in the registry's storage — which, the reader cannot tell.
    Exports do not replace an image they could not read (its entries would be lost)."""


class NewerFormatError(CacheImageError):
    """The image was written by a newer major format version than this reader knows."""

    grpc_code_name = "FAILED_PRECONDITION"


class ExportError(CacheImageError):
    """An export to one cache-to entry failed (the message says at which step)."""


__all__ = [
    "CacheImageError",
    "CacheImageNotFoundError",
    "CorruptCacheImageError",
    "ExportError",
    "NewerFormatError",
    "NotACacheImageError",
    "UnsupportedFormatVersionError",
    "UnverifiedImagePartError",
]
