"""Hostile cache images, assembled part by part so that any part can lie.

A HostileImage starts as a valid image of some synthetic actions (tests/
cache_image_builder.py's `synthetic_actions`): one data layer in which every blob is
its own compressed unit, the entry index, the index layer, the config and the
manifest. Knobs replace one blob's unit with other bytes (a bomb, a symlink entry,
...), change index entries, and rewrite the index blob, the index layer, the config,
the descriptors or the manifest before the image is pushed to an ImageTarget
(registry or OCI layout). Nothing here goes through the exporter: the point is to
write what the exporter never would.

    image = HostileImage(synthetic_actions(4, seed=7), Compression.ZSTD)
    image.replace_unit(victim_digest, zstd_bomb_after(entry_bytes(victim, data)))
    image.push(target, "cache")
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import zstandard

from cache_image_builder import SyntheticAction
from oci_cache.digests import Digest
from oci_cache.image_format import tar_headers
from oci_cache.image_format.compression import Compression, unit_compressor_factory
from oci_cache.image_format.entry_index import ActionEntry, BlobEntry, encode_index
from oci_cache.image_format.manifest import (
    UNCOMPRESSED_DIGEST_ANNOTATION,
    CacheConfig,
    CacheImage,
    Descriptor,
    build_index_layer,
    build_manifest,
    format_timestamp,
    layer_media_type,
)
from oci_cache.oci.target import ImageTarget

BytesHook = Callable[[bytes], bytes]
DescriptorHook = Callable[[Descriptor], Descriptor]
ConfigHook = Callable[[Dict[str, Any]], None]


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compress_unit(data: bytes, compression: Compression) -> bytes:
    """`data` as ONE unit (gzip member / zstd frame), as the layer writer makes them."""
    if compression is Compression.UNCOMPRESSED:
        return data
    return unit_compressor_factory(compression, None)()(data)


def blob_entry_bytes(digest: Digest, data: bytes) -> bytes:
    """The tar entry the writer produces for a blob: header, payload, padding."""
    header = tar_headers.encode_file_header(tar_headers.blob_entry_name(digest.hash), len(data))
    return header + data + bytes(tar_headers.padding_length(len(data)))


def foreign_tar_entry(name: str, data: bytes, **fields: Any) -> bytes:
    """A tar entry as any tar tool writes it (tarfile, ustar), with `fields` set on the
    TarInfo (type=tarfile.SYMTYPE, linkname=..., ...)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(tar_headers.padding_length(len(data)))


def zeros_bomb(compression: Compression, inflated_bytes: int) -> bytes:
    """Compressed units that inflate to `inflated_bytes` zero bytes (a multiple of
    64 MiB), built from one 64 MiB unit repeated: cheap to make, huge to inflate."""
    unit_bytes = 64 << 20
    if inflated_bytes % unit_bytes:
        raise ValueError("inflated_bytes must be a multiple of 64 MiB")
    unit = compress_unit(bytes(unit_bytes), compression)
    return unit * (inflated_bytes // unit_bytes)


@dataclass
class PushedImage:
    manifest_digest: str
    manifest: bytes
    parts: Dict[str, bytes]
    """Every blob pushed (config, layers), by digest."""
    index_layer_digest: str
    config_digest: str
    data_layer_digest: str


@dataclass
class HostileImage:
    actions: List[SyntheticAction]
    compression: Compression = Compression.ZSTD
    units: Dict[Digest, bytes] = field(default_factory=dict)
    """Replacement bytes for a blob's compressed unit (its whole range)."""
    entry_changes: Dict[Digest, Dict[str, Any]] = field(default_factory=dict)
    """BlobEntry fields to change in the index (digest, compressed_length, ...)."""
    extra_actions: List[ActionEntry] = field(default_factory=list)
    index_blob_hook: Optional[BytesHook] = None
    index_layer_hook: Optional[BytesHook] = None
    index_descriptor_hook: Optional[DescriptorHook] = None
    layer_descriptor_hook: Optional[DescriptorHook] = None
    config_hook: Optional[ConfigHook] = None
    config_bytes_hook: Optional[BytesHook] = None
    config_descriptor_hook: Optional[DescriptorHook] = None
    manifest_hook: Optional[BytesHook] = None
    manifest_media_type: Optional[str] = None

    # ---- what the image holds -----------------------------------------------------------

    def blobs(self) -> Dict[Digest, bytes]:
        found: Dict[Digest, bytes] = {}
        for action in self.actions:
            found[action.result_digest] = action.result
            for digest, data in action.outputs:
                found[digest] = data
        return found

    def replace_unit(self, digest: Digest, unit: bytes) -> None:
        self.units[digest] = unit

    # ---- assembling -----------------------------------------------------------------------

    def _data_layer(self) -> Tuple[bytes, List[BlobEntry], str]:
        now = int(time.time())
        units: List[bytes] = []
        entries: List[BlobEntry] = []
        offset = 0
        tar_offset = 0
        plain = hashlib.sha256()
        for digest, data in self.blobs().items():
            raw = blob_entry_bytes(digest, data)
            plain.update(raw)
            unit = self.units.get(digest)
            if unit is None:
                unit = compress_unit(raw, self.compression)
            entry = BlobEntry(digest, 0, offset, len(unit), tar_offset, True, now)
            changes = self.entry_changes.get(digest)
            if changes:
                entry = entry._replace(**changes)
            entries.append(entry)
            units.append(unit)
            offset += len(unit)
            tar_offset += len(raw)
        end = tar_headers.END_OF_ARCHIVE
        plain.update(end)
        units.append(compress_unit(end, self.compression))
        return b"".join(units), entries, "sha256:" + plain.hexdigest()

    def push(self, target: ImageTarget, tag: str) -> PushedImage:
        layer, entries, diff_id = self._data_layer()
        layer_descriptor = Descriptor(
            layer_media_type(self.compression), sha256_of(layer), len(layer), {UNCOMPRESSED_DIGEST_ANNOTATION: diff_id}
        )
        if self.layer_descriptor_hook is not None:
            layer_descriptor = self.layer_descriptor_hook(layer_descriptor)
        now = int(time.time())
        action_entries = [
            ActionEntry(a.action, a.result_digest, a.exit_code, now, now, a.exit_code == 0) for a in self.actions
        ] + list(self.extra_actions)
        index_blob = encode_index([layer_descriptor.as_digest], entries, action_entries)
        if self.index_blob_hook is not None:
            index_blob = self.index_blob_hook(index_blob)
        index_layer, index_descriptor = build_index_layer(index_blob)
        if self.index_layer_hook is not None:
            index_layer = self.index_layer_hook(index_layer)
            index_descriptor = replace(index_descriptor, digest=sha256_of(index_layer), size=len(index_layer))
        if self.index_descriptor_hook is not None:
            index_descriptor = self.index_descriptor_hook(index_descriptor)
        config = CacheConfig(
            created=format_timestamp(now),
            mode="max",
            compression=self.compression,
            index=index_descriptor,
            layer_count=1,
            blob_count=len(entries),
            action_count=len(action_entries),
            blob_bytes=sum(len(d) for d in self.blobs().values()),
        )
        config_bytes = config.to_bytes()
        if self.config_hook is not None:
            document = json.loads(config_bytes)
            self.config_hook(document)
            config_bytes = json.dumps(document, separators=(",", ":")).encode()
        if self.config_bytes_hook is not None:
            config_bytes = self.config_bytes_hook(config_bytes)
        config_descriptor = Descriptor.of(config.descriptor().media_type, config_bytes)
        if self.config_descriptor_hook is not None:
            config_descriptor = self.config_descriptor_hook(config_descriptor)
        manifest, media_type = build_manifest(CacheImage(config_descriptor, (layer_descriptor,), index_descriptor))
        if self.manifest_hook is not None:
            manifest = self.manifest_hook(manifest)
        parts = {sha256_of(layer): layer, sha256_of(index_layer): index_layer, sha256_of(config_bytes): config_bytes}
        for digest, data in parts.items():
            target.push_blob(digest, data)
        manifest_digest = target.put_manifest(tag, self.manifest_media_type or media_type, manifest)
        return PushedImage(
            manifest_digest, manifest, parts, sha256_of(index_layer), sha256_of(config_bytes), sha256_of(layer)
        )


def index_bomb(index_blob: bytes) -> bytes:
    """The index blob with its zstd body replaced by a frame that DECLARES the header's
    body size but holds 1 GiB of zeros (a bomb behind an honest-looking header)."""
    from oci_cache.image_format import entry_index

    fields = list(entry_index._HEADER.unpack_from(index_blob))
    table_end = fields[3] + fields[4] * entry_index._SECTION.size
    big = zstandard.ZstdCompressor(write_content_size=False, write_checksum=False).compress(bytes(1 << 30))
    window = big[5]
    declared = fields[7]
    frame = big[:4] + bytes([0x80, window]) + declared.to_bytes(4, "little") + big[6:]
    fields[6] = len(frame)
    return entry_index._HEADER.pack(*fields) + index_blob[64:table_end] + frame


def index_header(index_blob: bytes, **changes: int) -> bytes:
    """The index blob with header fields changed (names as in entry_index._HEADER)."""
    from oci_cache.image_format import entry_index

    names = [
        "magic",
        "major",
        "minor",
        "header_size",
        "section_count",
        "codec",
        "compressed_size",
        "uncompressed_size",
        "blob_count",
        "action_count",
        "layer_count",
    ]
    fields = list(entry_index._HEADER.unpack_from(index_blob))
    for name, value in changes.items():
        fields[names.index(name)] = value
    return entry_index._HEADER.pack(*fields) + index_blob[64:]


__all__ = [
    "HostileImage",
    "PushedImage",
    "blob_entry_bytes",
    "compress_unit",
    "foreign_tar_entry",
    "index_bomb",
    "index_header",
    "sha256_of",
    "zeros_bomb",
]
