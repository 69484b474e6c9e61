"""What the real-Pants tests read from a Pants run: its `--stats-log` counters and the
plugin's summary line (imported by name from tests/integration and tests/reliability)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional

PANTS_TIMEOUT_SECONDS = 300
CACHEABLE_PROCESSES = 15  # examples/basic/README.md
HDRHISTOGRAM_HINT = "Please run with `--plugins=hdrhistogram`"
COUNTER_LINE = re.compile(r"^\s+([a-z_]+): (\d+)$", re.M)
SUMMARY_LINE = re.compile(
    r"\[(?:INFO|WARN)\] oci-cache: (\d+) hits?, (\d+) miss(?:es)?, (\S+) read, (\S+) written; (.*)$", re.M
)
UNAVAILABLE_WARNING = "[oci-cache] the remote cache is off for this run, the build goes on without it"


@dataclass(frozen=True)
class PantsRun:
    name: str
    returncode: int
    output: str
    seconds: float

    @property
    def counters(self) -> Dict[str, int]:
        _, marker, text = self.output.rpartition("Counters:")
        return {name: int(value) for name, value in COUNTER_LINE.findall(text)} if marker else {}

    @property
    def summary(self) -> Optional["re.Match[str]"]:
        matches = list(SUMMARY_LINE.finditer(self.output))
        return matches[-1] if matches else None

    def describe(self) -> str:
        tail = "\n".join(self.output.splitlines()[-40:])
        return f"pants run {self.name!r} exited {self.returncode} after {self.seconds:.1f}s; output tail:\n{tail}"


__all__ = [
    "CACHEABLE_PROCESSES",
    "COUNTER_LINE",
    "HDRHISTOGRAM_HINT",
    "PANTS_TIMEOUT_SECONDS",
    "PantsRun",
    "SUMMARY_LINE",
    "UNAVAILABLE_WARNING",
]
