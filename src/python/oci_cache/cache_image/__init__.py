"""The OCI-backed tier: import cache images, serve their blobs lazily, export new ones.

- loaded_image: `load_cache_image(target) -> LoadedImage` (manifest, config, index).
- entry_targets: `open_entry_target(entry)`, the ImageTarget of a cache-from/to entry.
"""

from oci_cache.cache_image.entry_targets import open_entry_target
from oci_cache.cache_image.errors import (
    CacheImageError,
    CacheImageNotFoundError,
    CorruptCacheImageError,
    ExportError,
    NewerFormatError,
    NotACacheImageError,
)
from oci_cache.cache_image.loaded_image import LoadedImage, load_cache_image, manifest_reference

__all__ = [
    "CacheImageError",
    "CacheImageNotFoundError",
    "CorruptCacheImageError",
    "ExportError",
    "LoadedImage",
    "NewerFormatError",
    "NotACacheImageError",
    "load_cache_image",
    "manifest_reference",
    "open_entry_target",
]
