"""Imports the cache-from images into an ImportSet, and keeps them current.

    importer = CacheImporter(entries, import_set)
    importer.start()        # background: import every entry, then re-check every 60 s
    ...
    importer.close()

Importing an entry reads its manifest, config and index (load_cache_image) — never
a data layer. Any failure (a missing ref, an unreachable registry, a denied
request, a corrupt image, a newer major format) is ONE warning naming the entry,
and that entry contributes nothing: the cache is empty, never the build broken.
Registry requests use a short retry budget so that start-up stays bounded.

An entry that has no image yet is tried again sooner (FAILED_IMPORT_RETRY_SECONDS,
doubling). Re-checks are cheap: one manifest HEAD per entry (registries do not count HEADs
as pulls); only an entry whose digest changed is loaded again. A failing re-check
keeps the image already imported (its blobs are content-addressed and still
verified on every fetch).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from oci_cache.cache_entries import CacheFrom
from oci_cache.cache_image.entry_targets import IMPORT_RETRY, open_entry_target
from oci_cache.cache_image.errors import CacheImageNotFoundError, NewerFormatError
from oci_cache.cache_image.importing.early_manifests import EarlyManifests
from oci_cache.cache_image.importing.imported_images import ImportedImage, ImportSet
from oci_cache.cache_image.loaded_image import load_cache_image, manifest_reference
from oci_cache.errors import CacheError
from oci_cache.oci.target import ImageTarget, Manifest

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 60.0
FAILED_IMPORT_RETRY_SECONDS = 5.0
"""An entry without an image (its import failed, or nothing is there yet) is tried again
after 5 s, then 10, 20, … up to the refresh interval: one damaged answer at start-up
does not leave the cache empty for a whole minute."""

TargetOpener = Callable[[CacheFrom], ImageTarget]


@dataclass(frozen=True)
class ImportState:
    """What a cache-from entry's last import (or re-check) got (GetStatus shows it)."""

    entry: str
    manifest_digest: str = ""
    """The image imported, "" when none."""
    problem: str = ""
    """The warning of the last attempt, "" when it went well."""
    missing: bool = False
    """The ref holds no image yet (before the first export: not a failure)."""


def _default_opener(entry: CacheFrom) -> ImageTarget:
    return open_entry_target(entry, retry=IMPORT_RETRY)


class CacheImporter:
    def __init__(
        self,
        entries: Sequence[CacheFrom],
        import_set: ImportSet,
        *,
        open_target: TargetOpener = _default_opener,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        failed_retry_seconds: float = FAILED_IMPORT_RETRY_SECONDS,
        early: Optional[EarlyManifests] = None,
    ) -> None:
        """`early`: the entries' targets and manifests, already being read
        (early_manifests.py); the first import of each entry starts from them."""
        self.entries = list(entries)
        self._early = early
        self.import_set = import_set
        self._open_target = open_target
        self._refresh_seconds = refresh_seconds
        self._failed_retry_seconds = failed_retry_seconds
        self._targets: List[Optional[ImageTarget]] = [None] * len(self.entries)
        self._warned: List[str] = [""] * len(self.entries)
        self._states: List[Optional[ImportState]] = [None] * len(self.entries)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.last_import_seconds = 0.0

    # ---- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Imports in the background (lookups meanwhile wait briefly, then miss)."""
        self._thread = threading.Thread(target=self._run, name="cache-import", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._early is not None:
            self._early.close()
        for target in self._targets:
            if target is not None:
                try:
                    target.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass

    def _run(self) -> None:
        try:
            self.import_all()
        finally:
            self.import_set.mark_ready()
        retry_delay = self._failed_retry_seconds
        while self._refresh_seconds > 0:
            wait = self._refresh_seconds
            if self._some_entry_lacks_an_image():  # a failed import is tried again sooner
                wait, retry_delay = min(wait, retry_delay), retry_delay * 2
            else:
                retry_delay = self._failed_retry_seconds
            if self._stop.wait(wait):
                break
            self.refresh()

    def _some_entry_lacks_an_image(self) -> bool:
        return any(self._current_image(position) is None for position in range(len(self.entries)))

    # ---- importing ----------------------------------------------------------------

    def import_all(self) -> None:
        """Imports every entry now (in order); marks the ImportSet ready."""
        started = time.monotonic()
        for position in range(len(self.entries)):
            if self._stop.is_set():
                break
            self._import(position, known_digest=None)
        self.last_import_seconds = time.monotonic() - started
        self.import_set.mark_ready()

    def refresh(self) -> int:
        """Re-checks every entry's manifest digest (HEAD); re-imports the changed
        ones. Returns how many were (re)imported."""
        changed = 0
        for position in range(len(self.entries)):
            if self._stop.is_set():
                break
            current = self._current_image(position)
            if self._import(position, known_digest=current.digest if current is not None else None):
                changed += 1
        return changed

    def _current_image(self, position: int) -> Optional[ImportedImage]:
        for image in self.import_set.images():
            if image.entry_text == self._entry_text(position):
                return image
        return None

    def _entry_text(self, position: int) -> str:
        return f"#{position + 1} {self.entries[position].to_text()}"

    def _import(self, position: int, known_digest: Optional[str]) -> bool:
        entry = self.entries[position]
        text = self._entry_text(position)
        try:
            manifest = self._early_manifest(position) if known_digest is None else None
            target = self._target(position)
            if known_digest is not None:
                digest = target.head_manifest(manifest_reference(target))
                if digest is None or digest == known_digest:
                    return False  # unchanged (or gone: keep what we have)
            started = time.monotonic()
            loaded = load_cache_image(target, manifest=manifest)
        except (CacheError, OSError, ValueError) as error:
            self._warn(position, entry, error, keeping=known_digest is not None)
            return False
        except Exception as error:  # noqa: BLE001 - a bug here must not end the import thread
            logger.debug("cache-from %s: unexpected error", entry.to_text(), exc_info=True)
            self._warn(position, entry, RuntimeError(f"unexpected {type(error).__name__}: {error}"), keeping=known_digest is not None)
            return False
        self.import_set.set_image(position, ImportedImage(text, target, loaded, prefetch_bytes=entry.prefetch_bytes))
        self._warned[position] = ""
        self._states[position] = ImportState(entry.to_text(), loaded.digest)
        logger.info(
            "cache-from %s: imported %s (%d blobs, %d actions, %d bytes of index) in %.2fs",
            entry.to_text(),
            loaded.digest,
            loaded.index.blob_count,
            loaded.index.action_count,
            loaded.bytes_read,
            time.monotonic() - started,
        )
        return True

    def _early_manifest(self, position: int) -> Optional[Manifest]:
        """The manifest the early read got for this entry (its target becomes this
        importer's), once; None when there was none, or it failed (then read again)."""
        if self._early is None:
            return None
        target, manifest = self._early.take(position)
        if target is not None:
            with self._lock:
                if self._targets[position] is None:
                    self._targets[position] = target
                    return manifest
            target.close()
        return None

    def _target(self, position: int) -> ImageTarget:
        with self._lock:
            target = self._targets[position]
            if target is None:
                target = self._open_target(self.entries[position])
                self._targets[position] = target
            return target

    def states(self) -> List[ImportState]:
        """One per entry attempted so far, in order."""
        return [state for state in self._states if state is not None]

    def _warn(self, position: int, entry: CacheFrom, error: Exception, keeping: bool) -> None:
        message = str(error)
        previous = self._states[position]
        self._states[position] = ImportState(
            entry.to_text(),
            previous.manifest_digest if keeping and previous is not None else "",
            message,
            isinstance(error, CacheImageNotFoundError),
        )
        if self._warned[position] == message:
            return  # one warning per distinct problem, not one per re-check
        self._warned[position] = message
        if isinstance(error, CacheImageNotFoundError):
            what = "nothing to import yet"
        elif isinstance(error, NewerFormatError):
            what = "written by a newer pants-oci-cache; treated as a miss"
        else:
            what = "cannot import it"
        then = "keeping the image imported before" if keeping else "continuing without it (an empty cache)"
        logger.warning("cache-from %s: %s: %s; %s", entry.to_text(), what, message, then)


__all__ = ["CacheImporter", "DEFAULT_REFRESH_SECONDS", "ImportState"]
