"""Errors raised while reading or writing cache-image documents, layers and indexes."""

from __future__ import annotations

from oci_cache.errors import InvalidArgumentError


class ImageFormatError(InvalidArgumentError):
    """Bytes that are not a valid cache image part: a bad manifest, config, index,
    tar header, compressed range or layer. Readers treat the image (or the one blob)
    as a miss."""


class UnsupportedFormatVersionError(ImageFormatError):
    """A cache image (or index) written by a newer, incompatible major version of
    the format. Readers say so clearly and treat the image as a miss."""
