"""What an export did, per cache-to entry: the shape the control service returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List


@dataclass
class ExportTargetReport:
    """One cache-to entry's outcome. `entry` is the entry's text without credentials."""

    entry: str
    ok: bool
    message: str = ""
    entries: int = 0
    bytes_uploaded: int = 0
    layers_uploaded: int = 0
    layers_reused: int = 0
    manifest_digest: str = ""
    # With ignore-error=true a failure is reported but does not count as one.
    ignored_error: bool = False

    @property
    def counts_as_failure(self) -> bool:
        return not self.ok and not self.ignored_error


@dataclass
class ExportReport:
    targets: List[ExportTargetReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(target.counts_as_failure for target in self.targets)
