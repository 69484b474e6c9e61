"""The JSON documents of a cache image: manifest (or legacy index) and config.

A cache image is one OCI image manifest (or, with `oci-mediatypes=false`, a Docker
schema 2 manifest) whose config is a small JSON document of ours and whose layers
are, in order, the data layers (tar archives of blobs, see layer_writer) and, last,
the index layer: an uncompressed tar holding the entry index blob. Index entries
name data layers by their position in `layers`.

With `image-manifest=false` the same descriptors go into an OCI image index (or a
Docker manifest list) whose `manifests` are the layers followed by the config, the
shape BuildKit's registry cache used before image manifests; some registries and
tools (skopeo among them) reject it.

Parsing validates every descriptor (media type, `sha256:` digest, size) and the
config's format version: a newer major version raises
UnsupportedFormatVersionError.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from oci_cache.digests import Digest
from oci_cache.image_format import estargz, tar_headers
from oci_cache.image_format.compression import Compression, parse_compression
from oci_cache.image_format.errors import ImageFormatError, UnsupportedFormatVersionError
from oci_cache.image_format.layer_writer import WrittenLayer

FORMAT_NAME = "pants-oci-cache"
FORMAT_MAJOR = 1
FORMAT_MINOR = 1

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)

ARTIFACT_TYPE = "application/vnd.dev.pants-oci-cache.cache.v1"
CONFIG_MEDIA_TYPE = "application/vnd.dev.pants-oci-cache.config.v1+json"

UNCOMPRESSED_DIGEST_ANNOTATION = "containerd.io/uncompressed"
ROLE_ANNOTATION = "dev.pants-oci-cache.role"
ROLE_INDEX = "index"
FORMAT_ANNOTATION = "dev.pants-oci-cache.format"
CREATED_ANNOTATION = "org.opencontainers.image.created"

INDEX_ENTRY_NAME = "pants-oci-cache/index"

MANIFEST_SIZE_LIMIT = 256 << 10
"""What we write stays under this (the registries' limits are 1-4 MiB)."""
RECOMMENDED_MAX_LAYERS = 500
"""Data layers that always fit MANIFEST_SIZE_LIMIT (about 920 do for gzip/zstd, 570
for estargz, whose descriptors carry two more annotations); exports merge layers
beyond this."""
MAX_MANIFEST_READ = 4 << 20
MAX_CONFIG_SIZE = 1 << 20
MAX_LAYERS = 10000

_LAYER_MEDIA_TYPES: Dict[Tuple[bool, Compression], str] = {
    (True, Compression.UNCOMPRESSED): "application/vnd.oci.image.layer.v1.tar",
    (True, Compression.GZIP): "application/vnd.oci.image.layer.v1.tar+gzip",
    (True, Compression.ESTARGZ): "application/vnd.oci.image.layer.v1.tar+gzip",
    (True, Compression.ZSTD): "application/vnd.oci.image.layer.v1.tar+zstd",
    (False, Compression.UNCOMPRESSED): "application/vnd.docker.image.rootfs.diff.tar",
    (False, Compression.GZIP): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    (False, Compression.ESTARGZ): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    (False, Compression.ZSTD): "application/vnd.docker.image.rootfs.diff.tar.zstd",
}
_OCI_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_VERSION = re.compile(r"(\d{1,6})\.(\d{1,6})")


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    """"sha256:<hex>"."""
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def of(cls, media_type: str, data: bytes, annotations: Optional[Mapping[str, str]] = None) -> "Descriptor":
        return cls(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data), dict(annotations or {}))

    @property
    def as_digest(self) -> Digest:
        return Digest(self.digest[len("sha256:") :], self.size)

    def to_json(self) -> Dict[str, Any]:
        document: Dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            document["annotations"] = dict(self.annotations)
        return document

    @classmethod
    def from_json(cls, document: Any, what: str) -> "Descriptor":
        if not isinstance(document, dict):
            raise ImageFormatError(f"{what} is not a JSON object")
        media_type = document.get("mediaType")
        digest = document.get("digest")
        size = document.get("size")
        annotations = document.get("annotations", {})
        if not isinstance(media_type, str) or not media_type or len(media_type) > 255:
            raise ImageFormatError(f"{what} has no valid mediaType")
        if not isinstance(digest, str) or not _OCI_DIGEST.fullmatch(digest):
            raise ImageFormatError(f"{what} has an invalid digest {str(digest)[:80]!r} (want sha256:<64 hex>)")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size >= 1 << 63:
            raise ImageFormatError(f"{what} has an invalid size {size!r}")
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise ImageFormatError(f"{what} has invalid annotations")
        return cls(media_type, digest, size, dict(annotations))


def layer_media_type(compression: Compression, *, oci_mediatypes: bool = True) -> str:
    return _LAYER_MEDIA_TYPES[(oci_mediatypes, compression)]


def layer_descriptor(layer: WrittenLayer, *, oci_mediatypes: bool = True) -> Descriptor:
    """The manifest descriptor of a written data layer, with its annotations."""
    annotations = {UNCOMPRESSED_DIGEST_ANNOTATION: layer.diff_id.oci}
    if layer.compression is Compression.ESTARGZ:
        assert layer.estargz_toc_digest is not None
        annotations[estargz.TOC_DIGEST_ANNOTATION] = layer.estargz_toc_digest
        annotations[estargz.UNCOMPRESSED_SIZE_ANNOTATION] = str(layer.diff_id.size_bytes)
    return Descriptor(
        layer_media_type(layer.compression, oci_mediatypes=oci_mediatypes),
        layer.digest.oci,
        layer.digest.size_bytes,
        annotations,
    )


def layer_compression(descriptor: Descriptor) -> Compression:
    """The compression of a data layer, from its media type and annotations."""
    for (_, compression), media_type in _LAYER_MEDIA_TYPES.items():
        if media_type == descriptor.media_type and compression is not Compression.ESTARGZ:
            if compression is Compression.GZIP and estargz.TOC_DIGEST_ANNOTATION in descriptor.annotations:
                return Compression.ESTARGZ
            return compression
    raise ImageFormatError(f"layer {descriptor.digest} has an unsupported media type {descriptor.media_type!r}")


def with_media_types(descriptor: Descriptor, *, oci_mediatypes: bool) -> Descriptor:
    """The same layer described with OCI or Docker media types (carried-over layers)."""
    compression = layer_compression(descriptor)
    media_type = layer_media_type(compression, oci_mediatypes=oci_mediatypes)
    return Descriptor(media_type, descriptor.digest, descriptor.size, dict(descriptor.annotations))


def build_index_layer(index_blob: bytes, *, oci_mediatypes: bool = True) -> Tuple[bytes, Descriptor]:
    """The index layer (an uncompressed tar holding the index blob) and its descriptor."""
    header = tar_headers.encode_file_header(INDEX_ENTRY_NAME, len(index_blob))
    padding = bytes(tar_headers.padding_length(len(index_blob)))
    layer = header + index_blob + padding + tar_headers.END_OF_ARCHIVE
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    annotations = {UNCOMPRESSED_DIGEST_ANNOTATION: digest, ROLE_ANNOTATION: ROLE_INDEX}
    media_type = layer_media_type(Compression.UNCOMPRESSED, oci_mediatypes=oci_mediatypes)
    return layer, Descriptor(media_type, digest, len(layer), annotations)


def read_index_layer(layer: bytes) -> bytes:
    """The index blob inside an index layer; raises ImageFormatError unless the
    layer is exactly one regular file `pants-oci-cache/index` and the end of archive."""
    stream = io.BytesIO(layer)
    header = tar_headers.read_entry_header(stream, "index layer")
    if header is None or header.name != INDEX_ENTRY_NAME:
        raise ImageFormatError(f"index layer does not hold {INDEX_ENTRY_NAME}")
    expected = header.header_length + header.size + tar_headers.padding_length(header.size) + len(tar_headers.END_OF_ARCHIVE)
    if expected != len(layer):
        raise ImageFormatError(f"index layer is {len(layer)} bytes, its tar header implies {expected}")
    data = stream.read(header.size)
    if stream.read(tar_headers.padding_length(header.size)).strip(b"\x00"):
        raise ImageFormatError("index layer padding is not zeros")
    if stream.read() != tar_headers.END_OF_ARCHIVE:
        raise ImageFormatError("index layer does not end with the end-of-archive blocks")
    return data


def format_timestamp(unix_seconds: float) -> str:
    """RFC 3339 UTC with second precision, e.g. "2024-05-01T12:00:00Z"."""
    moment = datetime.datetime.fromtimestamp(int(unix_seconds), tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CacheConfig:
    """The config blob: what the image is, and where its index is."""

    created: str
    mode: str
    compression: Compression
    index: Descriptor
    layer_count: int
    """Data layers (the index layer not counted)."""
    blob_count: int
    action_count: int
    blob_bytes: int
    format_version: Tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR)

    def to_bytes(self) -> bytes:
        return _dumps(
            {
                "format": FORMAT_NAME,
                "formatVersion": f"{self.format_version[0]}.{self.format_version[1]}",
                "created": self.created,
                "mode": self.mode,
                "compression": self.compression.value,
                "index": self.index.to_json(),
                "counts": {
                    "layers": self.layer_count,
                    "blobs": self.blob_count,
                    "actions": self.action_count,
                    "blobBytes": self.blob_bytes,
                },
            }
        )

    def descriptor(self) -> Descriptor:
        return Descriptor.of(CONFIG_MEDIA_TYPE, self.to_bytes())


def parse_config(data: bytes) -> CacheConfig:
    """Parses and validates a config blob."""
    if len(data) > MAX_CONFIG_SIZE:
        raise ImageFormatError(f"cache image config of {len(data)} bytes exceeds {MAX_CONFIG_SIZE}")
    document = _load_json(data, "cache image config")
    if document.get("format") != FORMAT_NAME:
        raise ImageFormatError(f"not a {FORMAT_NAME} config (format {str(document.get('format'))[:80]!r})")
    major, minor = _parse_version(document.get("formatVersion"))
    if major != FORMAT_MAJOR:
        if major > FORMAT_MAJOR:
            raise UnsupportedFormatVersionError(
                f"the cache image has format version {major}.{minor}, newer than the {FORMAT_MAJOR}.x "
                "this pants-oci-cache reads; upgrade pants-oci-cache to use this cache image"
            )
        raise ImageFormatError(f"unknown cache image format version {major}.{minor}")
    mode = document.get("mode")
    if mode not in ("min", "max"):
        raise ImageFormatError(f"cache image config has an invalid mode {str(mode)[:20]!r}")
    try:
        compression = parse_compression(document.get("compression"))  # type: ignore[arg-type]
    except ValueError as error:
        raise ImageFormatError(f"cache image config: {error}") from None
    created = document.get("created")
    if not isinstance(created, str) or len(created) > 64:
        raise ImageFormatError("cache image config has an invalid created time")
    counts = document.get("counts")
    if not isinstance(counts, dict):
        raise ImageFormatError("cache image config has no counts")
    values = []
    for key in ("layers", "blobs", "actions", "blobBytes"):
        value = counts.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ImageFormatError(f"cache image config has an invalid count {key}={value!r}")
        values.append(value)
    index = Descriptor.from_json(document.get("index"), "cache image config's index descriptor")
    return CacheConfig(created, mode, compression, index, values[0], values[1], values[2], values[3], (major, minor))


def _parse_version(text: Any) -> Tuple[int, int]:
    match = _VERSION.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ImageFormatError(f"cache image config has an invalid formatVersion {str(text)[:20]!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class CacheImage:
    """What a cache manifest points at: config, data layers (in order) and index."""

    config: Descriptor
    layers: Tuple[Descriptor, ...]
    index: Descriptor

    @property
    def all_layers(self) -> Tuple[Descriptor, ...]:
        """The manifest's `layers`: data layers, then the index layer."""
        return self.layers + (self.index,)


def build_manifest(
    image: CacheImage,
    *,
    created: Optional[str] = None,
    oci_mediatypes: bool = True,
    image_manifest: bool = True,
) -> Tuple[bytes, str]:
    """The manifest bytes and media type. Raises ImageFormatError if they exceed
    MANIFEST_SIZE_LIMIT (the caller must then merge layers)."""
    layers = [descriptor.to_json() for descriptor in image.all_layers]
    annotations = {FORMAT_ANNOTATION: f"{FORMAT_MAJOR}.{FORMAT_MINOR}"}
    if created is not None:
        annotations[CREATED_ANNOTATION] = created
    document: Dict[str, Any] = {"schemaVersion": 2}
    if image_manifest:
        media_type = OCI_MANIFEST if oci_mediatypes else DOCKER_MANIFEST
        document["mediaType"] = media_type
        if oci_mediatypes:
            document["artifactType"] = ARTIFACT_TYPE
        document["config"] = image.config.to_json()
        document["layers"] = layers
    else:
        media_type = OCI_INDEX if oci_mediatypes else DOCKER_MANIFEST_LIST
        document["mediaType"] = media_type
        if oci_mediatypes:
            document["artifactType"] = ARTIFACT_TYPE
        document["manifests"] = layers + [image.config.to_json()]
    if oci_mediatypes:
        document["annotations"] = annotations
    data = _dumps(document)
    if len(data) > MANIFEST_SIZE_LIMIT:
        raise ImageFormatError(
            f"the manifest would be {len(data)} bytes with {len(image.layers)} layers, over the "
            f"{MANIFEST_SIZE_LIMIT}-byte budget: merge layers"
        )
    return data, media_type


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    config: Descriptor
    layers: Tuple[Descriptor, ...]
    """Every layer, the index layer (last) included."""
    oci_mediatypes: bool
    image_manifest: bool


def parse_manifest(data: bytes, media_type: Optional[str] = None) -> ParsedManifest:
    """Parses a cache image manifest (or legacy index). `media_type` is the
    Content-Type the registry sent, used when the document has no mediaType."""
    if len(data) > MAX_MANIFEST_READ:
        raise ImageFormatError(f"manifest of {len(data)} bytes exceeds {MAX_MANIFEST_READ}")
    document = _load_json(data, "manifest")
    if document.get("schemaVersion") != 2:
        raise ImageFormatError(f"manifest schemaVersion is {str(document.get('schemaVersion'))[:20]!r}, not 2")
    declared = document.get("mediaType")
    if declared is not None and media_type is not None and declared != media_type:
        raise ImageFormatError(f"manifest says mediaType {str(declared)[:80]!r} but was served as {media_type!r}")
    kind = declared if declared is not None else media_type
    if kind not in MANIFEST_MEDIA_TYPES:
        raise ImageFormatError(f"not a cache image: unsupported manifest media type {str(kind)[:80]!r}")
    artifact_type = document.get("artifactType")
    if artifact_type is not None and artifact_type != ARTIFACT_TYPE:
        raise ImageFormatError(f"not a pants-oci-cache image (artifactType {str(artifact_type)[:80]!r})")
    if kind in (OCI_MANIFEST, DOCKER_MANIFEST):
        config = Descriptor.from_json(document.get("config"), "manifest config")
        raw_layers = document.get("layers")
        layers = _descriptor_list(raw_layers, "manifest layer")
    else:
        descriptors = _descriptor_list(document.get("manifests"), "index entry")
        configs = [d for d in descriptors if d.media_type == CONFIG_MEDIA_TYPE]
        if len(configs) != 1:
            raise ImageFormatError(f"not a pants-oci-cache image: {len(configs)} config entries in the index")
        config = configs[0]
        layers = [d for d in descriptors if d.media_type != CONFIG_MEDIA_TYPE]
    if config.media_type != CONFIG_MEDIA_TYPE:
        raise ImageFormatError(f"not a pants-oci-cache image (config media type {config.media_type[:80]!r})")
    if not layers:
        raise ImageFormatError("cache image has no layers (the index layer is missing)")
    return ParsedManifest(
        media_type=kind,
        config=config,
        layers=tuple(layers),
        oci_mediatypes=kind in (OCI_MANIFEST, OCI_INDEX),
        image_manifest=kind in (OCI_MANIFEST, DOCKER_MANIFEST),
    )


def resolve_image(manifest: ParsedManifest, config: CacheConfig) -> CacheImage:
    """Checks that the manifest and its config agree (the index is the last layer
    and the config names it; the data layer count matches) and splits the layers."""
    *data_layers, index = manifest.layers
    if index.media_type not in (_LAYER_MEDIA_TYPES[(True, Compression.UNCOMPRESSED)], _LAYER_MEDIA_TYPES[(False, Compression.UNCOMPRESSED)]):
        raise ImageFormatError(f"the index layer has media type {index.media_type[:80]!r}, not an uncompressed tar")
    if index.digest != config.index.digest or index.size != config.index.size:
        raise ImageFormatError("the config's index descriptor is not the manifest's last layer")
    if len(data_layers) != config.layer_count:
        raise ImageFormatError(f"the manifest has {len(data_layers)} data layers, the config says {config.layer_count}")
    for layer in data_layers:
        layer_compression(layer)
    return CacheImage(manifest.config, tuple(data_layers), index)


def _descriptor_list(value: Any, what: str) -> List[Descriptor]:
    if not isinstance(value, list):
        raise ImageFormatError(f"manifest has no list of {what}s")
    if len(value) > MAX_LAYERS:
        raise ImageFormatError(f"manifest has {len(value)} {what}s, more than {MAX_LAYERS}")
    return [Descriptor.from_json(item, f"{what} {number}") for number, item in enumerate(value)]


def _load_json(data: bytes, what: str) -> Dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ImageFormatError(f"{what} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    return document
