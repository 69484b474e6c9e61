"""Content digests (SHA-256 + size), the address of every blob and action."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from oci_cache.errors import InvalidArgumentError

SHA256_HEX_LENGTH = 64
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, order=True)
class Digest:
    """A SHA-256 digest in REAPI form: lowercase hex hash and size in bytes."""

    hash: str
    size_bytes: int

    @classmethod
    def of(cls, data: bytes) -> "Digest":
        return cls(hashlib.sha256(data).hexdigest(), len(data))

    @classmethod
    def parse(cls, hash_hex: str, size_bytes: int) -> "Digest":
        """Validates a digest received from a client; raises InvalidArgumentError."""
        if not isinstance(hash_hex, str) or not is_sha256_hex(hash_hex):
            raise InvalidArgumentError(f"invalid SHA-256 hash {hash_hex[:80]!r}: want 64 lowercase hex digits")
        if not isinstance(size_bytes, int) or size_bytes < 0:
            raise InvalidArgumentError(f"invalid digest size {size_bytes!r}: want a non-negative integer")
        return cls(hash_hex, size_bytes)

    @classmethod
    def from_proto(cls, message: Any) -> "Digest":
        """From a build.bazel.remote.execution.v2.Digest message, validated."""
        return cls.parse(message.hash, message.size_bytes)

    def to_proto(self) -> Any:
        from oci_cache.reapi import remote_execution_pb2

        return remote_execution_pb2.Digest(hash=self.hash, size_bytes=self.size_bytes)

    @property
    def oci(self) -> str:
        """The OCI form, "sha256:<hex>"."""
        return f"sha256:{self.hash}"

    def __str__(self) -> str:
        return f"{self.hash}/{self.size_bytes}"


def is_sha256_hex(text: str) -> bool:
    """Whether `text` is a SHA-256 in the form digests use: 64 lowercase hex digits."""
    return _SHA256_HEX.fullmatch(text) is not None


EMPTY_DIGEST = Digest.of(b"")
