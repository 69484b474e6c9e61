"""How `oci-cache serve` records misses: one call that builds the recorder for a state
directory and the serving stack's blob store and candidate sources.

    recorder = open_miss_recorder(state_dir, blobs, sources, key_file=None, extra_secret_names=())
    runtime = DaemonRuntime(..., miss_recorder=recorder)

The masking key is the one mode=max exports use (STATE_DIR/secret-masking.key unless
another file is configured), read on first need; when it cannot be read or created,
a key for this process only is used (masks then compare within this daemon only).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from oci_cache.explain.candidates import CandidateLoader, ExplainSources
from oci_cache.explain.recorder import MissRecorder
from oci_cache.secret_masking.masked_values import MASKING_KEY_FILE, MaskingKey, load_or_create_masking_key
from oci_cache.store.interfaces import BlobStore

logger = logging.getLogger(__name__)


def open_miss_recorder(
    state_dir: Path,
    blobs: BlobStore,
    sources: ExplainSources,
    *,
    key_file: Optional[Path] = None,
    extra_secret_names: Iterable[str] = (),
) -> MissRecorder:
    key = _lazy_key(Path(key_file) if key_file else Path(state_dir) / MASKING_KEY_FILE)
    return MissRecorder(state_dir, CandidateLoader(blobs, sources, key, tuple(extra_secret_names)))


def _lazy_key(path: Path) -> Callable[[], MaskingKey]:
    lock = threading.Lock()
    made: List[MaskingKey] = []

    def key() -> MaskingKey:
        with lock:
            if not made:
                try:
                    made.append(load_or_create_masking_key(path))
                except (OSError, ValueError) as error:
                    logger.warning("explain: masking key %s not usable (%s); masks compare within this daemon only", path, error)
                    made.append(MaskingKey.random(ephemeral=True))
            return made[0]

    return key


__all__ = ["open_miss_recorder"]
