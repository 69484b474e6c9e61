"""The one line the plugin prints at the end of a Pants run.

    oci-cache: 15 hits, 0 misses, 3.2MiB read, 0B written; exported 15 entries (2 layers, 3.2MiB) to type=local,dest=… in 0.4s

The counts are the daemon's counters at the end of the run minus those at its start
(remote_auth's status check), so a run sharing the daemon with another concurrent
run also counts the other's calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from oci_cache.daemon.control_client import DaemonStatus, ExportResult
from oci_cache.sizes import format_size_rounded as format_size


@dataclass(frozen=True)
class RunCounters:
    hits: int
    misses: int
    bytes_read: int
    bytes_written: int

    @classmethod
    def between(cls, start: Optional[DaemonStatus], end: DaemonStatus) -> "RunCounters":
        """What `end` counted since `start` (all of `end` if the daemon was restarted in between)."""
        if start is None or start.pid != end.pid:
            return cls(end.action_cache_hits, end.action_cache_misses, end.bytes_read, end.bytes_written)
        return cls(
            max(0, end.action_cache_hits - start.action_cache_hits),
            max(0, end.action_cache_misses - start.action_cache_misses),
            max(0, end.bytes_read - start.bytes_read),
            max(0, end.bytes_written - start.bytes_written),
        )

    def describe(self) -> str:
        return (
            f"{_count(self.hits, 'hit')}, {_count(self.misses, 'miss', 'misses')}, "
            f"{format_size(self.bytes_read)} read, {format_size(self.bytes_written)} written"
        )


def describe_export(result: ExportResult, waited_seconds: float) -> str:
    if result.nothing_to_export_to:
        return "nothing to export to"
    if result.started_in_background:
        return "export started in the background (`oci-cache status` shows when it is done)"
    parts = []
    for target in result.targets:
        if target.ok and target.bytes_uploaded == 0 and target.layers_uploaded == 0:
            parts.append(f"{target.entry} is up to date ({_count(target.entries, 'entry', 'entries')}, nothing new)")
        elif target.ok:
            parts.append(
                f"exported {_count(target.entries, 'entry', 'entries')} "
                f"({_count(target.layers_uploaded, 'new layer')}, {format_size(target.bytes_uploaded)} uploaded, "
                f"{target.layers_reused} reused) to {target.entry}"
            )
        elif target.ignored_error:
            parts.append(f"export to {target.entry} failed (ignored): {target.message}")
        else:
            parts.append(f"export to {target.entry} FAILED: {target.message}")
    if not parts:
        parts.append("exported nothing")
    return "; ".join(parts) + f" in {max(result.seconds, waited_seconds):.1f}s"


def summary_line(counters: RunCounters, export: str) -> str:
    return f"oci-cache: {counters.describe()}; {export}"


def _count(number: int, singular: str, plural: Optional[str] = None) -> str:
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"


__all__: List[str] = ["RunCounters", "describe_export", "format_size", "summary_line"]
