"""The first round trips of an import, started before the daemon has loaded the rest.

A daemon launched by a Pants run spends a few hundred milliseconds loading gRPC, the
store and the serving stack before its import could start; across a wide-area link the
import's first requests (a connection set-up, then the manifest) take about as long.
`EarlyManifests` opens each cache-from entry's target and reads its manifest in a
thread of its own as soon as the entries are parsed, so those round trips overlap the
loading. For an image that will be prefetched (`connections` > 0 and the entry's prefetch
bound is not 0) the read then opens, while the import reads the config and the index, the
prefetch's first connections to the image's layers (layer_warmup.py). The importer
(importer.py) then takes the targets over and loads each image
from the manifest already read; it reads a manifest itself when the early read failed
or found nothing (and reports that as it always does). Nothing here is trusted more
than any manifest: the image is checked as load_cache_image checks every image.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from oci_cache.cache_entries import CacheFrom
    from oci_cache.oci.target import ImageTarget, Manifest

logger = logging.getLogger(__name__)

UNBOUNDED = 1 << 62
"""An entry's prefetch bound when none is given (the daemon passes its own)."""


class _EarlyRead:
    def __init__(self) -> None:
        self.target: Optional["ImageTarget"] = None
        self.manifest: Optional["Manifest"] = None
        self.done = threading.Event()
        self.taken = False


class EarlyManifests:
    """Starts, for each entry, opening its target and reading its manifest (module
    docstring); the importer takes the results with `take`."""

    def __init__(
        self, entries: Sequence["CacheFrom"], *, connections: int = 0, prefetch_bounds: Optional[Sequence[int]] = None
    ) -> None:
        """`connections`: how many of the prefetch's connections to open for each image to be
        prefetched; 0: none. `prefetch_bounds`: each entry's prefetch bound in bytes (0: not
        prefetched, nothing opened), by default its `prefetch=` (unset: prefetched)."""
        self.entries = list(entries)
        self._connections = connections
        self._bounds = list(prefetch_bounds) if prefetch_bounds is not None else [
            entry.prefetch_bytes if entry.prefetch_bytes is not None else UNBOUNDED for entry in self.entries
        ]
        self._reads: List[_EarlyRead] = [_EarlyRead() for _ in self.entries]
        self._lock = threading.Lock()
        self._closed = False
        # Imported here, in the caller's thread, before any read starts: a read thread that
        # imported them itself would share the GIL (and module locks) with the daemon's own
        # loading (gRPC, the store) and reach its first connection about 40 ms later.
        from oci_cache.cache_image import entry_targets, loaded_image  # noqa: F401
        from oci_cache.cache_image.importing import layer_warmup  # noqa: F401
        from oci_cache.oci import target_opener  # noqa: F401

        for position, entry in enumerate(self.entries):
            threading.Thread(
                target=self._read, args=(entry, self._reads[position], self._bounds[position]), name="early-manifest", daemon=True
            ).start()

    def _read(self, entry: "CacheFrom", read: _EarlyRead, prefetch_bound: int) -> None:
        try:
            from oci_cache.cache_image.entry_targets import IMPORT_RETRY, open_entry_target
            from oci_cache.cache_image.importing.layer_warmup import warm_layer_reads
            from oci_cache.cache_image.loaded_image import manifest_reference

            read.target = open_entry_target(entry, retry=IMPORT_RETRY)
            read.manifest = read.target.get_manifest(manifest_reference(read.target))
            if read.manifest is not None and prefetch_bound > 0:
                warm_layer_reads(read.target, read.manifest, self._connections)
        except Exception as error:  # noqa: BLE001 - the importer reads again and reports
            logger.debug("cache-from %s: early manifest read failed: %s", entry.to_text(), error)
        finally:
            read.done.set()
            with self._lock:
                orphan = self._closed and not read.taken
            if orphan:
                self._close_target(read)

    def take(self, position: int, timeout: Optional[float] = None) -> Tuple[Optional["ImageTarget"], Optional["Manifest"]]:
        """(target, manifest) of the entry at `position`, once its read is done (the target
        is the caller's from then on; None when it could not be opened); (None, None) when
        taken before or not done within `timeout`."""
        read = self._reads[position]
        if not read.done.wait(timeout):
            return None, None
        with self._lock:
            if read.taken or self._closed:
                return None, None
            read.taken = True
        return read.target, read.manifest

    def close(self) -> None:
        """Closes the targets nobody took (a read still running closes its own)."""
        with self._lock:
            self._closed = True
            untaken = [read for read in self._reads if read.done.is_set() and not read.taken]
        for read in untaken:
            self._close_target(read)

    @staticmethod
    def _close_target(read: _EarlyRead) -> None:
        if read.target is not None:
            try:
                read.target.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


__all__ = ["EarlyManifests"]
