"""The OCI-backed tier: import cache images, serve their blobs lazily, export new ones.

- loaded_image: `load_cache_image(target) -> LoadedImage` (manifest, config, index).
- entry_targets: `open_entry_target(entry)`, the ImageTarget of a cache-from/to entry.
"""

from oci_cache.lazy_exports import lazy_exports

_EXPORTS = {
    "CacheImageError": "errors",
    "CacheImageNotFoundError": "errors",
    "CorruptCacheImageError": "errors",
    "ExportError": "errors",
    "LoadedImage": "loaded_image",
    "NewerFormatError": "errors",
    "NotACacheImageError": "errors",
    "load_cache_image": "loaded_image",
    "manifest_reference": "loaded_image",
    "open_entry_target": "entry_targets",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
