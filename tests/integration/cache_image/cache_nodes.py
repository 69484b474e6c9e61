"""An in-process "daemon": the serving stack `oci-cache serve` builds (open_serving_stack) on a
state directory, without the gRPC server. (Imported by name.)"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.serving_stack import ServingStack, open_serving_stack
from oci_cache.digests import Digest
from oci_cache.export_report import ExportReport

from action_scenario import RecordedAction


@dataclass
class CacheNode:
    stack: ServingStack

    @property
    def blobs(self) -> ImportingBlobStore:
        return self.stack.blobs  # type: ignore[return-value]

    @property
    def local(self):  # type: ignore[no-untyped-def]
        return self.blobs.local

    @property
    def actions(self):  # type: ignore[no-untyped-def]
        return self.stack.action_cache

    def export(self) -> ExportReport:
        assert self.stack.can_export
        return self.stack.export()

    def close(self) -> None:
        self.stack.close()

    def write(self, recorded: RecordedAction) -> None:
        """What a client does after running the action: blobs, then the result."""
        for digest, data in {**recorded.definitions, **recorded.outputs}.items():
            self.blobs.put_bytes(digest, data)
        self.actions.put_action_result(recorded.action, recorded.result)

    def serves(self, recorded: RecordedAction) -> bool:
        """A hit with the exact result, and every output blob byte-exact."""
        result = self.actions.get_action_result(recorded.action)
        if result is None:
            return False
        assert result == recorded.result
        for digest, data in recorded.outputs.items():
            assert self.blobs.read_bytes(digest) == data
        return True

    def holds(self, blobs: dict) -> bool:
        """Whether every blob is present (FindMissingBlobs) and reads back byte-exact."""
        if self.blobs.find_missing(list(blobs)):
            return False
        return all(self.blobs.read_bytes(digest) == data for digest, data in blobs.items())


def open_node(
    state_dir: Path,
    cache_from: Sequence[str] = (),
    cache_to: Sequence[str] = (),
    *,
    max_size: int = 1 << 30,
    wait_import: bool = True,
    confirm_delay: Optional[float] = 0.0,
) -> CacheNode:
    stack = open_serving_stack(
        Path(state_dir),
        max_size,
        [parse_cache_from(text) for text in cache_from],
        [parse_cache_to(text) for text in cache_to],
        refresh_seconds=0,
        confirm_delay=confirm_delay,
    )
    node = CacheNode(stack)
    if wait_import and cache_from:
        assert node.blobs.imports.wait_ready(30)
    return node


def missing(node: CacheNode, digests: List[Digest]) -> List[Digest]:
    return node.blobs.find_missing(digests)


def fetched_bytes(node: CacheNode) -> int:
    return node.blobs.imports.counters.snapshot().bytes_fetched


def optional_text(value: Optional[str]) -> str:
    return value or ""
