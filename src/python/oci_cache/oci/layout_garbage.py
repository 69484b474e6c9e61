"""Removing the blobs of an OCI image layout that nothing references any more.

Every export that publishes writes a new manifest, config and index layer, and
compaction or pruning drops old data layers; in a registry the superseded ones are
the registry's garbage collection to remove (docs/ci.md), but a layout (the
embedded default cache in the state dir) has nobody else to do it. So after a tag
moves, the layout's writer removes the blobs that no manifest reachable from
index.json references and that have been unreferenced for a grace period.

The grace period protects readers and concurrent writers:
- a reader that imported the previous image may still Range-read its layers; the
  blobs a tag stops naming are touched (mtime set to now) just before it moves, and
  importers look for a new manifest every 60 s, far less than the grace;
- a concurrent export may have written layers that no manifest names yet: they are
  new, and one that finds a blob already present touches it (OciLayoutTarget).

When anything reachable cannot be read or is of a kind whose references are not
known here, nothing is removed: garbage is left rather than risk a live blob.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Optional, Set, Tuple

from oci_cache.oci.media_types import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

logger = logging.getLogger(__name__)

GARBAGE_GRACE_SECONDS = 3600.0
"""How long a blob stays after nothing references it (or after it was written)."""
MAX_WALKED_MANIFEST_BYTES = 16 << 20
_INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
_HEX = frozenset("0123456789abcdef")


class UnknownReferencesError(Exception):
    """A reachable manifest cannot be read, or its kind is not known here."""


@dataclass
class GarbageReport:
    removed_blobs: int = 0
    removed_bytes: int = 0
    skipped_because: Optional[str] = None


def reachable_blobs(blobs_dir: Path, roots: Iterable[Any]) -> Set[str]:
    """The sha256 hexes reachable from `roots` (index.json descriptors): the manifests
    and, through them, their configs, layers, subjects and child manifests."""
    seen: Set[str] = set()
    pending: List[Tuple[Any, bool]] = [(descriptor, True) for descriptor in roots]  # (descriptor, is a manifest)
    while pending:
        descriptor, is_manifest = pending.pop()
        hex_digest = _sha256_hex(descriptor)
        if hex_digest is None or hex_digest in seen:
            continue
        seen.add(hex_digest)
        if not is_manifest:
            continue  # a config or layer: references nothing
        document = _read_manifest(blobs_dir / hex_digest, hex_digest)
        kind = document.get("mediaType") or descriptor.get("mediaType")
        if kind is None:
            kind = OCI_INDEX if "manifests" in document else OCI_MANIFEST
        if kind in _INDEX_TYPES:
            pending.extend((child, True) for child in _descriptors(document.get("manifests"), hex_digest))
        elif kind in _MANIFEST_TYPES:
            config = document.get("config")
            pending.extend((blob, False) for blob in _descriptors(None if config is None else [config], hex_digest))
            pending.extend((blob, False) for blob in _descriptors(document.get("layers"), hex_digest))
        else:
            raise UnknownReferencesError(f"manifest {hex_digest[:12]} has media type {kind!r}")
        if document.get("subject") is not None:
            pending.extend((subject, True) for subject in _descriptors([document.get("subject")], hex_digest))
    return seen


def touch_blobs(blobs_dir: Path, hexes: Iterable[str], now: Optional[float] = None) -> None:
    """Marks blobs as just used (mtime): the grace period starts again for them."""
    stamp = time.time() if now is None else now
    for hex_digest in hexes:
        with contextlib.suppress(OSError):
            os.utime(blobs_dir / hex_digest, (stamp, stamp))


def collect_garbage(
    blobs_dir: Path, roots: Iterable[Any], grace_seconds: float = GARBAGE_GRACE_SECONDS, now: Optional[float] = None
) -> GarbageReport:
    """Removes blobs not reachable from `roots` whose mtime is older than the grace."""
    report = GarbageReport()
    try:
        live = reachable_blobs(blobs_dir, roots)
    except UnknownReferencesError as error:
        report.skipped_because = str(error)
        logger.debug("layout %s: not removing unreferenced blobs: %s", blobs_dir, error)
        return report
    cutoff = (time.time() if now is None else now) - grace_seconds
    try:
        names = os.listdir(blobs_dir)
    except OSError:
        return report
    for name in names:
        if name in live or len(name) != 64 or not _HEX.issuperset(name):
            continue  # live, or not a blob (temporary files are swept separately)
        path = blobs_dir / name
        with contextlib.suppress(OSError):
            status = path.lstat()
            if status.st_mtime < cutoff:
                path.unlink()
                report.removed_blobs += 1
                report.removed_bytes += status.st_size
    if report.removed_blobs:
        logger.info(
            "layout %s: removed %d unreferenced blobs (%d bytes)", blobs_dir, report.removed_blobs, report.removed_bytes
        )
    return report


def _sha256_hex(descriptor: Any) -> Optional[str]:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        if isinstance(descriptor, dict) and descriptor:
            raise UnknownReferencesError(f"a descriptor names {digest!r}, not a sha256 digest")
        return None
    hex_digest = digest[len("sha256:") :]
    if len(hex_digest) != 64 or not _HEX.issuperset(hex_digest):
        raise UnknownReferencesError(f"a descriptor names {digest!r}, not a sha256 digest")
    return hex_digest


def _descriptors(value: Any, parent: str) -> List[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UnknownReferencesError(f"manifest {parent[:12]} has a malformed descriptor list")
    return value


def _read_manifest(path: Path, hex_digest: str) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_WALKED_MANIFEST_BYTES + 1)
    except OSError as error:
        raise UnknownReferencesError(f"manifest {hex_digest[:12]} cannot be read: {error}") from None
    if len(data) > MAX_WALKED_MANIFEST_BYTES:
        raise UnknownReferencesError(f"manifest {hex_digest[:12]} is over {MAX_WALKED_MANIFEST_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UnknownReferencesError(f"manifest {hex_digest[:12]} is not JSON") from None
    if not isinstance(document, dict):
        raise UnknownReferencesError(f"manifest {hex_digest[:12]} is not a JSON object")
    return document


__all__ = [
    "GARBAGE_GRACE_SECONDS",
    "GarbageReport",
    "UnknownReferencesError",
    "collect_garbage",
    "reachable_blobs",
    "touch_blobs",
]
