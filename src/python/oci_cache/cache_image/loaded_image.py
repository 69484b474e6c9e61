"""`load_cache_image`: read a cache image's manifest, config and entry index.

    image = load_cache_image(target)          # the image at the target's tag
    entry = image.index.find_blob(digest)      # where a blob is, or None
    layer = image.layers[entry.layer]          # its layer's descriptor

Only the small parts are read — the manifest, the config (a few hundred bytes) and
the index layer (about 80 bytes per blob, zstd-compressed) — never a data layer.
Every part is digest-checked by the target before it is parsed, and the parts
must agree with each other (docs/format.md): the config names the manifest's last
layer as the index, and the index lists exactly the manifest's data layers.

Errors (all CacheImageError, see errors.py):
- CacheImageNotFoundError: no manifest at the reference;
- NotACacheImageError: the manifest is not a pants-oci-cache image manifest;
- NewerFormatError: a newer major format version ("upgrade pants-oci-cache");
- CorruptCacheImageError: our manifest, but a part is missing, malformed or
  inconsistent;
- transport failures (unreachable registry, denied, ...) stay oci_cache.oci errors.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from oci_cache.digests import Digest
from oci_cache.image_format import (
    CacheConfig,
    CacheImage,
    Compression,
    Descriptor,
    EntryIndex,
    ImageFormatError,
    ParsedManifest,
    UnsupportedFormatVersionError,
    decode_index,
    layer_compression,
    parse_config,
    parse_manifest,
    read_index_layer,
    resolve_image,
)
from oci_cache.image_format.manifest import CONFIG_MEDIA_TYPE, MAX_CONFIG_SIZE
from oci_cache.cache_image.errors import (
    CacheImageNotFoundError,
    CorruptCacheImageError,
    NewerFormatError,
    NotACacheImageError,
    UnverifiedImagePartError,
)
from oci_cache.oci.content import BlobId, verify_bytes
from oci_cache.oci.errors import BlobNotFoundError, ContentMismatchError
from oci_cache.oci.target import ImageTarget, Manifest

logger = logging.getLogger(__name__)

PART_READ_ATTEMPTS = 3
"""Reads of the config or index layer whose bytes do not match their digest before giving up."""
MAX_INDEX_LAYER_BYTES = 1 << 30
"""Index layers larger than this are refused (1,000,000 entries take about 60 MB)."""


def manifest_reference(target: ImageTarget) -> str:
    """What to ask `target` for: the digest of a `repo@sha256:…` reference, else the tag."""
    reference = getattr(target, "reference", None)
    digest = getattr(reference, "digest", None)
    return digest if isinstance(digest, str) and digest else target.tag


@dataclass(frozen=True)
class LoadedImage:
    """A cache image's documents and decoded entry index (no layer bytes)."""

    location: str
    """The target's `describe()` (no credentials)."""
    reference: str
    """The tag (or digest) the manifest was read from."""
    manifest: Manifest
    """Exactly as stored: media type, bytes, digest."""
    parsed: ParsedManifest
    config: CacheConfig
    image: CacheImage
    """Config descriptor, data layers (in order) and index layer descriptor."""
    index: EntryIndex

    @property
    def digest(self) -> str:
        """The manifest digest ("sha256:…")."""
        return self.manifest.digest

    @property
    def layers(self) -> Tuple[Descriptor, ...]:
        """The data layers, in manifest order; index entries name them by position."""
        return self.image.layers

    def layer_compression(self, layer: int) -> Compression:
        return layer_compression(self.image.layers[layer])

    @property
    def bytes_read(self) -> int:
        """What loading cost: manifest + config + index layer."""
        return len(self.manifest.data) + self.image.config.size + self.image.index.size

    @property
    def total_bytes(self) -> int:
        """The image's size in the registry: manifest, config, every layer."""
        return len(self.manifest.data) + self.image.config.size + sum(d.size for d in self.image.all_layers)

    @property
    def created_unix(self) -> Optional[int]:
        """The config's `created` as Unix seconds (None if it does not parse)."""
        try:
            return calendar.timegm(time.strptime(self.config.created, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return None

    def summary(self) -> Dict[str, Any]:
        """A JSON-ready description (what `oci-cache inspect --json` prints)."""
        index = self.index
        layer_blobs: List[int] = [0] * len(self.layers)
        layer_live: List[int] = [0] * len(self.layers)
        for entry in index.iter_blobs():
            layer_blobs[entry.layer] += 1
            layer_live[entry.layer] += entry.compressed_length
        failed = sum(1 for action in index.iter_actions() if action.exit_code != 0)
        return {
            "location": self.location,
            "reference": self.reference,
            "manifestDigest": self.digest,
            "manifestMediaType": self.manifest.media_type,
            "ociMediatypes": self.parsed.oci_mediatypes,
            "imageManifest": self.parsed.image_manifest,
            "formatVersion": f"{self.config.format_version[0]}.{self.config.format_version[1]}",
            "created": self.config.created,
            "mode": self.config.mode,
            "compression": self.config.compression.value,
            "blobs": index.blob_count,
            "actions": index.action_count,
            "failedActions": failed,
            "blobBytes": index.total_blob_bytes(),
            "imageBytes": self.total_bytes,
            "indexBytes": self.image.index.size,
            "layers": [
                {
                    "digest": descriptor.digest,
                    "size": descriptor.size,
                    "mediaType": descriptor.media_type,
                    "compression": layer_compression(descriptor).value,
                    "blobs": layer_blobs[number],
                    "liveBytes": layer_live[number],
                }
                for number, descriptor in enumerate(self.layers)
            ],
        }


def load_cache_image(
    target: ImageTarget,
    reference: Optional[str] = None,
    *,
    manifest: Optional[Manifest] = None,
    max_index_bytes: int = MAX_INDEX_LAYER_BYTES,
) -> LoadedImage:
    """Reads and checks the cache image at `reference` (default: the target's tag,
    or its digest for a `repo@sha256:…` registry reference). Pass `manifest` when
    it was already fetched. Raises the errors listed in the module docstring."""
    reference = reference or manifest_reference(target)
    where = f"{target.describe()}"
    if manifest is None:
        manifest = target.get_manifest(reference)
        if manifest is None:
            raise CacheImageNotFoundError(f"{where}: no cache image at {reference}")
    parsed = _parse_manifest(manifest, where)
    # The index layer is the manifest's last layer (docs/format.md §1): read it while the
    # config is read (one round trip instead of two across a WAN); it is used only if the
    # config then names that very layer as the index, and on any failure it is read again.
    early = _EarlyRead(target, parsed.layers[-1], where) if parsed.layers and parsed.layers[-1].size <= max_index_bytes else None
    config = _read_config(target, parsed.config, where)
    try:
        image = resolve_image(parsed, config)
    except ImageFormatError as error:
        raise CorruptCacheImageError(f"{where}: inconsistent cache image: {error}") from None
    index = _read_index(target, image, where, max_index_bytes, early)
    return LoadedImage(where, reference, manifest, parsed, config, image, index)


class _EarlyRead:
    """`_read_part` of a descriptor in a background thread."""

    def __init__(self, target: ImageTarget, descriptor: Descriptor, where: str) -> None:
        self.descriptor = descriptor
        self._data: Optional[bytes] = None
        self._thread = threading.Thread(target=self._run, args=(target, where), name="index-read", daemon=True)
        self._thread.start()

    def _run(self, target: ImageTarget, where: str) -> None:
        try:
            self._data = _read_part(target, self.descriptor, where, "index layer")
        except Exception:  # noqa: BLE001 - the sequential read reports the failure
            self._data = None

    def result(self, descriptor: Descriptor) -> Optional[bytes]:
        """The bytes, when this read was of `descriptor` and succeeded; else None."""
        if descriptor != self.descriptor:
            return None
        self._thread.join()
        return self._data


def _parse_manifest(manifest: Manifest, where: str) -> ParsedManifest:
    try:
        return parse_manifest(manifest.data, manifest.media_type)
    except UnsupportedFormatVersionError as error:
        raise NewerFormatError(f"{where}: {error}") from None
    except ImageFormatError as error:
        raise NotACacheImageError(f"{where}: not a pants-oci-cache image: {error}") from None


def _read_config(target: ImageTarget, descriptor: Descriptor, where: str) -> CacheConfig:
    if descriptor.media_type != CONFIG_MEDIA_TYPE:
        raise NotACacheImageError(
            f"{where}: not a pants-oci-cache image (config media type {descriptor.media_type[:80]!r})"
        )
    if descriptor.size > MAX_CONFIG_SIZE:
        raise CorruptCacheImageError(f"{where}: the config of {descriptor.size} bytes exceeds {MAX_CONFIG_SIZE}")
    data = _read_part(target, descriptor, where, "config")
    try:
        return parse_config(data)
    except UnsupportedFormatVersionError as error:
        raise NewerFormatError(f"{where}: {error}") from None
    except ImageFormatError as error:
        raise CorruptCacheImageError(f"{where}: {error}") from None


def _read_index(
    target: ImageTarget, image: CacheImage, where: str, max_index_bytes: int, early: "Optional[_EarlyRead]" = None
) -> EntryIndex:
    descriptor = image.index
    if descriptor.size > max_index_bytes:
        raise CorruptCacheImageError(f"{where}: the index layer of {descriptor.size} bytes exceeds {max_index_bytes}")
    layer = early.result(descriptor) if early is not None else None
    if layer is None:
        layer = _read_part(target, descriptor, where, "index layer")
    try:
        index = decode_index(read_index_layer(layer))
    except UnsupportedFormatVersionError as error:
        raise NewerFormatError(f"{where}: {error}") from None
    except ImageFormatError as error:
        raise CorruptCacheImageError(f"{where}: {error}") from None
    expected = tuple(Digest(d.digest[len("sha256:") :], d.size) for d in image.layers)
    if index.layers != expected:
        raise CorruptCacheImageError(f"{where}: the entry index lists other layers than the manifest")
    return index


def _read_part(target: ImageTarget, descriptor: Descriptor, where: str, what: str) -> bytes:
    """The part's bytes, digest-checked. At most one byte more than its descriptor's
    size is read (a Range read): a blob larger than its descriptor says is refused
    without holding the rest of it."""
    for attempt in range(1, PART_READ_ATTEMPTS + 1):
        try:
            data = target.read_blob(descriptor.as_digest, 0, descriptor.size + 1)
            if len(data) > descriptor.size:
                raise CorruptCacheImageError(
                    f"{where}: the {what} {descriptor.digest} is larger than the {descriptor.size} bytes its descriptor says"
                )
            verify_bytes(BlobId(descriptor.digest, descriptor.size), data, f"{what} {descriptor.digest}")
            return data
        except BlobNotFoundError:
            raise CorruptCacheImageError(f"{where}: the {what} {descriptor.digest} is missing") from None
        except ContentMismatchError as error:
            if attempt < PART_READ_ATTEMPTS:  # bytes damaged on the way: read it again
                logger.info("%s: the %s did not match its digest (%s); reading it again", where, what, error)
                continue
            raise UnverifiedImagePartError(f"{where}: the {what} is corrupt: {error}") from None
    raise AssertionError("unreachable")


__all__ = ["LoadedImage", "MAX_INDEX_LAYER_BYTES", "load_cache_image", "manifest_reference"]
