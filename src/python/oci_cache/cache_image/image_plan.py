"""The entries and layers of the image an export is about to write (no I/O here).

An ImagePlan starts from the image at the cache-to ref (the merge base) and is
changed by the exporter: new actions and blobs are added, entries are pruned,
layers are packed or rewritten, and finally it becomes the entry index. Blobs
point at their layer by the layer's digest; a blob whose layer is None is
*pending*: it will be packed into a new layer from a local source, and its
`length` is meanwhile an estimate (its size) for keep-bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from oci_cache.digests import Digest
from oci_cache.image_format import ActionEntry, BlobEntry, Compression, Descriptor, WrittenLayer, layer_descriptor
from oci_cache.image_format.entry_index import CommandRecordEntry
from oci_cache.image_format.manifest import layer_compression
from oci_cache.cache_image.loaded_image import LoadedImage
from oci_cache.oci.target import ImageTarget

ORIGIN_BASE = "base"
ORIGIN_IMPORTED = "imported"
ORIGIN_NEW = "new"


@dataclass
class LayerRecord:
    descriptor: Descriptor
    compression: Compression
    origin: str
    home: Optional[ImageTarget] = None
    """Where the layer's bytes can be read (base: the cache-to target; imported: its image's target)."""
    path: Optional[str] = None
    """New layers: the file written."""

    @property
    def digest(self) -> str:
        return self.descriptor.digest


class BlobRecord:
    __slots__ = ("layer", "offset", "length", "tar_offset", "min_eligible", "last_used")

    def __init__(
        self,
        layer: Optional[str],
        offset: int,
        length: int,
        tar_offset: int,
        min_eligible: bool,
        last_used: int,
    ) -> None:
        self.layer = layer
        self.offset = offset
        self.length = length
        self.tar_offset = tar_offset
        self.min_eligible = min_eligible
        self.last_used = last_used

    @property
    def pending(self) -> bool:
        return self.layer is None


class ImagePlan:
    def __init__(self) -> None:
        self.layers: Dict[str, LayerRecord] = {}
        self.layer_order: List[str] = []
        self.blobs: Dict[Digest, BlobRecord] = {}
        self.actions: Dict[Digest, ActionEntry] = {}
        self.command_records: Dict[Digest, Digest] = {}
        """Command left out (it holds a secret) → the record blob standing in for it
        (cache_image/secret_commands.py); kept while the record blob is in the plan."""

    # ---- building ---------------------------------------------------------------------

    @classmethod
    def from_image(
        cls,
        loaded: LoadedImage,
        home: ImageTarget,
        *,
        min_only: bool,
        unknown_time: int,
    ) -> "ImagePlan":
        """The entries of `loaded` (with mode=min: only min-eligible ones); entries
        with an unknown last_used get `unknown_time`."""
        plan = cls()
        digests = [descriptor.digest for descriptor in loaded.layers]
        for descriptor in loaded.layers:
            plan.add_layer(LayerRecord(descriptor, layer_compression(descriptor), ORIGIN_BASE, home=home))
        for entry in loaded.index.iter_blobs():
            if min_only and not entry.min_eligible:
                continue
            plan.blobs[entry.digest] = BlobRecord(
                digests[entry.layer],
                entry.compressed_offset,
                entry.compressed_length,
                entry.tar_offset,
                entry.min_eligible,
                entry.last_used or unknown_time,
            )
        for action in loaded.index.iter_actions():
            if min_only and not action.min_eligible:
                continue
            if not action.last_used:
                action = action._replace(last_used=action.created or unknown_time)
            plan.actions[action.action] = action
        plan.command_records.update(loaded.index.iter_command_records())
        plan.drop_unreferenced_layers()
        return plan

    def add_layer(self, record: LayerRecord) -> None:
        if record.digest not in self.layers:
            self.layer_order.append(record.digest)
        self.layers[record.digest] = record

    def add_blob_from(
        self, digest: Digest, entry: BlobEntry, layer: LayerRecord, last_used: int, min_eligible: bool
    ) -> None:
        """A blob that lives in another image's layer (carried forward)."""
        self.add_layer(layer)
        self.blobs[digest] = BlobRecord(
            layer.digest, entry.compressed_offset, entry.compressed_length, entry.tar_offset, min_eligible, last_used
        )

    def add_pending(self, digest: Digest, last_used: int, min_eligible: bool) -> None:
        self.blobs[digest] = BlobRecord(None, 0, digest.size_bytes, 0, min_eligible, last_used)

    def touch_blob(self, digest: Digest, last_used: int, min_eligible: bool) -> bool:
        """Raises a present blob's last_used and min flag; False when absent."""
        record = self.blobs.get(digest)
        if record is None:
            return False
        if last_used > record.last_used:
            record.last_used = last_used
        record.min_eligible = record.min_eligible or min_eligible
        return True

    def place_written_layer(self, written: WrittenLayer, *, oci_mediatypes: bool) -> LayerRecord:
        """Records a new layer and points its blobs at it."""
        record = LayerRecord(
            layer_descriptor(written, oci_mediatypes=oci_mediatypes), written.compression, ORIGIN_NEW, path=written.path
        )
        self.add_layer(record)
        for entry in written.entries:
            blob = self.blobs.get(entry.digest)
            if blob is None:
                continue
            blob.layer = record.digest
            blob.offset = entry.compressed_offset
            blob.length = entry.compressed_length
            blob.tar_offset = entry.tar_offset
        return record

    # ---- queries ------------------------------------------------------------------------

    def pending_blobs(self) -> List[Digest]:
        return sorted(digest for digest, record in self.blobs.items() if record.layer is None)

    def live_bytes(self) -> Dict[str, int]:
        """Layer digest → compressed bytes of the entries that still point at it."""
        live = {digest: 0 for digest in self.layers}
        for record in self.blobs.values():
            if record.layer is not None:
                live[record.layer] += record.length
        return live

    def blobs_in_layer(self, layer: str) -> List[Digest]:
        return [digest for digest, record in self.blobs.items() if record.layer == layer]

    def drop_unreferenced_layers(self) -> List[str]:
        used = {record.layer for record in self.blobs.values() if record.layer is not None}
        dropped = [digest for digest in self.layer_order if digest not in used]
        if dropped:
            self.layer_order = [digest for digest in self.layer_order if digest in used]
            for digest in dropped:
                del self.layers[digest]
        return dropped

    def image_bytes(self) -> int:
        """Data layer bytes, plus the estimated size of pending blobs."""
        total = sum(record.descriptor.size for record in self.layers.values())
        return total + sum(record.length for record in self.blobs.values() if record.layer is None)

    def drop_actions(self, actions: Iterable[Digest]) -> None:
        for action in actions:
            self.actions.pop(action, None)

    def drop_blobs(self, blobs: Iterable[Digest]) -> None:
        for digest in blobs:
            self.blobs.pop(digest, None)

    def command_record_entries(self) -> List[CommandRecordEntry]:
        """The command records whose record blob is in the plan."""
        return [CommandRecordEntry(c, r) for c, r in self.command_records.items() if r in self.blobs]

    def index_entries(self) -> Tuple[List[LayerRecord], List[BlobEntry], List[ActionEntry]]:
        """Layers in order and the entries naming them by position (no pending blobs allowed)."""
        layers = [self.layers[digest] for digest in self.layer_order]
        position = {record.digest: number for number, record in enumerate(layers)}
        blobs = []
        for digest, record in self.blobs.items():
            if record.layer is None:
                raise AssertionError(f"blob {digest} was never packed")
            blobs.append(
                BlobEntry(
                    digest,
                    position[record.layer],
                    record.offset,
                    record.length,
                    record.tar_offset,
                    record.min_eligible,
                    record.last_used,
                )
            )
        return layers, blobs, list(self.actions.values())


__all__ = ["BlobRecord", "ImagePlan", "LayerRecord", "ORIGIN_BASE", "ORIGIN_IMPORTED", "ORIGIN_NEW"]
