"""The serving stack: what `oci-cache serve` serves from, built in one place.

    local store  →  read-through of the imported images  →  completeness check
    (durable)       (ImportingBlobStore / ImportingActionCache)  (hits are whole)

`open_serving_stack` is the only place where these decorators are stacked. With
neither cache-from nor cache-to entries the stack is the local store behind the
completeness check. The daemon runtime (server/daemon_runtime.py) takes the stack
whole: `blobs` and `action_cache` for the gRPC services, `export()` for the Control
service and the export at shutdown, `status()` for GetStatus, and `close()` when it
stops; `serve` calls `start()` before the server listens.

The import runs in the background (started while the server is still starting;
lookups wait for it briefly, then miss) and re-checks the refs every minute. The
exporter (layer packing, compression codecs, the registry client) is made in the
background at `start()`, which also opens its registry connections (set-up, ping)
so that the end-of-run export pays about one round trip; nothing of it is on the
path to listening, where a daemon launched by a Pants run holds that run up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

from oci_cache.cache_entries import CacheFrom, CacheTo
from oci_cache.cache_image.exporting.export_markers import ExportMarkers, pending_entries
from oci_cache.cache_image.importing.early_manifests import EarlyManifests
from oci_cache.cache_image.importing.hot_set_prefetch import HotSetPrefetch, prefetch_bytes_bound
from oci_cache.cache_image.importing.imported_images import ImportSet
from oci_cache.cache_image.importing.importer import DEFAULT_REFRESH_SECONDS, CacheImporter, ImportState
from oci_cache.cache_image.importing.importing_action_cache import ImportingActionCache
from oci_cache.cache_image.importing.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.exporting.secret_commands import SecretCommandWithholding, remember_secret_settings
from oci_cache.cache_image.usage_log import UsageLog
from oci_cache.export_report import ExportReport
from oci_cache.secret_masking.masked_values import MASKING_KEY_FILE
from oci_cache.store.completeness import CompletenessCheckingActionCache
from oci_cache.store.interfaces import ActionCache, BlobStore
from oci_cache.store.local_store import LocalStore, LocalStoreStats

if TYPE_CHECKING:
    from oci_cache.cache_image.exporting.exporter import CacheExporter

logger = logging.getLogger(__name__)

EXPORT_DIRECTORY = "export"
STORE_DIRECTORY = "store"


@dataclass(frozen=True)
class StackStatus:
    """What GetStatus reports of the stack."""

    local_store: LocalStoreStats
    pending_export_entries: Optional[int] = None
    """Action results written since the oldest cache-to entry's last export (None: no
    cache-to entry, so nothing is pending)."""
    imports: Tuple[ImportState, ...] = ()
    """What each cache-from entry's import got."""


class ServingStack:
    """The blob store and action cache a server serves from, with their lifecycle.

    Built by `open_serving_stack`; the constructor takes the parts as they are (a
    test may hand it a local store and its own `export`)."""

    def __init__(
        self,
        local: LocalStore,
        blobs: BlobStore,
        action_cache: ActionCache,
        *,
        importer: Optional[CacheImporter] = None,
        export: Optional[Callable[[], ExportReport]] = None,
        pending_export_entries: Optional[Callable[[], int]] = None,
        close_first: Sequence[Callable[[], None]] = (),
        connect_ahead: Optional[Callable[[], None]] = None,
        imports: Optional[ImportSet] = None,
    ) -> None:
        self.local = local
        self.blobs = blobs
        self.action_cache = action_cache
        self.imports = imports  # the cache-from images (None without cache-from entries)
        self._importer = importer
        self._export = export
        self._pending_export_entries = pending_export_entries
        self._close_first = list(close_first)
        self._connect_ahead = connect_ahead
        self._started = False

    @property
    def can_export(self) -> bool:
        """Whether there is a cache-to entry to export to."""
        return self._export is not None

    def start(self) -> None:
        """Starts the background import and opens the export's registry connections
        (once); `serve` calls it before the server listens."""
        if self._started:
            return
        self._started = True
        if self._importer is not None:
            self._importer.start()
        if self._connect_ahead is not None:  # the export's registry connections, meanwhile
            threading.Thread(target=self._connect_ahead, name="export-connect", daemon=True).start()

    def export(self) -> ExportReport:
        """Exports to every cache-to entry now (only when `can_export`)."""
        if self._export is None:
            raise RuntimeError("this serving stack has no cache-to entry to export to")
        return self._export()

    def status(self) -> StackStatus:
        return StackStatus(
            local_store=self.local.stats(),
            pending_export_entries=self._pending_export_entries() if self._pending_export_entries is not None else None,
            imports=tuple(self._importer.states()) if self._importer is not None else (),
        )

    def close(self) -> None:
        """Stops the import, closes the exporter and the fetch pool, then the local store."""
        try:
            if self._importer is not None:
                self._importer.close()
            for close in self._close_first:
                close()
        finally:
            self.local.close()


def open_serving_stack(
    state_dir: Path,
    max_size_bytes: int,
    cache_from: Sequence[CacheFrom] = (),
    cache_to: Sequence[CacheTo] = (),
    *,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    start_import: bool = True,
    secret_env_names: Sequence[str] = (),
    masking_key_file: Optional[Path] = None,
    early_manifests: Optional[EarlyManifests] = None,
    **exporter_options: Any,
) -> ServingStack:
    """The stack on STATE_DIR/store. With `start_import=False` the background import
    starts when `ServingStack.start` is called (serve calls it once it listens).
    `secret_env_names` and `masking_key_file` (None: STATE_DIR/secret-masking.key) say
    which Commands the export withholds and how it masks them (cache_image/exporting/secret_commands.py).
    `early_manifests`: the cache-from targets and manifests already being read (serve
    starts them first); the import starts from them.
    `exporter_options` go to CacheExporter (e.g. confirm_delay, max_layer_bytes)."""
    cache_from = list(cache_from)
    cache_to = list(cache_to)
    store = LocalStore(Path(state_dir) / STORE_DIRECTORY, max_size_bytes)
    if not cache_from and not cache_to:
        return ServingStack(store, store, CompletenessCheckingActionCache(store, store))
    try:
        imports = ImportSet(expected=len(cache_from))
        importer = CacheImporter(cache_from, imports, refresh_seconds=refresh_seconds, early=early_manifests)
        blobs = ImportingBlobStore(store, imports)
        prefetch = HotSetPrefetch(imports, store, prefetch_bytes_bound(max_size_bytes))
        imports.add_install_listener(prefetch.image_installed)
        usage = UsageLog()
        action_cache = honest_action_cache(store, blobs, imports, usage)
        export_dir = Path(state_dir) / EXPORT_DIRECTORY
        markers = ExportMarkers(export_dir)
    except BaseException:
        store.close()
        raise
    withholding = SecretCommandWithholding(
        masking_key_file or Path(state_dir) / MASKING_KEY_FILE, tuple(secret_env_names)
    )
    if cache_to:  # so that a direct `oci-cache export` of this state dir masks the same way
        remember_secret_settings(export_dir, withholding)
    exporter = _LazyExporter(
        lambda: _make_exporter(
            store, export_dir, imports, usage, blobs, {"secret_commands": withholding, **exporter_options}
        ),
        cache_to,
    )

    def pending() -> int:
        return max((pending_entries(store, markers, entry.to_text()) for entry in cache_to), default=0)

    stack = ServingStack(
        store,
        blobs,
        action_cache,
        importer=importer,
        export=exporter.export if cache_to else None,
        pending_export_entries=pending if cache_to else None,
        close_first=(prefetch.close, exporter.close, blobs.close),
        connect_ahead=exporter.connect if cache_to else None,
        imports=imports,
    )
    if start_import:
        stack.start()
    return stack


def honest_action_cache(
    local: LocalStore, blobs: ImportingBlobStore, imports: ImportSet, usage: Optional[UsageLog] = None
) -> CompletenessCheckingActionCache:
    """The local store, read through to the imported images, behind the completeness
    check, which decides every hit and hands the honest ones back to the importing
    action cache (write-back of imported results, usage for the next export)."""
    importing = ImportingActionCache(local, blobs, imports, usage)
    return CompletenessCheckingActionCache(importing, blobs, on_hit=importing.hit_served)


def _make_exporter(
    store: LocalStore,
    work_dir: Path,
    imports: ImportSet,
    usage: UsageLog,
    fetcher: ImportingBlobStore,
    options: Any,
) -> "CacheExporter":
    from oci_cache.cache_image.exporting.exporter import CacheExporter

    return CacheExporter(store, work_dir, imports=imports, usage=usage, fetcher=fetcher, **options)


class _LazyExporter:
    """The CacheExporter, made on the first export (its imports are not needed to serve)."""

    def __init__(self, make: Callable[[], "CacheExporter"], cache_to: List[CacheTo]) -> None:
        self._make = make
        self._cache_to = cache_to
        self._lock = threading.Lock()
        self._made: List["CacheExporter"] = []

    def export(self) -> ExportReport:
        with self._lock:
            if not self._made:
                self._made.append(self._make())
        return self._made[0].export(self._cache_to)

    def connect(self) -> None:
        """Makes the exporter and opens its targets' connections (CacheExporter.connect);
        a failure is left for the export to report."""
        try:
            with self._lock:
                if not self._made:
                    self._made.append(self._make())
            self._made[0].connect(self._cache_to)
        except Exception as error:  # noqa: BLE001 - runs in a thread of its own
            logger.debug("the export's targets were not opened ahead: %s", error)

    def close(self) -> None:
        with self._lock:
            for made in self._made:
                made.close()


__all__ = ["EXPORT_DIRECTORY", "STORE_DIRECTORY", "ServingStack", "StackStatus", "honest_action_cache", "open_serving_stack"]
