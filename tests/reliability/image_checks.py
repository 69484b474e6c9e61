"""Checks of what a ref names, for the crash and concurrent-reader tests.

- `check_complete(entry_text, scratch, ledger)`: the ref names a complete,
  importable cache image: manifest, config, index and every data layer exist and
  hash to their digests (each downloaded whole and hashed here), and a fresh
  importer (the serving stack `oci-cache serve --cache-from` builds, on a new state dir)
  reads back every blob and action result in the index — each blob hashes to its
  digest and, when the ledger knows it, equals the acknowledged bytes; each
  acknowledged action result equals what was sent.
- `missing_acked(image, ledger)`: acknowledged blobs and actions the image lacks,
  and actions whose result differs from the acknowledged one.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from oci_cache.cache_entries import parse_cache_from
from oci_cache.cache_image import LoadedImage, load_cache_image, open_entry_target
from oci_cache.cache_image.serving_stack import open_serving_stack
from oci_cache.digests import Digest
from oci_cache.errors import CacheError
from oci_cache.reapi import remote_execution_pb2 as re_pb2

from crash_writers import DigestKey, Ledger

IMPORT_WAIT_SECONDS = 30.0


@dataclass
class ImageFacts:
    digest: str
    blobs: int
    actions: int
    layers: int
    blobs_known: int
    """Blobs whose bytes were compared with acknowledged ones."""
    actions_known: int


def load_ref(entry_text: str) -> Optional[LoadedImage]:
    """The image at the ref, or None when nothing is there (other errors propagate)."""
    from oci_cache.cache_image import CacheImageNotFoundError

    target = open_entry_target(parse_cache_from(entry_text))
    try:
        return load_cache_image(target)
    except CacheImageNotFoundError:
        return None
    finally:
        target.close()


def check_layers(entry_text: str, image: LoadedImage) -> int:
    """Downloads config, index and every data layer; each must hash to its digest."""
    target = open_entry_target(parse_cache_from(entry_text))
    try:
        parts = [image.image.config, *image.image.all_layers]
        for descriptor in parts:
            data = target.read_blob(descriptor.as_digest)
            assert len(data) == descriptor.size, f"{descriptor.digest}: {len(data)} bytes, want {descriptor.size}"
            assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor.digest, f"{descriptor.digest} is corrupt"
        return len(parts)
    finally:
        target.close()


def check_complete(entry_text: str, scratch: Path, ledger: Ledger) -> ImageFacts:
    """Raises AssertionError when the ref does not name a complete, importable image."""
    try:
        return _check_complete(entry_text, scratch, ledger)
    except CacheError as error:
        raise AssertionError(f"{entry_text} does not name a complete image: {type(error).__name__}: {error}") from error


def _check_complete(entry_text: str, scratch: Path, ledger: Ledger) -> ImageFacts:
    image = load_ref(entry_text)
    assert image is not None, f"nothing at {entry_text}"
    layers = check_layers(entry_text, image)
    state_dir = Path(scratch)
    stack = open_serving_stack(state_dir, 1 << 34, [parse_cache_from(entry_text)], refresh_seconds=0)
    blobs_known = actions_known = 0
    try:
        importing = stack.blobs
        assert importing.imports.wait_ready(IMPORT_WAIT_SECONDS), "the import did not finish"  # type: ignore[attr-defined]
        digests = [entry.digest for entry in image.index.iter_blobs()]
        failed = importing.ensure_local(digests)  # type: ignore[attr-defined]
        assert not failed, f"{len(failed)} blob(s) of the image could not be imported, e.g. {failed[:3]}"
        for digest in digests:
            data = importing.read_bytes(digest)
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (digest.hash, digest.size_bytes), digest
            key: DigestKey = (digest.hash, digest.size_bytes)
            if key in ledger.blobs:
                assert data == ledger.blob_bytes(key), f"blob {digest} differs from the acknowledged bytes"
                blobs_known += 1
        for action_entry in image.index.iter_actions():
            served = stack.action_cache.get_action_result(action_entry.action)
            assert served is not None, f"action {action_entry.action} of the image is not served"
            assert Digest.of(served) == action_entry.result, f"action {action_entry.action}: result digest differs"
            expected = ledger.actions.get((action_entry.action.hash, action_entry.action.size_bytes))
            if expected is not None:
                assert re_pb2.ActionResult.FromString(served) == re_pb2.ActionResult.FromString(expected)
                actions_known += 1
    finally:
        stack.close()
        shutil.rmtree(state_dir, ignore_errors=True)
    return ImageFacts(
        image.digest, image.index.blob_count, image.index.action_count, layers, blobs_known, actions_known
    )


def acked_for_mode(ledger: Ledger, mode: str) -> Tuple[List[DigestKey], Dict[DigestKey, bytes]]:
    """What an image exported with `mode` must hold of the ledger: with mode=max every
    acknowledged blob and action; with mode=min the actions with exit code 0 and the
    blobs their results name (outputs, stdout, stderr)."""
    results = dict(ledger.actions)
    if mode == "max":
        return list(ledger.blobs), results
    kept = {key: result for key, result in results.items() if re_pb2.ActionResult.FromString(result).exit_code == 0}
    blobs: Set[DigestKey] = set()
    for result in kept.values():
        parsed = re_pb2.ActionResult.FromString(result)
        named = [f.digest for f in parsed.output_files] + [parsed.stdout_digest, parsed.stderr_digest]
        blobs.update((d.hash, d.size_bytes) for d in named if d.hash and d.size_bytes)
    return sorted(blobs), kept


def missing_acked(image: LoadedImage, ledger: Ledger, mode: str = "max") -> Tuple[List[DigestKey], List[DigestKey]]:
    """(acknowledged blobs not in the image, acknowledged actions not in it or with another
    result), of those the image must hold with `mode` (acked_for_mode)."""
    index = image.index
    expected_blobs, expected_actions = acked_for_mode(ledger, mode)
    blobs = [key for key in expected_blobs if index.find_blob(Digest(key[0], key[1])) is None]
    actions: List[DigestKey] = []
    for key, result in expected_actions.items():
        entry = index.find_action(Digest(key[0], key[1]))
        if entry is None or entry.result != Digest.of(result):
            actions.append(key)
    return blobs, actions


__all__ = ["ImageFacts", "acked_for_mode", "check_complete", "check_layers", "load_ref", "missing_acked"]
