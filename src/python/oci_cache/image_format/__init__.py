"""The byte-level format of a cache image: layers, entry index, manifest and config.

docs/format.md describes the format; this package writes and reads it, with no
network access. The modules:

- compression: the Compression enum, levels, and the gzip/zstd unit codecs.
- tar_headers: the tar records of a layer (written byte-exactly, read strictly).
- layer_writer: `write_layer(path, blobs, compression, ...) -> WrittenLayer`.
- layer_reader: `read_blob_range` / `iter_blob_range` (one entry from a Range read),
  `iter_layer` (a whole layer).
- estargz: eStargz TOC, landmark and footer.
- entry_index: `encode_index(...) -> bytes`, `decode_index(bytes) -> EntryIndex`.
- manifest: descriptors, config, manifest build/parse, the index layer.
"""

from oci_cache.image_format.compression import Compression, parse_compression
from oci_cache.image_format.entry_index import ActionEntry, BlobEntry, EntryIndex, decode_index, encode_index
from oci_cache.image_format.errors import ImageFormatError, UnsupportedFormatVersionError
from oci_cache.image_format.layer_reader import iter_blob_range, iter_layer, read_blob_range
from oci_cache.image_format.layer_writer import LayerEntry, WrittenLayer, write_layer
from oci_cache.image_format.manifest import (
    CacheConfig,
    CacheImage,
    Descriptor,
    ParsedManifest,
    build_index_layer,
    build_manifest,
    layer_compression,
    layer_descriptor,
    parse_config,
    parse_manifest,
    read_index_layer,
    resolve_image,
)

__all__ = [
    "ActionEntry",
    "BlobEntry",
    "CacheConfig",
    "CacheImage",
    "Compression",
    "Descriptor",
    "EntryIndex",
    "ImageFormatError",
    "LayerEntry",
    "ParsedManifest",
    "UnsupportedFormatVersionError",
    "WrittenLayer",
    "build_index_layer",
    "build_manifest",
    "decode_index",
    "encode_index",
    "iter_blob_range",
    "iter_layer",
    "layer_compression",
    "layer_descriptor",
    "parse_compression",
    "parse_config",
    "parse_manifest",
    "read_blob_range",
    "read_index_layer",
    "resolve_image",
    "write_layer",
]
