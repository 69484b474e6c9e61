"""Exporting a state directory's local store with no daemon running
(`oci-cache export --state-dir DIR --cache-to ENTRY`).

DIR is the directory a daemon ran with (`oci-cache serve --state-dir DIR`, or one of
the per-configuration subdirectories the Pants plugin creates): its local store is
DIR/store and the export bookkeeping DIR/export — the same places the daemon uses,
so what this exports is not exported again by the next daemon, and what the daemon
already exported to an entry is not sent again. DIR/daemon.lock is held for the
whole export, so no daemon starts on the store meanwhile.

Commands holding a secret are withheld as the daemon would (cache_image/secret_commands.py):
with the key file and names the daemon recorded in DIR/export/secret-masking.json (else the
key file of DIR, or of the state dir above it), plus each entry's secret-env.

Nothing is imported: with `mode=max` the export holds everything in the store plus
what the image at the ref already holds (the exporter merges with it); with
`mode=min`, the action results written since the entry's last export.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from oci_cache.cache_entries import CacheTo
from oci_cache.cache_image.exporter import CacheExporter
from oci_cache.cache_image.secret_commands import remembered_withholding
from oci_cache.cache_image.serving_stack import EXPORT_DIRECTORY
from oci_cache.daemon.daemon_dir import DAEMON_LOCK_FILE, find_daemon_dirs
from oci_cache.daemon.life_lock import try_lock
from oci_cache.errors import CacheError
from oci_cache.export_report import ExportReport
from oci_cache.store.local_store import LocalStore

STORE_DIRECTORY = "store"
# The store is opened only to be read: no bound, so opening it never evicts anything.
_UNBOUNDED = 1 << 62


class DirectExportError(Exception):
    """The state directory could not be exported at all (not per target)."""


def export_state_dir(
    state_dir: Path, entries: Sequence[CacheTo], on_step: Optional[Callable[[str], None]] = None
) -> ExportReport:
    """Exports DIR/store to every entry, in order; raises DirectExportError when the
    store cannot be used (missing, or a daemon holds it). Per-entry failures are in
    the report."""
    step = on_step or (lambda text: None)
    state_dir = Path(state_dir)
    if not (state_dir / STORE_DIRECTORY).is_dir():
        raise DirectExportError(_no_store_message(state_dir))
    try:
        lock = try_lock(state_dir / DAEMON_LOCK_FILE)
    except OSError as error:
        raise DirectExportError(f"cannot lock {state_dir / DAEMON_LOCK_FILE}: {error}") from None
    if lock is None:
        raise DirectExportError(
            f"a daemon is starting or running in {state_dir}; use `oci-cache export` without --cache-to"
        )
    with lock:
        try:
            store = LocalStore(state_dir / STORE_DIRECTORY, _UNBOUNDED)
        except (CacheError, OSError) as error:
            raise DirectExportError(f"cannot open the local store in {state_dir}: {error}") from None
        try:
            started = time.monotonic()
            withholding = remembered_withholding(state_dir, state_dir / EXPORT_DIRECTORY)
            exporter = CacheExporter(store, state_dir / EXPORT_DIRECTORY, secret_commands=withholding)
            try:
                report = ExportReport()
                for number, entry in enumerate(entries, 1):
                    step(f"exporting to {entry.location} ({number}/{len(entries)})")
                    report.targets.append(exporter.export_entry(entry))
                report.seconds = time.monotonic() - started
            finally:
                exporter.close()
        finally:
            store.close()
    return report


def _no_store_message(state_dir: Path) -> str:
    candidates = [path for path in find_daemon_dirs(state_dir) if (path / STORE_DIRECTORY).is_dir()]
    hint = ""
    if candidates:
        hint = "; daemon directories with a store: " + ", ".join(str(path) for path in candidates[:5])
    return f"no local store in {state_dir} (want {state_dir / STORE_DIRECTORY}){hint}"


__all__: List[str] = ["DirectExportError", "export_state_dir"]
