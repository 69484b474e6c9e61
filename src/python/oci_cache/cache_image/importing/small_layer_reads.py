"""Whole-layer reads for the small layers of an imported image.

A blob of an imported image is normally fetched with one Range read of its entry
(import fetches stay close to what is served). A small layer, though, is cheaper
to read whole than blob by blob: a fresh daemon serving a warm Pants build wants
most blobs of a small cache image, one round trip each. So the second distinct
range wanted from a layer of at most `max_layer_bytes` brings the whole layer in
(one GET, checked against the layer's digest), kept in a bounded in-memory cache;
later ranges of it are sliced from there. Every blob is still verified by its own
digest when it is unpacked from the range (imported_images.py).

A layer whose bytes do not match its digest, or that cannot be read, is never
tried whole again: its ranges are read one by one as before.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Callable, Dict, Optional, Set

from oci_cache.digests import Digest
from oci_cache.errors import CacheError

logger = logging.getLogger(__name__)

READ_WHOLE_LAYER_BYTES = 1 << 20
"""Layers up to this size (compressed) are read whole from their second wanted range."""
CACHED_LAYER_BYTES = 16 << 20
"""Bound of the whole layers kept in memory, per imported image."""

ReadWholeLayer = Callable[[Digest], bytes]


class SmallLayerReads:
    def __init__(
        self,
        read_layer: ReadWholeLayer,
        *,
        max_layer_bytes: int = READ_WHOLE_LAYER_BYTES,
        capacity_bytes: int = CACHED_LAYER_BYTES,
    ) -> None:
        self._read_layer = read_layer
        self._max_layer_bytes = max_layer_bytes
        self._capacity_bytes = capacity_bytes
        self._lock = threading.Lock()
        self._cached: "OrderedDict[Digest, bytes]" = OrderedDict()
        self._cached_bytes = 0
        self._wanted: Dict[Digest, Set[int]] = {}
        self._in_flight: Dict[Digest, threading.Event] = {}
        self._unusable: Set[Digest] = set()
        self.layers_read = 0
        self.bytes_read = 0

    def read_range(
        self, layer: Digest, offset: int, length: int, fetched: Callable[[int], None] = lambda size: None
    ) -> Optional[bytes]:
        """The range's bytes from the whole layer (read now if this is the second range
        wanted from it), or None: then the caller reads the range itself. `fetched` is
        told the size of a whole layer read."""
        if layer.size_bytes > self._max_layer_bytes or offset < 0 or length < 0 or offset + length > layer.size_bytes:
            return None
        while True:
            with self._lock:
                data = self._cached.get(layer)
                if data is not None:
                    self._cached.move_to_end(layer)
                    return data[offset : offset + length]
                if layer in self._unusable:
                    return None
                wanted = self._wanted.setdefault(layer, set())
                wanted.add(offset)
                if len(wanted) < 2:
                    return None  # the first range of a layer: a Range read is enough
                waiting = self._in_flight.get(layer)
                if waiting is None:
                    done = threading.Event()
                    self._in_flight[layer] = done
                    break
            waiting.wait()  # another thread is reading this layer: then look again
        try:
            data = self._read_verified(layer, fetched)
        finally:
            with self._lock:
                del self._in_flight[layer]
            done.set()
        return None if data is None else data[offset : offset + length]

    def _read_verified(self, layer: Digest, fetched: Callable[[int], None]) -> Optional[bytes]:
        try:
            data = self._read_layer(layer)
            fetched(len(data))
        except (CacheError, OSError) as error:
            logger.info("layer %s: a whole read failed (%s); reading its blobs one by one", layer, error)
            data = None
        if data is not None and (len(data) != layer.size_bytes or hashlib.sha256(data).hexdigest() != layer.hash):
            logger.info("layer %s: its bytes do not match its digest; reading its blobs one by one", layer)
            data = None
        with self._lock:
            if data is None:
                self._unusable.add(layer)
                return None
            self.layers_read += 1
            self.bytes_read += len(data)
            self._cached[layer] = data
            self._cached_bytes += len(data)
            while self._cached_bytes > self._capacity_bytes and len(self._cached) > 1:
                _, evicted = self._cached.popitem(last=False)
                self._cached_bytes -= len(evicted)
            self._wanted.pop(layer, None)
        return data


__all__ = ["CACHED_LAYER_BYTES", "READ_WHOLE_LAYER_BYTES", "SmallLayerReads"]
