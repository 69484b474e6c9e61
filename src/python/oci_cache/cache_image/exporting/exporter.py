"""Exports what this cache holds to cache-to entries, as cache images.

    exporter = CacheExporter(store, state_dir / "export", imports=..., usage=..., fetcher=...)
    report = exporter.export(entries)          # ExportReport: one ExportTargetReport per entry

Per entry (docs/format.md):

1. Collect. The action results acknowledged since this entry's last successful
   export (the local store's durable journal, see export_markers.py) plus the
   actions this daemon served as hits (usage_log.py). Each is parsed for the blobs
   it needs: its ActionResult bytes (stored as a blob), stdout/stderr, output
   files, output trees and every file in them. `mode=min` keeps only exit code 0;
   `mode=max` keeps every result and adds every blob of the local store (Action
   and Command protos included).
2. Merge. Start from the image at the ref right now (the merge base): its entries
   stay (with `mode=min`, only its min-eligible ones), last_used times are raised
   for what was used. A needed blob that the base lacks is packed from the local
   store, or carried forward from an imported image — by reference to its layer
   when that layer can be made present without sending bytes (same target, or a
   cross-repository mount in the same registry), else fetched (verified) and
   packed. An action whose blobs cannot all be found is left out.
3. Prune by keep-duration / keep-bytes (pruning.py).
4. Pack pending blobs into new layers (layer_packer.py; compression and level of
   the entry; uploads overlap compression; a layer the target already has is not
   sent again), then rewrite carried layers when force-compression asks for it,
   when dead bytes pile up or when the layer count nears the manifest budget
   (compaction.py). Layers no entry points at are dropped.
5. Publish — unless the plan is the image at the ref but for last_used times that
   are not stale yet (unchanged_export.py): then the ref is left as it is. Upload
   the index layer and config; HEAD the ref: if it moved since step 2, merge again
   (bounded retries, jittered). Otherwise put the manifest — the tag moves last,
   after every blob exists. Then, after a short delay longer than a writer's
   HEAD-to-PUT window, HEAD again: if another writer's manifest replaced ours and
   lacks our actions, merge again on top of it.
6. Advance the entry's journal marker (only now).

A failure is reported in the entry's ExportTargetReport (`ignored_error` when the
entry has ignore-error=true) and never raised.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from oci_cache.cache_entries import MODE_MAX, MODE_MIN, TYPE_LOCAL, TYPE_REGISTRY, CacheTo
from oci_cache.cache_image.exporting.compaction import choose_layers_to_rewrite, spool_live_blobs
from oci_cache.cache_image.entry_targets import open_entry_target, registry_repository
from oci_cache.cache_image.errors import (
    CacheImageNotFoundError,
    CorruptCacheImageError,
    ExportError,
    NewerFormatError,
    NotACacheImageError,
    UnverifiedImagePartError,
)
from oci_cache.cache_image.exporting.export_collection import Collected, CollectedAction, collect_exportable
from oci_cache.cache_image.exporting.export_markers import ExportMarkers, pending_entries
from oci_cache.cache_image.exporting.image_plan import ORIGIN_IMPORTED, ORIGIN_NEW, BlobRecord, ImagePlan, LayerRecord
from oci_cache.cache_image.importing.imported_images import ImportSet
from oci_cache.cache_image.importing.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.exporting.layer_packer import DEFAULT_MAX_LAYER_BYTES, BlobSourceResolver, LayerPacker
from oci_cache.cache_image.loaded_image import LoadedImage, load_cache_image, manifest_reference
from oci_cache.cache_image.exporting.pack_order import in_use_order
from oci_cache.cache_image.exporting.pruning import PruneOutcome, prune_by_bytes, prune_by_duration
from oci_cache.cache_image.exporting.result_equivalence import same_but_execution_metadata
from oci_cache.cache_image.exporting.secret_commands import SecretCommandWithholding
from oci_cache.cache_image.exporting.unchanged_export import (
    SettledImage,
    SettledKey,
    last_used_granularity,
    nothing_to_publish,
    plan_matches_image,
    settled_from_plan,
)
from oci_cache.cache_image.usage_log import UsageLog
from oci_cache.digests import Digest
from oci_cache.errors import CacheError
from oci_cache.export_report import ExportReport, ExportTargetReport
from oci_cache.image_format import (
    ActionEntry,
    CacheConfig,
    CacheImage,
    build_index_layer,
    build_manifest,
    encode_index,
)
from oci_cache.image_format.manifest import format_timestamp, with_media_types
from oci_cache.oci.target import ImageTarget, LayoutLocation, PushOutcome, RegistryLocation
from oci_cache.store.interfaces import LocalTier
from oci_cache.secret_masking import MASKING_KEY_FILE

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
MIN_CONFIRM_DELAY_REGISTRY = 0.25
MIN_CONFIRM_DELAY_LAYOUT = 0.05
MAX_CONFIRM_DELAY = 5.0
UNCHANGED_MESSAGE = "unchanged: the image at the ref already holds everything"

TargetOpener = Callable[[CacheTo], ImageTarget]


@dataclass(frozen=True)
class ExportSettings:
    """How an export runs (the same for every entry of one exporter)."""

    clock: Callable[[], float] = time.time
    """Wall-clock seconds: last_used times and keep-duration are judged by it."""
    confirm_delay: Optional[float] = None
    """Seconds between putting the manifest and checking it is still ours (None: the default)."""
    max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES
    max_attempts: int = MAX_ATTEMPTS
    """Merges tried when the ref keeps moving under the export."""


@dataclass
class _Published:
    digest: str
    actions: int
    blobs: int
    layers: int
    message: str


class CacheExporter:
    """Exports to cache-to entries (see the module docstring). Thread-safe: exports
    run one at a time."""

    def __init__(
        self,
        store: Optional[LocalTier],
        work_dir: Path,
        *,
        imports: Optional[ImportSet] = None,
        usage: Optional[UsageLog] = None,
        fetcher: Optional[ImportingBlobStore] = None,
        open_target: TargetOpener = open_entry_target,
        clock: Callable[[], float] = time.time,
        confirm_delay: Optional[float] = None,
        max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
        max_attempts: int = MAX_ATTEMPTS,
        secret_commands: Optional[SecretCommandWithholding] = None,
    ) -> None:
        """`store`: the local tier (store.interfaces.LocalTier, i.e. a LocalStore); None
        only through `CacheExporter.pruning`, which rewrites images without adding anything. `secret_commands`:
        the masking settings (default: the key file beside `work_dir`, no extra names)."""
        self.store = store
        self.work_dir = Path(work_dir)
        self.imports = imports
        self.usage = usage
        self.fetcher = fetcher
        self._open_target = open_target
        self.settings = ExportSettings(clock, confirm_delay, max_layer_bytes, max_attempts)
        self.secret_commands = secret_commands or SecretCommandWithholding(self.work_dir.parent / MASKING_KEY_FILE)
        self.markers = ExportMarkers(self.work_dir) if store is not None else None
        """How far each entry has exported the journal (None when pruning)."""
        self._lock = threading.Lock()
        self.settled: Dict[SettledKey, SettledImage] = {}
        """Images the full path last found needing nothing, per entry (unchanged_export.py)."""
        self._targets: Dict[str, ImageTarget] = {}
        """Targets opened by export_entry, kept for the next export of the same entry (its
        connections, scheme probe and registry token stay warm); dropped after a failure."""
        remove_stale_work_dirs(self.work_dir)  # left by a process killed mid-export

    @classmethod
    def pruning(cls, work_dir: Path, *, clock: Callable[[], float] = time.time) -> "CacheExporter":
        """An exporter that rewrites images (keep-duration / keep-bytes) without adding
        anything: there is no local store behind it."""
        return cls(None, work_dir, clock=clock)

    # ---- public ---------------------------------------------------------------------

    def export(self, entries: Sequence[CacheTo]) -> ExportReport:
        started = time.monotonic()
        report = ExportReport()
        for entry in entries:
            report.targets.append(self.export_entry(entry))
        report.seconds = time.monotonic() - started
        return report

    def export_entry(
        self,
        entry: CacheTo,
        target: Optional[ImageTarget] = None,
        *,
        keep_duration: Optional[float] = None,
        keep_bytes: Optional[int] = None,
    ) -> ExportTargetReport:
        """Exports to one entry (`target`: already opened for it). `keep_duration` /
        `keep_bytes` override the entry's. Never raises for export failures."""
        text = entry.to_text()
        with self._lock:
            kept = target is None
            try:
                if target is None:
                    target = self._targets.get(text) or self._open_target(entry)
                    self._targets[text] = target
                job = _EntryExport(self, entry, target, keep_duration, keep_bytes)
                report = job.run()
                if not report.ok:
                    self._forget_target(text)
                return report
            except Exception as error:  # noqa: BLE001 - reported, never raised
                self.settled.pop(job_key(entry, keep_duration, keep_bytes), None)
                if kept:
                    self._forget_target(text)
                if not isinstance(error, CacheError):
                    logger.exception("export to %s failed unexpectedly", text)
                message = str(error) or type(error).__name__
                level = logging.INFO if entry.ignore_error else logging.WARNING
                logger.log(level, "export to %s failed: %s", text, message)
                return ExportTargetReport(entry=text, ok=False, message=message, ignored_error=entry.ignore_error)

    def connect(self, entries: Sequence[CacheTo]) -> None:
        """Opens the targets of `entries` now and keeps them for the exports: across a
        wide-area link, the first export then does not pay a connection set-up and a
        ping at the end of the run. Never raises (a failure is the export's to report)."""
        for entry in entries:
            text = entry.to_text()
            with self._lock:
                target = self._targets.get(text)
                if target is None:
                    try:
                        target = self._targets[text] = self._open_target(entry)
                    except Exception as error:  # noqa: BLE001 - the export reports it
                        logger.debug("export to %s: not opened ahead: %s", text, error)
                        continue
            try:
                target.connect()
            except Exception as error:  # noqa: BLE001 - the export reports it
                logger.debug("export to %s: no connection ahead: %s", text, error)

    def close(self) -> None:
        """Closes the targets kept between exports."""
        with self._lock:
            for text in list(self._targets):
                self._forget_target(text)

    def _forget_target(self, text: str) -> None:
        target = self._targets.pop(text, None)
        if target is not None:
            try:
                target.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def pending_entries(self, entry: CacheTo) -> int:
        """Action results written since the entry's last successful export."""
        if self.store is None or self.markers is None:
            return 0
        return pending_entries(self.store, self.markers, entry.to_text())


def job_key(entry: CacheTo, keep_duration: Optional[float], keep_bytes: Optional[int]) -> SettledKey:
    return (entry.to_text(), keep_duration, keep_bytes)


class _Retry(Exception):
    """The ref moved (or our manifest was replaced without our entries): merge again."""


class _EntryExport:
    """One export to one entry (all attempts)."""

    def __init__(
        self,
        exporter: CacheExporter,
        entry: CacheTo,
        target: ImageTarget,
        keep_duration: Optional[float],
        keep_bytes: Optional[int],
    ) -> None:
        self.exporter = exporter
        self.entry = entry
        self.target = target
        self.reference = manifest_reference(target)
        self.keep_duration = keep_duration if keep_duration is not None else entry.keep_duration
        self.keep_bytes = keep_bytes if keep_bytes is not None else entry.keep_bytes
        self.store = exporter.store
        self.work = exporter.work_dir / work_dir_name()
        self.packed: Dict[Digest, Tuple[LayerRecord, int, int, int]] = {}
        """Blobs packed (and uploaded) by an earlier attempt: layer, offset, length, tar offset."""
        self.present_layers: Set[str] = set()
        self.uploaded_bytes = 0
        self.uploaded_layers = 0
        self.pruned = PruneOutcome()
        self.left_out = 0
        self.prune_only = exporter.store is None
        self.key = job_key(entry, keep_duration, keep_bytes)

    def run(self) -> ExportTargetReport:
        started = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            collected = collect_exportable(
                self.store,
                self.entry,
                marker=self.exporter.markers.get(self.entry.to_text()) if self.exporter.markers else None,
                usage=self.exporter.usage,
                fetcher=self.exporter.fetcher,
                now=int(self.exporter.settings.clock()),
            )
            published = self._settled_and_unchanged(collected)
            for attempt in range(1, self.exporter.settings.max_attempts + 1):
                if published is not None:
                    break
                try:
                    published = self._attempt(collected)
                    break
                except _Retry as reason:
                    logger.info(
                        "export to %s: %s; merging again (attempt %d)", self.entry.to_text(), reason, attempt + 1
                    )
                    time.sleep(random.uniform(0.05, 0.3) * attempt)
            if published is None:
                raise ExportError(
                    f"{self.target.describe()}: the ref kept changing under concurrent exports; gave up after "
                    f"{self.exporter.settings.max_attempts} attempts"
                )
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
        if collected.end_marker is not None and self.exporter.markers is not None:
            self.exporter.markers.set(self.entry.to_text(), collected.end_marker)
        seconds = time.monotonic() - started
        if published.message == UNCHANGED_MESSAGE:
            logger.info(
                "export to %s: %s (%s) in %.2fs", self.entry.to_text(), published.message, published.digest, seconds
            )
        else:
            logger.info(
                "exported to %s: %s (%d actions, %d blobs, %d layers; %d bytes in %d new layers) in %.2fs",
                self.entry.to_text(),
                published.digest,
                published.actions,
                published.blobs,
                published.layers,
                self.uploaded_bytes,
                self.uploaded_layers,
                seconds,
            )
        return ExportTargetReport(
            entry=self.entry.to_text(),
            ok=True,
            message=published.message,
            entries=published.actions,
            bytes_uploaded=self.uploaded_bytes,
            layers_uploaded=self.uploaded_layers,
            layers_reused=max(0, published.layers - self.uploaded_layers),
            manifest_digest=published.digest,
        )

    # ---- one attempt ------------------------------------------------------------------

    def _attempt(self, collected: Collected) -> _Published:
        base_manifest = self.target.get_manifest(self.reference)
        base = self._load_base(base_manifest)
        if self.prune_only and base is None:
            raise ExportError(f"{self.target.describe()}: no cache image at {self.reference} to prune")
        now = int(self.exporter.settings.clock())
        with cyclic_gc_paused():  # a large image's plan: many objects, all kept
            plan = self._merge(base, collected, now)
        self._prune(plan, now)
        self._pack_pending(plan, collected)
        rewritten = self._compact(plan, collected)
        plan.drop_unreferenced_layers()
        if self.prune_only and base is not None and not rewritten and not self.pruned.changed:
            counts = (len(plan.actions), len(plan.blobs), len(plan.layer_order))
            return _Published(base.digest, counts[0], counts[1], counts[2], "nothing to prune; the image is unchanged")
        with cyclic_gc_paused():
            unchanged = self._unchanged(plan, base, rewritten)
        if unchanged:
            assert base is not None
            self.exporter.settled[self.key] = settled_from_plan(base.digest, plan)
            counts = (len(plan.actions), len(plan.blobs), len(plan.layer_order))
            return _Published(base.digest, counts[0], counts[1], counts[2], UNCHANGED_MESSAGE)
        self.exporter.settled.pop(self.key, None)
        self._ensure_layers_present(plan)
        with cyclic_gc_paused():
            media_type, manifest, counts = self._publish_parts(plan, now)
        expected = base_manifest.digest if base_manifest is not None else None
        check_started = time.monotonic()
        current = self.target.head_manifest(self.reference)
        if current != expected:
            raise _Retry(f"the ref moved from {expected} to {current}")
        digest = self.target.put_manifest(self.reference, media_type, manifest)
        window = time.monotonic() - check_started
        ours = [a.action for a in collected.actions if a.action in plan.actions]
        self._confirm(digest, ours, window)
        message = self._message(base, counts)
        return _Published(digest, counts[0], counts[1], counts[2], message)

    def _settled_and_unchanged(self, collected: Collected) -> Optional[_Published]:
        """The quick "unchanged" (unchanged_export.py), or None: take the full path."""
        settled = self.exporter.settled.get(self.key)
        if settled is None or self.prune_only:
            return None
        manifest = self.target.get_manifest(self.reference)
        if manifest is None or manifest.digest != settled.digest:
            return None
        base = self._load_base(manifest)
        now = int(self.exporter.settings.clock())
        if base is None or not nothing_to_publish(settled, base, collected, self.entry, self.keep_duration, now):
            return None
        index = base.index
        return _Published(base.digest, index.action_count, index.blob_count, len(base.layers), UNCHANGED_MESSAGE)

    def _unchanged(self, plan: ImagePlan, base: Optional[LoadedImage], rewritten: int) -> bool:
        """Whether the image at the ref already is what this export would write (but for
        last_used times that are not stale yet): then the ref is left as it is."""
        if self.prune_only or base is None or rewritten or self.pruned.changed or self.uploaded_layers:
            return False
        return plan_matches_image(plan, base, self.entry, last_used_granularity(self.keep_duration))

    def _load_base(self, manifest: Optional[object]) -> Optional[LoadedImage]:
        if manifest is None:
            return None
        imported = self._imported_copy(manifest)
        if imported is not None:
            return imported
        try:
            return load_cache_image(self.target, self.reference, manifest=manifest)  # type: ignore[arg-type]
        except (NotACacheImageError, NewerFormatError) as error:
            raise ExportError(f"refusing to overwrite the ref: {error}") from None
        except UnverifiedImagePartError as error:  # maybe only damaged on the way: keep its entries
            raise ExportError(f"cannot read the image at the ref, so not replacing it: {error}") from None
        except CorruptCacheImageError as error:
            logger.warning(
                "export to %s: the image at the ref is broken and is replaced: %s", self.entry.to_text(), error
            )
            return None
        except CacheImageNotFoundError:
            return None

    def _imported_copy(self, manifest: object) -> Optional[LoadedImage]:
        """The image at the ref as the import already loaded it, when its manifest is the
        same (same digest: same config and index): no second read of config and index."""
        imports = self.exporter.imports
        digest = getattr(manifest, "digest", None)
        if imports is None or not digest:
            return None
        for image in imports.images():
            if image.loaded.digest == digest and image.loaded.manifest.data == getattr(manifest, "data", None):
                return replace(image.loaded, location=self.target.describe(), reference=self.reference)
        return None

    # ---- merge ------------------------------------------------------------------------

    def _merge(self, base: Optional[LoadedImage], collected: Collected, now: int) -> ImagePlan:
        min_only = self.entry.mode == MODE_MIN
        if base is not None:
            unknown = base.created_unix or now
            plan = ImagePlan.from_image(base, self.target, min_only=min_only, unknown_time=unknown)
            self.present_layers.update(plan.layers)
        else:
            plan = ImagePlan()
        self.left_out = 0
        for item in collected.actions:
            item = self._keep_equivalent_result(plan, item, collected)
            flag = item.exit_code == 0
            if not all(self._resolve_blob(plan, d, item.used_at, flag, collected) for d in item.needed):
                self.left_out += 1
                continue
            existing = plan.actions.get(item.action)
            created = existing.created if existing is not None and existing.created else item.used_at
            last_used = max(item.used_at, existing.last_used if existing is not None else 0)
            plan.actions[item.action] = ActionEntry(item.action, item.result, item.exit_code, created, last_used, flag)
        # mode=max: every local blob, Commands holding a secret as records (secret_commands.py)
        self.exporter.secret_commands.add_local_blobs(plan, collected, self.store, self.entry)
        if self.left_out:
            logger.warning(
                "export to %s: %d action(s) left out: some of their blobs are neither local nor in an imported image",
                self.entry.to_text(),
                self.left_out,
            )
        return plan

    def _keep_equivalent_result(self, plan: ImagePlan, item: CollectedAction, collected: Collected) -> CollectedAction:
        """`item` with the image's result instead of its own when the two differ only in
        execution_metadata (result_equivalence.py): such a result is not new."""
        existing = plan.actions.get(item.action)
        if existing is None or existing.result == item.result or existing.exit_code != item.exit_code:
            return item
        ours = collected.results.get(item.result)
        theirs = self._result_bytes(existing.result)
        if ours is None or theirs is None or not same_but_execution_metadata(ours, theirs):
            return item
        needed = (existing.result,) + tuple(d for d in item.needed if d != item.result)
        return replace(item, result=existing.result, needed=needed)

    def _result_bytes(self, digest: Digest) -> Optional[bytes]:
        """The bytes of an ActionResult blob of the image: local (a hit stored it), else fetched."""
        store = self.store
        try:
            if store is not None and store.contains(digest):  # type: ignore[attr-defined]
                return store.read_bytes(digest)  # type: ignore[attr-defined]
            fetcher = self.exporter.fetcher
            if fetcher is not None and not fetcher.ensure_local([digest]) and store is not None:
                return store.read_bytes(digest)  # type: ignore[attr-defined]
        except CacheError:
            return None
        return None

    def _resolve_blob(self, plan: ImagePlan, digest: Digest, used_at: int, flag: bool, collected: Collected) -> bool:
        if plan.touch_blob(digest, used_at, flag):
            return True
        packed = self.packed.get(digest)
        if packed is not None:
            layer, offset, length, tar_offset = packed
            plan.add_layer(layer)
            plan.blobs[digest] = BlobRecord(layer.digest, offset, length, tar_offset, flag, used_at)
            return True
        store = self.store
        if digest in collected.results:
            plan.add_pending(digest, used_at, flag)
            return True
        # A blob an imported image holds is carried by reference when its layer can be made
        # present without sending bytes, even when a copy is local (a hit or the hot-set
        # prefetch fetched it): carrying costs no upload.
        imports = self.exporter.imports
        located = imports.locate_blob(digest) if imports is not None else None
        if located is not None and self._can_carry(located[0].target):
            image, entry = located
            descriptor = image.loaded.layers[entry.layer]
            layer = LayerRecord(descriptor, image.compression(entry.layer), ORIGIN_IMPORTED, home=image.target)
            plan.add_blob_from(digest, entry, plan.layers.get(descriptor.digest) or layer, used_at, flag)
            return True
        if store is not None and store.contains(digest):  # type: ignore[attr-defined]
            plan.add_pending(digest, used_at, flag)
            return True
        if located is None:
            return False
        fetcher = self.exporter.fetcher
        if fetcher is not None and not fetcher.ensure_local([digest]):
            plan.add_pending(digest, used_at, flag)
            return True
        return False

    def _can_carry(self, home: ImageTarget) -> bool:
        """Whether a layer of `home` can be made present in our target without sending bytes."""
        ours = registry_repository(self.target)
        theirs = registry_repository(home)
        if ours is not None and theirs is not None:
            return ours[0] == theirs[0]
        our_location, their_location = self.target.location, home.location
        if isinstance(our_location, LayoutLocation) and isinstance(their_location, LayoutLocation):
            return os.path.realpath(str(our_location.path)) == os.path.realpath(str(their_location.path))
        return False

    # ---- prune ------------------------------------------------------------------------

    def _prune(self, plan: ImagePlan, now: int) -> None:
        if self.keep_duration is not None:
            self.pruned.add(prune_by_duration(plan, self.keep_duration, now))
        if self.keep_bytes is not None:
            self.pruned.add(prune_by_bytes(plan, self.keep_bytes))

    # ---- layers -----------------------------------------------------------------------

    def _packer(self) -> LayerPacker:
        return LayerPacker(
            self.target,
            str(self.work),
            self.entry.compression,
            self.entry.compression_level,
            max_layer_bytes=self.exporter.settings.max_layer_bytes,
        )

    def _pack(
        self, plan: ImagePlan, digests: List[Digest], resolver: BlobSourceResolver, collected: Collected
    ) -> Set[Digest]:
        """Packs `digests` (pending in `plan`) into new layers; returns the ones left out."""
        if not digests:
            return set()

        def source(digest: Digest) -> Optional[object]:
            data = collected.results.get(digest)
            return data if data is not None else resolver.resolve(digest)

        packer = self._packer()
        try:
            for written in packer.pack(digests, source):  # type: ignore[arg-type]
                record = plan.place_written_layer(written, oci_mediatypes=self.entry.oci_mediatypes)
                for layer_entry in written.entries:
                    self.packed[layer_entry.digest] = (
                        record,
                        layer_entry.compressed_offset,
                        layer_entry.compressed_length,
                        layer_entry.tar_offset,
                    )
            packer.finish()
        finally:
            packer.close()
        self.uploaded_bytes += packer.uploaded_bytes
        self.uploaded_layers += packer.uploaded_layers
        return packer.skipped

    def _pack_pending(self, plan: ImagePlan, collected: Collected) -> None:
        resolver = BlobSourceResolver(self.store, str(self.work))
        skipped = self._pack(plan, in_use_order(plan.pending_blobs(), collected.actions), resolver, collected)
        if skipped:
            self._drop_blobs_and_dependents(plan, skipped, collected)

    def _drop_blobs_and_dependents(self, plan: ImagePlan, gone: Set[Digest], collected: Collected) -> None:
        plan.drop_blobs(gone)
        dependents = [a.action for a in collected.actions if any(d in gone for d in a.needed)]
        plan.drop_actions(dependents)
        logger.warning(
            "export to %s: %d blob(s) could not be read, %d action(s) left out",
            self.entry.to_text(),
            len(gone),
            len(dependents),
        )

    def _compact(self, plan: ImagePlan, collected: Collected) -> int:
        """Rewrites the layers compaction.py chooses; how many."""
        chosen = choose_layers_to_rewrite(
            plan,
            compression=self.entry.compression,
            force_compression=self.entry.force_compression,
            keep_bytes=self.keep_bytes,
            max_layer_bytes=self.exporter.settings.max_layer_bytes,
        )
        if not chosen:
            return 0
        resolver = BlobSourceResolver(self.store, str(self.work))
        rewrite: List[Digest] = []
        lost: Set[Digest] = set()
        for layer_digest in chosen:
            record = plan.layers[layer_digest]
            live = plan.blobs_in_layer(layer_digest)
            store = self.store
            remote = {d for d in live if d not in collected.results and not (store is not None and store.contains(d))}
            if remote:
                found, error = spool_live_blobs(record, remote, str(self.work))
                resolver.spooled.update(found)
                missing = remote - set(found)
                if missing:
                    logger.warning(
                        "export to %s: %d blob(s) of layer %s could not be read (%s); dropped",
                        self.entry.to_text(),
                        len(missing),
                        layer_digest,
                        error,
                    )
                    lost.update(missing)
            for digest in live:
                if digest not in lost:
                    plan.blobs[digest].layer = None
                    rewrite.append(digest)
        if lost:
            self._drop_blobs_and_dependents(plan, lost, collected)
        skipped = self._pack(plan, in_use_order(rewrite, collected.actions), resolver, collected)
        if skipped:
            self._drop_blobs_and_dependents(plan, skipped, collected)
        logger.info("export to %s: rewrote %d layer(s) (%d blobs)", self.entry.to_text(), len(chosen), len(rewrite))
        return len(chosen)

    def _ensure_layers_present(self, plan: ImagePlan) -> None:
        for digest in plan.layer_order:
            record = plan.layers[digest]
            if record.origin == ORIGIN_NEW or digest in self.present_layers:
                continue
            self._ensure_present(record)
            self.present_layers.add(digest)

    def _ensure_present(self, record: LayerRecord) -> None:
        """A carried layer: present already, mounted, or (fallback) copied."""
        layer = record.descriptor.as_digest
        if self.target.blob_exists(layer) is not None:
            return
        theirs = registry_repository(record.home) if record.home is not None else None
        if theirs is not None and self.target.mount_blob(layer, theirs[1]):
            return
        if record.home is None:
            raise ExportError(f"layer {record.digest} is missing and has no source")
        path = self.work / f"copy-{layer.hash[:16]}"
        with record.home.open_blob_stream(layer) as stream, open(path, "wb") as out:
            for chunk in stream:
                out.write(chunk)
        outcome = self.target.push_blob(layer, str(path))
        if outcome is PushOutcome.UPLOADED:
            self.uploaded_bytes += layer.size_bytes
        os.unlink(path)

    # ---- publish ----------------------------------------------------------------------

    def _publish_parts(self, plan: ImagePlan, now: int) -> Tuple[str, bytes, Tuple[int, int, int]]:
        layers, blobs, actions = plan.index_entries()
        oci = self.entry.oci_mediatypes
        descriptors = tuple(with_media_types(record.descriptor, oci_mediatypes=oci) for record in layers)
        index_blob = encode_index(
            [d.as_digest for d in descriptors], blobs, actions, command_records=plan.command_record_entries()
        )
        index_layer, index_descriptor = build_index_layer(index_blob, oci_mediatypes=oci)
        created = format_timestamp(now)
        config = CacheConfig(
            created=created,
            mode=self.entry.mode,
            compression=self.entry.compression,
            index=index_descriptor,
            layer_count=len(descriptors),
            blob_count=len(blobs),
            action_count=len(actions),
            blob_bytes=sum(entry.digest.size_bytes for entry in blobs),
        )
        config_bytes = config.to_bytes()
        config_descriptor = config.descriptor()
        manifest, media_type = build_manifest(
            CacheImage(config_descriptor, descriptors, index_descriptor),
            created=created,
            oci_mediatypes=oci,
            image_manifest=self.entry.image_manifest,
        )
        for descriptor, data in ((index_descriptor, index_layer), (config_descriptor, config_bytes)):
            if self.target.push_blob(descriptor.as_digest, data) is PushOutcome.UPLOADED:
                self.uploaded_bytes += len(data)
        return media_type, manifest, (len(actions), len(blobs), len(descriptors))

    def _confirm(self, digest: str, ours: List[Digest], window: float) -> None:
        """After our PUT: wait past any other writer's HEAD-to-PUT window, then make
        sure the image at the ref (ours, or one merged on top of it) has our actions."""
        delay = self.exporter.settings.confirm_delay
        if delay is None:
            floor = MIN_CONFIRM_DELAY_REGISTRY if registry_repository(self.target) else MIN_CONFIRM_DELAY_LAYOUT
            delay = min(MAX_CONFIRM_DELAY, max(floor, 3 * window))
        if delay > 0:
            time.sleep(delay)
        current = self.target.head_manifest(self.reference)
        if current == digest:
            return
        if current is None:
            raise _Retry("the ref disappeared right after our export")
        try:
            image = load_cache_image(self.target, self.reference)
        except CacheError as error:
            raise _Retry(f"another writer's image replaced ours and cannot be read ({error})") from None
        missing = [action for action in ours if image.index.find_action(action) is None]
        if missing:
            raise _Retry(f"another writer replaced our image without {len(missing)} of our actions")

    def _message(self, base: Optional[LoadedImage], counts: Tuple[int, int, int]) -> str:
        parts = [f"{counts[0]} actions, {counts[1]} blobs in {counts[2]} layers"]
        parts.append(f"merged with {base.digest}" if base is not None else "new image")
        if self.pruned.actions_dropped or self.pruned.blobs_dropped:
            parts.append(f"pruned {self.pruned.actions_dropped} actions, {self.pruned.blobs_dropped} blobs")
        if self.left_out:
            parts.append(f"{self.left_out} actions left out (blobs unavailable)")
        return "; ".join(parts)


def prune_cache_image(
    target: ImageTarget,
    *,
    keep_duration: Optional[float] = None,
    keep_bytes: Optional[int] = None,
    entry: Optional[CacheTo] = None,
    work_dir: Optional[Path] = None,
    now: Optional[float] = None,
) -> ExportTargetReport:
    """Rewrites the image at the target's tag under keep-duration / keep-bytes,
    keeping its mode, compression and media types (or those of `entry`). Merges and
    retries like an export; the tag moves only if the rewrite succeeded."""
    if entry is None:
        entry = _entry_like(target)
    clock = (lambda: float(now)) if now is not None else time.time
    directory = work_dir or Path(tempfile.mkdtemp(prefix="oci-cache-prune-"))
    try:
        exporter = CacheExporter.pruning(directory, clock=clock)
        return exporter.export_entry(entry, target, keep_duration=keep_duration, keep_bytes=keep_bytes)
    finally:
        if work_dir is None:
            shutil.rmtree(directory, ignore_errors=True)


def _entry_like(target: ImageTarget) -> CacheTo:
    """A cache-to entry that rewrites the target's image as it is."""
    try:
        image = load_cache_image(target)
    except CacheImageNotFoundError:
        image = None
    location = target.location
    if isinstance(location, RegistryLocation):
        base = CacheTo(type=TYPE_REGISTRY, ref=str(location.reference))
    else:
        base = CacheTo(type=TYPE_LOCAL, dest=str(location.path), tag=target.tag)
    if image is None:
        return base
    return replace(
        base,
        mode=image.config.mode if image.config.mode in (MODE_MIN, MODE_MAX) else MODE_MAX,
        compression=image.config.compression,
        oci_mediatypes=image.parsed.oci_mediatypes,
        image_manifest=image.parsed.image_manifest,
    )


# ---- scratch directories ------------------------------------------------------------
# An export spools its new layers under WORK/tmp-<pid>-<random>/ and removes that directory
# when it ends. A process killed mid-export (kill -9, OOM, power off) cannot, so without
# this every crashed export would leave its layers on disk for good. `remove_stale_work_dirs`
# deletes every such directory whose process is gone (and ones named before the pid was
# part of the name); directories of live processes, such as other exporters sharing WORK,
# are left alone.

_WORK_DIR_PREFIX = "tmp-"
_WORK_DIR_WITH_PID = re.compile(r"tmp-(\d+)-[0-9a-f]+")


def work_dir_name() -> str:
    """A new scratch directory name for this process: tmp-<pid>-<random>."""
    return f"{_WORK_DIR_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_work_dirs(directory: Path) -> List[str]:
    """Removes scratch directories of processes that are gone; their names."""
    removed: List[str] = []
    try:
        candidates = [path for path in Path(directory).iterdir() if path.name.startswith(_WORK_DIR_PREFIX) and path.is_dir()]
    except OSError:
        return removed
    for path in candidates:
        match = _WORK_DIR_WITH_PID.fullmatch(path.name)
        if match is not None and _process_alive(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    if removed:
        logger.info("removed %d scratch directories of interrupted exports in %s", len(removed), directory)
    return removed


# ---- the cyclic garbage collector, paused while the plan is built ---------------------
# Building the plan of a large cache image creates hundreds of thousands of small objects
# that all stay alive; each of the collector's passes over the growing heap finds nothing
# to free and costs a good part of the time (docs/performance.md has the measurement).
# Reference counting still frees everything as usual while paused; only the search for
# reference cycles waits until the block ends.

@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Disables the cyclic collector for the block (re-enabled after it if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["CacheExporter", "UNCHANGED_MESSAGE", "prune_cache_image"]
