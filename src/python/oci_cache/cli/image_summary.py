"""What `oci-cache inspect` reports about a cache image, as data, JSON and text.

`summarize(...)` walks the entry index once and needs no
network. `summary_json` gives the machine form whose keys are stable
(documented in docs/configuration.md, "Commands"; `schema` names the version of
this shape: new keys may be added, existing keys keep their meaning);
`format_summary` the human form.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from oci_cache.cache_image.loaded_image import LoadedImage
from oci_cache.cli.progress import human_bytes, plural
from oci_cache.image_format.manifest import format_timestamp, layer_compression

JSON_SCHEMA = "pants-oci-cache/inspect/v1"
TEXT_LAYER_ROWS = 20


@dataclass(frozen=True)
class LayerSummary:
    number: int
    digest: str
    size: int
    media_type: str
    compression: str
    role: str  # "data" or "index"
    blobs: int
    blob_bytes: int


@dataclass(frozen=True)
class TimeRange:
    oldest: Optional[int]  # Unix seconds; None when no entry records one
    newest: Optional[int]

    def to_json(self) -> Dict[str, Optional[str]]:
        return {"oldest": _time(self.oldest), "newest": _time(self.newest)}


@dataclass(frozen=True)
class ImageSummary:
    location: str
    entry: str
    manifest_digest: str
    manifest_media_type: str
    manifest_size: int
    image_manifest: bool
    oci_mediatypes: bool
    format_version: str
    created: str
    mode: str
    compression: str
    config_size: int
    actions: int
    actions_failed: int
    actions_min_eligible: int
    blobs: int
    blobs_min_eligible: int
    blob_bytes: int
    layers: Tuple[LayerSummary, ...]
    actions_created: TimeRange
    last_used: TimeRange
    command_records: int = 0
    """Commands left out because they hold a secret, each there as a masked record."""

    @property
    def data_layers(self) -> Tuple[LayerSummary, ...]:
        return tuple(layer for layer in self.layers if layer.role == "data")

    @property
    def index_layer(self) -> LayerSummary:
        return self.layers[-1]

    @property
    def stored_bytes(self) -> int:
        """Everything the image occupies in the registry: manifest, config, every layer."""
        return self.manifest_size + self.config_size + sum(layer.size for layer in self.layers)


def summarize(contents: LoadedImage, entry: str, location: Optional[str] = None) -> ImageSummary:
    """`location`: how to name the image (default: as it was named when loading began)."""
    index = contents.index
    image = contents.image
    per_layer_blobs: Counter = Counter()
    per_layer_bytes: Counter = Counter()
    blobs_min = 0
    blob_bytes = 0
    used = _Range()
    for blob in index.iter_blobs():
        per_layer_blobs[blob.layer] += 1
        per_layer_bytes[blob.layer] += blob.digest.size_bytes
        blob_bytes += blob.digest.size_bytes
        blobs_min += blob.min_eligible
        used.add(blob.last_used)
    actions_failed = 0
    actions_min = 0
    created = _Range()
    for action in index.iter_actions():
        actions_failed += action.exit_code != 0
        actions_min += action.min_eligible
        created.add(action.created)
        used.add(action.last_used)
    layers = [
        LayerSummary(
            number=number,
            digest=descriptor.digest,
            size=descriptor.size,
            media_type=descriptor.media_type,
            compression=layer_compression(descriptor).value,
            role="data",
            blobs=per_layer_blobs[number],
            blob_bytes=per_layer_bytes[number],
        )
        for number, descriptor in enumerate(image.layers)
    ]
    layers.append(
        LayerSummary(
            number=len(image.layers),
            digest=image.index.digest,
            size=image.index.size,
            media_type=image.index.media_type,
            compression="uncompressed",
            role="index",
            blobs=0,
            blob_bytes=0,
        )
    )
    config = contents.config
    return ImageSummary(
        location=location or contents.location,
        entry=entry,
        manifest_digest=contents.manifest.digest,
        manifest_media_type=contents.manifest.media_type,
        manifest_size=len(contents.manifest.data),
        image_manifest=contents.parsed.image_manifest,
        oci_mediatypes=contents.parsed.oci_mediatypes,
        format_version=f"{config.format_version[0]}.{config.format_version[1]}",
        created=config.created,
        mode=config.mode,
        compression=config.compression.value,
        config_size=contents.parsed.config.size,
        actions=index.action_count,
        actions_failed=actions_failed,
        actions_min_eligible=actions_min,
        blobs=index.blob_count,
        blobs_min_eligible=blobs_min,
        blob_bytes=blob_bytes,
        layers=tuple(layers),
        actions_created=created.result(),
        last_used=used.result(),
        command_records=index.command_record_count,
    )


class _Range:
    def __init__(self) -> None:
        self.low: Optional[int] = None
        self.high: Optional[int] = None

    def add(self, value: int) -> None:
        if value <= 0:  # 0: unknown
            return
        if self.low is None or value < self.low:
            self.low = value
        if self.high is None or value > self.high:
            self.high = value

    def result(self) -> TimeRange:
        return TimeRange(self.low, self.high)


def summary_json(summary: ImageSummary) -> Dict[str, Any]:
    """The `--json` document (stable keys; see the module docstring)."""
    data_layers = summary.data_layers
    return {
        "schema": JSON_SCHEMA,
        "location": summary.location,
        "entry": summary.entry,
        "manifest": {
            "digest": summary.manifest_digest,
            "media_type": summary.manifest_media_type,
            "size": summary.manifest_size,
            "image_manifest": summary.image_manifest,
            "oci_mediatypes": summary.oci_mediatypes,
        },
        "format_version": summary.format_version,
        "created": summary.created,
        "mode": summary.mode,
        "compression": summary.compression,
        "entries": {
            "actions": summary.actions,
            "actions_failed": summary.actions_failed,
            "actions_min_eligible": summary.actions_min_eligible,
            "blobs": summary.blobs,
            "blobs_min_eligible": summary.blobs_min_eligible,
            "command_records": summary.command_records,
        },
        "bytes": {
            "blobs": summary.blob_bytes,
            "data_layers": sum(layer.size for layer in data_layers),
            "index": summary.index_layer.size,
            "stored": summary.stored_bytes,
        },
        "layers": {
            "count": len(data_layers),
            "compressions": dict(sorted(Counter(layer.compression for layer in data_layers).items())),
            "list": [
                {
                    "number": layer.number,
                    "role": layer.role,
                    "digest": layer.digest,
                    "size": layer.size,
                    "media_type": layer.media_type,
                    "compression": layer.compression,
                    "blobs": layer.blobs,
                    "blob_bytes": layer.blob_bytes,
                }
                for layer in summary.layers
            ],
        },
        "actions_created": summary.actions_created.to_json(),
        "last_used": summary.last_used.to_json(),
    }


def format_summary(summary: ImageSummary, *, all_layers: bool = False) -> str:
    """The human-readable report (several lines, no trailing newline)."""
    data_layers = summary.data_layers
    kind = "image manifest" if summary.image_manifest else "image index (image-manifest=false)"
    types = "OCI" if summary.oci_mediatypes else "Docker"
    compressions = Counter(layer.compression for layer in data_layers)
    mix = ", ".join(f"{name} ×{count}" for name, count in sorted(compressions.items())) or "none"
    sizes = [layer.size for layer in data_layers]
    lines = [
        f"cache image  {summary.location}",
        f"manifest     {summary.manifest_digest} ({types} {kind}, {human_bytes(summary.manifest_size)})",
        f"format       {summary.format_version}; mode {summary.mode}; compression {summary.compression}; "
        f"created {summary.created}",
        f"entries      {plural(summary.actions, 'action')} ({summary.actions_failed:,} failed, "
        f"{summary.actions_min_eligible:,} kept by mode=min); {plural(summary.blobs, 'blob')}"
        + (f"; {plural(summary.command_records, 'Command')} as masked records" if summary.command_records else ""),
        f"bytes        {human_bytes(summary.blob_bytes)} of blobs in {human_bytes(sum(sizes))} of layers; "
        f"index {human_bytes(summary.index_layer.size)}; stored {human_bytes(summary.stored_bytes)}",
        f"layers       {plural(len(data_layers), 'data layer')} ({mix})"
        + (f", {human_bytes(min(sizes))} to {human_bytes(max(sizes))}" if sizes else ""),
        f"last used    {_range_text(summary.last_used)}",
        f"created      {_range_text(summary.actions_created)} (actions)",
    ]
    rows = list(summary.layers)
    hidden = 0
    if not all_layers and len(rows) > TEXT_LAYER_ROWS:
        hidden = len(rows) - TEXT_LAYER_ROWS
        rows = rows[: TEXT_LAYER_ROWS - 1] + rows[-1:]
    lines.append(f"  {'#':>3}  {'digest':<19}  {'size':>9}  {'compression':<12}  {'blobs':>9}  {'blob bytes':>10}")
    for layer in rows:
        blobs = "index" if layer.role == "index" else f"{layer.blobs:,}"
        blob_bytes = "" if layer.role == "index" else human_bytes(layer.blob_bytes)
        lines.append(
            f"  {layer.number:>3}  {layer.digest[:19]:<19}  {human_bytes(layer.size):>9}  "
            f"{layer.compression:<12}  {blobs:>9}  {blob_bytes:>10}"
        )
        if hidden and layer is rows[-2]:
            lines.append(f"  … {hidden} more layers (--all-layers shows them)")
    return "\n".join(lines)


def _range_text(value: TimeRange) -> str:
    if value.oldest is None or value.newest is None:
        return "unknown"
    return f"{format_timestamp(value.oldest)} … {format_timestamp(value.newest)}"


def _time(value: Optional[int]) -> Optional[str]:
    return None if value is None else format_timestamp(value)


__all__: List[str] = [
    "ImageSummary",
    "JSON_SCHEMA",
    "LayerSummary",
    "TimeRange",
    "format_summary",
    "summarize",
    "summary_json",
]
