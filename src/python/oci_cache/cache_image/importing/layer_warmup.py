"""The prefetch's connections, opened while the import still reads the config and the index.

Across a wide-area link the first Range read of a data layer costs more than its bytes: the
registry answers a blob GET with a redirect to its storage host (one round trip), and each
new connection to that host costs its set-up (TCP and TLS). The hot-set prefetch
(hot_set_prefetch.py) reads with several connections at once, and used to pay all of that
only after the index had arrived.

The manifest already names every data layer. So, as soon as it has been read,
`warm_layer_reads` starts `connections` one-byte Range reads of them (round robin over the
data layers, in manifest order, each in a thread of its own) and returns at once. They run
while the config and the index are read; each leaves behind the layer's remembered redirect
(oci/redirect_memory.py) and an open connection to the storage host, so the prefetch's first
requests go straight to the storage on connections that are ready. A read that fails costs
nothing but itself (the prefetch and the lazy reads ask the registry as always), and the
byte read is not trusted for anything.

Only registry targets are warmed (a layout directory has no connections), and only when a
prefetch will follow (serve_command.py decides: the prefetch bound and the entry's `prefetch=`).
"""

from __future__ import annotations

import logging
import threading
from typing import List

from oci_cache.errors import CacheError
from oci_cache.image_format import ImageFormatError
from oci_cache.image_format.manifest import parse_manifest
from oci_cache.oci.target import ImageTarget, Manifest, RegistryLocation

logger = logging.getLogger(__name__)


def warm_layer_reads(target: ImageTarget, manifest: Manifest, connections: int) -> List[threading.Thread]:
    """Starts up to `connections` one-byte reads of the data layers the manifest names (module
    docstring); the threads started (none for a layout target, an image without data layers,
    or a manifest that does not parse: its import reports that)."""
    if connections <= 0 or not isinstance(target.location, RegistryLocation):
        return []
    try:
        layers = parse_manifest(manifest.data, manifest.media_type).layers[:-1]  # the last is the index
    except ImageFormatError:
        return []
    layers = tuple(layer for layer in layers if layer.size > 0)
    if not layers:
        return []
    threads = []
    for number in range(connections):
        descriptor = layers[number % len(layers)]
        thread = threading.Thread(
            target=_read_one_byte, args=(target, descriptor.digest), name="layer-warmup", daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads


def _read_one_byte(target: ImageTarget, digest: str) -> None:
    try:
        target.read_blob(digest, 0, 1)
    except (CacheError, OSError, ValueError) as error:
        logger.debug("warming a connection for layer %s failed: %s", digest, error)
    except Exception as error:  # noqa: BLE001 - a warm-up must never matter
        logger.debug("warming a connection for layer %s failed unexpectedly: %r", digest, error)


__all__ = ["warm_layer_reads"]
