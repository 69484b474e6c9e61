"""`ImageTarget`: one image repository, wherever it lives.

Two implementations share this interface: `RegistryTarget` (a repository in a
registry, over the OCI distribution API) and `OciLayoutTarget` (an OCI
image-layout directory). Code above this layer — the cache-image format, import
and export — talks only to `ImageTarget`.

Contract, for every implementation:
- Digests are "sha256:<hex>" strings or `oci_cache.digests.Digest` values (the
  latter also pin the size). Anything else raises InvalidReferenceError.
- Every blob or manifest returned whole has been verified (length when known, and
  SHA-256) before it is returned; a mismatch raises ContentMismatchError and the
  bytes are not returned. Range reads (offset/length) are NOT verified: the
  caller checks what it assembles (e.g. against a chunk digest in its index).
- Media types are stored and returned byte-exact; manifest bytes are never
  re-serialised.
- Missing blobs: `blob_exists` → None; `read_blob`/`open_blob_stream` raise
  BlobNotFoundError. Missing manifests: `get_manifest`/`head_manifest` → None.
- Errors are `oci_cache.oci.errors.OciError` subclasses; none carries credentials.
- Implementations are thread-safe: many transfers may run at once on one target.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Protocol, Union

from oci_cache.oci.content import BlobSource, BlobStream, DigestLike
from oci_cache.oci.reference import Reference


class Manifest(NamedTuple):
    """A manifest exactly as stored: media type, raw bytes, and their digest."""

    media_type: str
    data: bytes
    digest: str


class PushOutcome(enum.Enum):
    """What `push_blob` had to do."""

    PRESENT = "present"  # the target already had it (HEAD)
    MOUNTED = "mounted"  # cross-repository mount within the registry
    UPLOADED = "uploaded"  # bytes sent


@dataclass(frozen=True)
class RegistryLocation:
    """A repository in a registry (and the reference the target was opened with)."""

    reference: Reference


@dataclass(frozen=True)
class LayoutLocation:
    """An OCI image-layout directory."""

    path: Path


TargetLocation = Union[RegistryLocation, LayoutLocation]


class ImageTarget(Protocol):
    @property
    def location(self) -> TargetLocation:
        """What the target is: a registry repository or a layout directory."""
        ...

    @property
    def tag(self) -> str:
        """The tag this target was opened with ("latest" when none was given)."""
        ...

    def describe(self) -> str:
        """Human-readable location, e.g. "registry ghcr.io/acme/mono:cache (https)"; never credentials."""
        ...

    # Blobs

    def blob_exists(self, digest: DigestLike) -> Optional[int]:
        """The blob's size if the target holds it, else None."""
        ...

    def read_blob(self, digest: DigestLike, offset: int = 0, length: Optional[int] = None) -> bytes:
        """The whole blob (verified) or, with offset/length, that byte range (unverified).

        A range reaching past the end is cut at the end; an offset at or past the end
        of a non-empty blob raises BlobRangeError.
        """
        ...

    def open_blob_stream(self, digest: DigestLike, offset: int = 0, length: Optional[int] = None) -> BlobStream:
        """Like read_blob, as a stream; a whole-blob stream verifies at EOF."""
        ...

    def push_blob(self, digest: DigestLike, source: BlobSource, mount_from: Optional[str] = None) -> PushOutcome:
        """Stores a blob unless present. `mount_from` names another repository in the
        same registry that may hold it (cross-repository mount; ignored by layouts).
        The content is verified (by the registry, or locally) before it is stored."""
        ...

    def mount_blob(self, digest: DigestLike, from_repository: str) -> bool:
        """Makes a blob held by another repository of the same registry available here
        without sending bytes. False when the registry declines (the caller then pushes)."""
        ...

    # Manifests

    def get_manifest(self, reference: str) -> Optional[Manifest]:
        """The manifest at a tag or digest, verified; None when absent."""
        ...

    def head_manifest(self, reference: str) -> Optional[str]:
        """The digest of the manifest at a tag (or digest), None when absent.
        Cheap: on registries a HEAD, which Docker Hub does not count as a pull."""
        ...

    def put_manifest(self, reference: str, media_type: str, data: bytes) -> str:
        """Stores manifest bytes under a tag (or by digest only); returns their digest.
        Every blob the manifest references must already be present."""
        ...

    def delete_manifest(self, digest: str) -> bool:
        """Best effort: True if deleted, False if absent or the target refuses."""
        ...

    def connect(self) -> None:
        """Does now what the first request would do anyway, so that a later one does not
        wait for it: a registry opens a connection and learns its scheme and auth
        challenge; a layout does nothing. Raises as a request would."""
        ...

    def close(self) -> None:
        """Releases connections or locks; the target is unusable afterwards."""
        ...
