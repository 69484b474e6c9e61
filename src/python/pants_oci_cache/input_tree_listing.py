"""The input trees of the run's processes, listed for the daemon (Pants-dependent).

    listed, kept, seconds = send_input_trees(client, context, roots)

For each input root (from the process workunits' definitions, miss_causes.py) the
workunits context asks Pants' engine for its Snapshot (paths, directories) and
DigestContents (Pants 2.17 answers no `DigestEntries` query there, which would give
file digests without reading: the files are read and hashed here, at most
MAX_READ_BYTES a run) and sends the listing — paths and digests, never contents — to the daemon, which
rebuilds and keeps the Directory messages when they hash to the root
(oci_cache.explain.input_trees). Then `oci-cache explain` names changed input files by
path. Only with `[oci-cache] explain_input_trees` on (`auto`: when a cache_to entry is
mode=max), at most MAX_TREES roots a run. A failure is logged at debug and ends it:
the explanation then compares input roots by digest.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Iterable, List, Tuple

from oci_cache.daemon.control_client import ControlClient, ControlError

logger = logging.getLogger(__name__)

MAX_TREES = 2000
MAX_FILES_PER_TREE = 100_000
MAX_FAILURES = 50
MAX_READ_BYTES = 256 << 20
"""Input files read (to hash) per run at most."""


def send_input_trees(client: ControlClient, context: Any, roots: Iterable[Tuple[str, int]]) -> Tuple[int, int, float]:
    """(roots listed, roots the daemon kept, seconds spent)."""
    try:  # read in Pants 2.17's source; a line without them lists no input trees
        from pants.engine.fs import DigestContents, Snapshot
        from pants.engine.internals.native_engine import Digest as PantsDigest
    except ImportError:
        return 0, 0, 0.0

    started = time.monotonic()
    listed = kept = 0
    read_bytes = 0
    failures = 0
    for fingerprint, size in list(dict.fromkeys(roots))[:MAX_TREES]:
        try:
            digest = PantsDigest(fingerprint, size)
            # An input root may exist only in the engine's memory: persisted first (local store).
            context._scheduler.ensure_directory_digest_persisted(digest)
            [snapshot] = context._scheduler.product_request(Snapshot, [digest])
            if len(snapshot.files) > MAX_FILES_PER_TREE:
                continue
            # Pants 2.17 answers DigestContents and Snapshot from a callback (DigestEntries,
            # which would give the file digests without reading, is not queryable there): the
            # files are read and hashed here, and only their digests are sent.
            [contents] = context._scheduler.product_request(DigestContents, [digest])
            files: List[Tuple[str, str, bool]] = []
            for content in contents:
                read_bytes += len(content.content)
                files.append((content.path, f"{hashlib.sha256(content.content).hexdigest()}/{len(content.content)}", content.is_executable))
            directories = list(snapshot.dirs)
            if read_bytes > MAX_READ_BYTES:
                break
            listed += 1
            kept += client.send_input_tree(f"{fingerprint}/{size}", files, directories)
        except (ControlError, Exception) as error:  # noqa: BLE001 - the cache must never fail the build
            logger.debug("oci-cache: input tree %s/%s not sent: %s", fingerprint, size, error)
            failures += 1
            if failures >= MAX_FAILURES:
                break
    return listed, kept, time.monotonic() - started


__all__: List[str] = ["MAX_TREES", "send_input_trees"]
