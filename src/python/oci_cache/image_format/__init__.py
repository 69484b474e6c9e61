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

from oci_cache.lazy_exports import lazy_exports

_EXPORTS = {
    "ActionEntry": "entry_index",
    "BlobEntry": "entry_index",
    "CommandRecordEntry": "entry_index",
    "CacheConfig": "manifest",
    "CacheImage": "manifest",
    "Compression": "compression",
    "Descriptor": "manifest",
    "EntryIndex": "entry_index",
    "ImageFormatError": "errors",
    "LayerEntry": "layer_writer",
    "ParsedManifest": "manifest",
    "UnsupportedFormatVersionError": "errors",
    "WrittenLayer": "layer_writer",
    "build_index_layer": "manifest",
    "build_manifest": "manifest",
    "decode_index": "entry_index",
    "encode_index": "entry_index",
    "iter_blob_range": "layer_reader",
    "iter_layer": "layer_reader",
    "layer_compression": "manifest",
    "layer_descriptor": "manifest",
    "parse_compression": "compression",
    "parse_config": "manifest",
    "parse_manifest": "manifest",
    "read_blob_range": "layer_reader",
    "read_index_layer": "manifest",
    "resolve_image": "manifest",
    "write_layer": "layer_writer",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
