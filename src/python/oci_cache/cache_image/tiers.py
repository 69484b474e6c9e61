"""`open_oci_tiers`: what `oci-cache serve` serves from when it has cache-from or
cache-to entries.

    local store  →  read-through of the imported images  →  completeness check
    (durable)       (ImportingBlobStore / ImportingActionCache)  (hits are whole)

The import runs in the background (the server listens at once; lookups wait for
it briefly, then miss) and re-checks the refs every minute. `Tiers.export`
exports to every cache-to entry; it is called by the control service and once at
shutdown. The exporter (layer packing, compression codecs, the registry client)
is imported on the first export, not at start: a daemon launched by a Pants run is
on that run's critical path until it listens.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, List

from oci_cache.cache_entries import CacheFrom, CacheTo
from oci_cache.cache_image.export_markers import ExportMarkers, pending_entries
from oci_cache.cache_image.imported_images import ImportSet
from oci_cache.cache_image.importer import DEFAULT_REFRESH_SECONDS, CacheImporter
from oci_cache.cache_image.importing_action_cache import ImportingActionCache
from oci_cache.cache_image.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.secret_commands import SecretCommandWithholding, remember_secret_settings
from oci_cache.cache_image.usage_log import UsageLog
from oci_cache.explain.candidates import ExplainSources
from oci_cache.export_report import ExportReport
from oci_cache.secret_masking.masked_values import MASKING_KEY_FILE
from oci_cache.store.completeness import CompletenessCheckingActionCache
from oci_cache.store.local_store import LocalStore

if TYPE_CHECKING:  # serve_command imports this module
    from oci_cache.cache_image.exporter import CacheExporter
    from oci_cache.cli.serve_command import ServeConfig, Tiers

logger = logging.getLogger(__name__)

EXPORT_DIRECTORY = "export"


def open_oci_tiers(
    config: "ServeConfig",
    *,
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    start_import: bool = True,
    **exporter_options: Any,
) -> "Tiers":
    """The tiers for `config` (its `cache_from` / `cache_to` lists of parsed entries);
    with neither, just the local store behind the completeness check. With
    `start_import=False` the background import starts when `Tiers.start` is called
    (serve calls it once it listens). `exporter_options` go to CacheExporter (e.g.
    confirm_delay, max_layer_bytes)."""
    from oci_cache.cli.serve_command import Tiers

    cache_from: List[CacheFrom] = list(getattr(config, "cache_from", None) or [])
    cache_to: List[CacheTo] = list(getattr(config, "cache_to", None) or [])
    store = LocalStore(config.state_dir / "store", config.max_size_bytes)
    if not cache_from and not cache_to:
        return Tiers(
            blobs=store,
            action_cache=CompletenessCheckingActionCache(store, store),
            close=store.close,
            local_store_stats=store.stats,
            explain_sources=ExplainSources(store.iter_action_digests),
        )
    try:
        imports = ImportSet(expected=len(cache_from))
        importer = CacheImporter(cache_from, imports, refresh_seconds=refresh_seconds)
        blobs = ImportingBlobStore(store, imports)
        usage = UsageLog()
        actions = ImportingActionCache(store, blobs, imports, usage)
        markers = ExportMarkers(config.state_dir / EXPORT_DIRECTORY)
    except BaseException:
        store.close()
        raise
    withholding = SecretCommandWithholding(
        getattr(config, "masking_key_file", None) or config.state_dir / MASKING_KEY_FILE,
        getattr(config, "secret_env_names", ()),
    )
    if cache_to:  # so that a direct `oci-cache export` of this state dir masks the same way
        remember_secret_settings(config.state_dir / EXPORT_DIRECTORY, withholding)
    if start_import:
        importer.start()
    exporter_lock = threading.Lock()
    exporter: List["CacheExporter"] = []

    def export() -> ExportReport:
        with exporter_lock:
            if not exporter:
                from oci_cache.cache_image.exporter import CacheExporter
                exporter.append(
                    CacheExporter(
                        store,
                        config.state_dir / EXPORT_DIRECTORY,
                        imports=imports,
                        usage=usage,
                        fetcher=blobs,
                        secret_commands=withholding,
                        **exporter_options,
                    )
                )
        return exporter[0].export(cache_to)

    def pending() -> int:
        return max((pending_entries(store, markers, entry.to_text()) for entry in cache_to), default=0)

    def close() -> None:
        importer.close()
        with exporter_lock:
            for made in exporter:
                made.close()
        blobs.close()
        store.close()

    return Tiers(
        blobs=blobs,
        action_cache=CompletenessCheckingActionCache(actions, blobs),
        close=close,
        export=export if cache_to else None,
        local_store_stats=store.stats,
        pending_export_entries=pending if cache_to else None,
        start=None if start_import else importer.start,
        import_states=importer.states,
        explain_sources=ExplainSources(store.iter_action_digests, imports),
    )


__all__ = ["EXPORT_DIRECTORY", "open_oci_tiers"]
