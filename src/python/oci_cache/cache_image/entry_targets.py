"""Opens the ImageTarget a cache-from / cache-to entry names.

The transport (the registry client: urllib3, ssl) is imported on the first open, not
with this module: `serve` then listens before it pays for it (the import of the
cache images, which opens the targets, runs after that, in the background).
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

from oci_cache.cache_entries import TYPE_LOCAL, CacheFrom, CacheTo
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.target import ImageTarget, RegistryLocation

CacheEntry = Union[CacheFrom, CacheTo]

IMPORT_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.2, max_delay=2.0, total_timeout=10.0)
"""Import must stay bounded in time: a few quick retries, then a warning and a miss."""


def open_entry_target(
    entry: CacheEntry,
    *,
    ca_bundle: Optional[str] = None,
    docker_config_dir: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    retry: Optional[RetryPolicy] = None,
) -> ImageTarget:
    """The registry repository or OCI layout directory of `entry` (no request is made)."""
    from oci_cache.oci.target_opener import open_target

    if entry.type == TYPE_LOCAL:
        return open_target("local", entry.location, tag=entry.tag)
    return open_target(
        "registry",
        entry.location,
        insecure=entry.insecure,
        ca_bundle=ca_bundle,
        docker_config_dir=docker_config_dir,
        environ=environ,
        retry=retry,
    )


def registry_repository(target: ImageTarget) -> Optional[tuple]:
    """(registry, repository) of a registry target, None for a layout (for mounts)."""
    location = target.location
    if not isinstance(location, RegistryLocation):
        return None
    return (location.reference.registry, location.reference.repository)


__all__ = ["CacheEntry", "IMPORT_RETRY", "open_entry_target", "registry_repository"]
