"""How far each cache-to entry has exported the local action journal.

A marker is LocalStore's journal marker ("<journal id>:<offset>"), stored per
cache-to entry (its credential-free text) in STATE_DIR/export/markers.json and
advanced only after an export to that entry succeeded. A daemon killed before an
export therefore leaves the marker behind its last acknowledged write, and the
next export (by this daemon or the next one on the same state directory) picks
every such write up. No marker means "from the start of the journal".
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Dict, Optional

from oci_cache.store.interfaces import LocalTier

logger = logging.getLogger(__name__)

MARKERS_FILE = "markers.json"


class ExportMarkers:
    def __init__(self, directory: Path) -> None:
        self._path = Path(directory) / MARKERS_FILE
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[str]:
        with self._lock:
            value = self._read().get(key)
        return value if isinstance(value, str) else None

    def set(self, key: str, marker: str) -> None:
        with self._lock:
            markers = self._read()
            markers[key] = marker
            self._write(markers)

    def _read(self) -> Dict[str, object]:
        try:
            document = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            logger.warning(
                "export markers %s unreadable (%s); exporting every journaled write again", self._path, error
            )
            return {}
        return document if isinstance(document, dict) else {}

    def _write(self, markers: Dict[str, object]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temp = self._path.with_name(self._path.name + ".tmp")
        with open(temp, "w", encoding="utf-8") as out:
            json.dump(markers, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self._path)


def pending_entries(store: LocalTier, markers: ExportMarkers, key: str) -> int:
    """Action results `store` acknowledged since the marker of `key`."""
    try:
        return len({write.action_digest for write in store.iter_action_writes_since(markers.get(key))})
    except ValueError:
        return 0


__all__ = ["ExportMarkers", "pending_entries"]
