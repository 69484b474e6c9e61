"""ByteStream resource names of the REAPI CAS, parsed and validated.

Read:  `{instance}/blobs/{hash}/{size}`
       `{instance}/compressed-blobs/{compressor}/{hash}/{size}`
Write: `{instance}/uploads/{uuid}/blobs/{hash}/{size}{/optional_metadata}`
       `{instance}/uploads/{uuid}/compressed-blobs/{compressor}/{hash}/{size}{/optional_metadata}`

The instance name may be empty (then the name starts with the keyword) or have any
number of non-empty segments, none of which may be a reserved keyword. A
`digest_function/` segment may precede the hash; only `sha256` is accepted (REAPI
says SHA-256 names omit it, but accepting it costs nothing). Every malformed name
raises InvalidArgumentError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from oci_cache.digests import Digest
from oci_cache.errors import InvalidArgumentError

RESERVED_SEGMENTS = frozenset(
    {"blobs", "uploads", "actions", "actionResults", "operations", "capabilities", "compressed-blobs"}
)

# Compressors the server speaks in `compressed-blobs/{compressor}/...` names.
SUPPORTED_COMPRESSORS = frozenset({"zstd"})
# Known lowercase names of REAPI Compressor values, so that a name using one we do
# not support gets a precise message.
_KNOWN_COMPRESSORS = frozenset({"identity", "zstd", "deflate", "brotli"})
# Lowercase names of DigestFunction values that may appear as a segment before the hash.
_KNOWN_DIGEST_FUNCTIONS = frozenset(
    {"sha256", "sha1", "md5", "vso", "sha384", "sha512", "murmur3", "sha256tree", "blake3", "gitsha1"}
)
_MAX_SIZE = (1 << 63) - 1
_MAX_NAME_LENGTH = 4096


@dataclass(frozen=True)
class BlobResource:
    """A parsed resource name. `compressor` is None for plain `blobs/`, else e.g. "zstd"."""

    instance_name: str
    digest: Digest
    compressor: Optional[str] = None
    upload_id: Optional[str] = None

    @property
    def is_compressed(self) -> bool:
        return self.compressor is not None

    @property
    def upload_key(self) -> str:
        """Identifies one upload (same instance, uuid, blob and encoding), ignoring metadata."""
        kind = f"compressed-blobs/{self.compressor}" if self.compressor else "blobs"
        return f"{self.instance_name}\x00{self.upload_id}\x00{kind}\x00{self.digest}"


def parse_read_resource_name(name: str) -> BlobResource:
    """`{instance}/blobs/{hash}/{size}` or `{instance}/compressed-blobs/{compressor}/{hash}/{size}`."""
    segments = _split(name)
    instance_segments, keyword_index = _instance_prefix(segments, name)
    keyword = segments[keyword_index]
    if keyword not in ("blobs", "compressed-blobs"):
        raise InvalidArgumentError(
            f"invalid read resource name {_quote(name)}: want "
            "'{instance}/blobs/{hash}/{size}' or '{instance}/compressed-blobs/zstd/{hash}/{size}'"
        )
    compressor, digest, rest = _blob_part(segments, keyword_index, name)
    if rest:
        raise InvalidArgumentError(f"invalid read resource name {_quote(name)}: unexpected segments after the size")
    return BlobResource("/".join(instance_segments), digest, compressor)


def parse_write_resource_name(name: str) -> BlobResource:
    """`{instance}/uploads/{uuid}/blobs/{hash}/{size}[/metadata...]` or the compressed-blobs form."""
    segments = _split(name)
    instance_segments, keyword_index = _instance_prefix(segments, name)
    if segments[keyword_index] != "uploads" or len(segments) < keyword_index + 3:
        raise InvalidArgumentError(
            f"invalid write resource name {_quote(name)}: want "
            "'{instance}/uploads/{uuid}/blobs/{hash}/{size}' or "
            "'{instance}/uploads/{uuid}/compressed-blobs/zstd/{hash}/{size}'"
        )
    upload_id = segments[keyword_index + 1]
    if not upload_id or upload_id in RESERVED_SEGMENTS:
        raise InvalidArgumentError(f"invalid write resource name {_quote(name)}: missing upload id")
    blob_keyword_index = keyword_index + 2
    if segments[blob_keyword_index] not in ("blobs", "compressed-blobs"):
        raise InvalidArgumentError(
            f"invalid write resource name {_quote(name)}: want 'blobs' or 'compressed-blobs' after the upload id"
        )
    compressor, digest, _optional_metadata = _blob_part(segments, blob_keyword_index, name)
    return BlobResource("/".join(instance_segments), digest, compressor, upload_id)


def _split(name: str) -> List[str]:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("missing resource name")
    if len(name) > _MAX_NAME_LENGTH:
        raise InvalidArgumentError(f"resource name too long ({len(name)} characters)")
    return name.split("/")


def _instance_prefix(segments: List[str], name: str) -> Tuple[List[str], int]:
    """The instance name's segments and the index of the first reserved keyword."""
    for index, segment in enumerate(segments):
        if segment in RESERVED_SEGMENTS:
            instance_segments = segments[:index]
            if any(not s for s in instance_segments):
                raise InvalidArgumentError(f"invalid resource name {_quote(name)}: empty instance name segment")
            return instance_segments, index
    raise InvalidArgumentError(f"invalid resource name {_quote(name)}: no 'blobs', 'compressed-blobs' or 'uploads'")


def _blob_part(segments: List[str], keyword_index: int, name: str) -> Tuple[Optional[str], Digest, List[str]]:
    """Parses what follows `blobs` or `compressed-blobs`: (compressor, digest, trailing segments)."""
    index = keyword_index + 1
    compressor: Optional[str] = None
    if segments[keyword_index] == "compressed-blobs":
        if index >= len(segments):
            raise InvalidArgumentError(f"invalid resource name {_quote(name)}: missing compressor")
        compressor = segments[index]
        if compressor not in SUPPORTED_COMPRESSORS:
            if compressor in _KNOWN_COMPRESSORS:
                raise InvalidArgumentError(
                    f"unsupported compressor {compressor!r} in {_quote(name)}: supported: zstd"
                )
            raise InvalidArgumentError(f"invalid resource name {_quote(name)}: unknown compressor {compressor[:40]!r}")
        index += 1
    if index < len(segments) and segments[index] in _KNOWN_DIGEST_FUNCTIONS:
        if segments[index] != "sha256":
            raise InvalidArgumentError(
                f"unsupported digest function {segments[index]!r} in {_quote(name)}: supported: sha256"
            )
        index += 1
    if index + 2 > len(segments):
        raise InvalidArgumentError(f"invalid resource name {_quote(name)}: missing '{{hash}}/{{size}}'")
    hash_hex, size_text = segments[index], segments[index + 1]
    digest = Digest.parse(hash_hex, _parse_size(size_text, name))
    return compressor, digest, segments[index + 2 :]


def _parse_size(text: str, name: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 19:
        raise InvalidArgumentError(f"invalid resource name {_quote(name)}: size {text[:40]!r} is not a number")
    size = int(text)
    if size > _MAX_SIZE:
        raise InvalidArgumentError(f"invalid resource name {_quote(name)}: size {text!r} out of range")
    return size


def _quote(name: str) -> str:
    return repr(name if len(name) <= 200 else name[:200] + "...")
