"""How `oci-cache export` prints an export's outcome: text lines and the `--json` shape.

One `ExportOutcome` per exporter (a running daemon, or the state directory exported
directly); each holds per-target results in the shape of control.proto's
ExportTarget (and export_report.ExportTargetReport).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

from oci_cache.cli.progress import human_bytes, plural
from oci_cache.export_report import ExportTargetReport as TargetOutcome

JSON_SCHEMA = "pants-oci-cache/export/v1"


@dataclass(frozen=True)
class ExportOutcome:
    source: str  # "daemon" or "state-dir"
    directory: str
    address: str = ""  # the daemon's address; "" for a direct export
    targets: Sequence[TargetOutcome] = field(default_factory=tuple)
    seconds: float = 0.0
    nothing_to_export_to: bool = False
    error: str = ""  # the export could not run at all (unreachable daemon, refused token, …)

    @property
    def ok(self) -> bool:
        return not self.error and not any(target.counts_as_failure for target in self.targets)


def outcome_lines(outcome: ExportOutcome) -> List[str]:
    where = f"daemon {outcome.address} ({outcome.directory})" if outcome.source == "daemon" else outcome.directory
    if outcome.error:
        return [f"{where}: export FAILED: {outcome.error}"]
    if outcome.nothing_to_export_to:
        return [f"{where}: no cache-to entry, nothing exported"]
    failed = sum(target.counts_as_failure for target in outcome.targets)
    status = "exported" if not failed else f"export FAILED for {failed} of"
    lines = [f"{where}: {status} {plural(len(outcome.targets), 'target')} in {outcome.seconds:.1f}s"]
    for target in outcome.targets:
        lines.append("  " + target_line(target))
    return lines


def target_line(target: TargetOutcome) -> str:
    if target.ok:
        digest = f"; {target.manifest_digest}" if target.manifest_digest else ""
        return (
            f"ok      {target.entry}: {plural(target.entries, 'entry', 'entries')}; "
            f"{plural(target.layers_uploaded, 'layer')} uploaded ({human_bytes(target.bytes_uploaded)}), "
            f"{target.layers_reused:,} reused{digest}"
        )
    label = "failed (ignore-error)" if target.ignored_error else "FAILED"
    return f"{label}  {target.entry}: {target.message or 'no reason given'}"


def outcomes_json(outcomes: Sequence[ExportOutcome]) -> Dict[str, Any]:
    return {
        "schema": JSON_SCHEMA,
        "ok": all(outcome.ok for outcome in outcomes),
        "exports": [
            {
                "source": outcome.source,
                "directory": outcome.directory,
                "address": outcome.address,
                "ok": outcome.ok,
                "error": outcome.error,
                "seconds": round(outcome.seconds, 3),
                "nothing_to_export_to": outcome.nothing_to_export_to,
                "targets": [
                    {
                        "entry": target.entry,
                        "ok": target.ok,
                        "ignored_error": target.ignored_error,
                        "message": target.message,
                        "entries": target.entries,
                        "bytes_uploaded": target.bytes_uploaded,
                        "layers_uploaded": target.layers_uploaded,
                        "layers_reused": target.layers_reused,
                        "manifest_digest": target.manifest_digest,
                    }
                    for target in outcome.targets
                ],
            }
            for outcome in outcomes
        ],
    }


__all__: List[str] = ["ExportOutcome", "JSON_SCHEMA", "TargetOutcome", "outcome_lines", "outcomes_json", "target_line"]
