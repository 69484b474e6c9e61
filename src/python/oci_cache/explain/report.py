"""The explanation of a run's misses: JSON (`pants-oci-cache/explain/v1`), a table, one clause.

    report = explain_misses(misses, index)      # misses: MissFacts, index: CandidateIndex
    report.to_json()                            # the document below
    render_table(report)                        # for a terminal
    summary_clause(report)                      # '12 misses: 9 input files changed, 2 env changed (PATH), 1 new process'

    {"schema": "pants-oci-cache/explain/v1",
     "misses": [{"action": "HASH/SIZE", "description": str|null,
                 "nearest": {"action": "HASH/SIZE", "source": ENTRY-or-"local"}|null,
                 "differences": [{"kind": KIND, "name": str|null, "before": str|null, "after": str|null}]}]}

plus, when they apply, `"notes": [str]` (e.g. masks that could not be compared).
Each miss's cause, for the summary, is the first kind of difference in the order
input files, arguments, environment, platform, working directory, output paths,
timeout; a miss without a nearest action is a new process; one whose Action and
Command never reached the daemon (the process failed, or its upload did not arrive)
is "not uploaded"; one whose own action is cached is "cached but not servable".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from oci_cache.digests import Digest
from oci_cache.explain.actions import ActionView
from oci_cache.explain.differ import Difference, differences, masked_incomparable
from oci_cache.explain.matcher import CandidateIndex

SCHEMA = "pants-oci-cache/explain/v1"
NOTE_INCOMPARABLE_MASKS = (
    "some secret-looking variables were masked with different keys (this machine's and the image's "
    "secret-masking.key) and could not be compared; give both the same key file to compare them"
)

CAUSE_NEW = "new process"
CAUSE_NOT_UPLOADED = "not uploaded"
CAUSE_NOT_SERVABLE = "cached but not servable"
CAUSE_OTHER = "other change"
_CAUSE_OF_KIND = (
    ("input_file", "input files changed"),
    ("input_root", "input files changed"),
    ("argv", "arguments changed"),
    ("env", "env changed"),
    ("platform", "platform changed"),
    ("working_directory", "working directory changed"),
    ("output_paths", "output paths changed"),
    ("timeout", "timeout changed"),
)
MAX_NAMES_IN_CLAUSE = 3
_PLURALS = {CAUSE_NEW: "new processes", CAUSE_OTHER: "other changes"}


@dataclass(frozen=True)
class MissFacts:
    """What the daemon recorded of one miss: its digest, Pants' description, and its
    view once the client uploaded its Action and Command (None before)."""

    action: Digest
    description: Optional[str] = None
    view: Optional[ActionView] = None


@dataclass(frozen=True)
class Nearest:
    action: str
    source: str


@dataclass(frozen=True)
class MissExplanation:
    action: str
    description: Optional[str]
    nearest: Optional[Nearest]
    differences: Tuple[Difference, ...]
    cause: str

    def to_json(self, include_cause: bool = False) -> Dict[str, Any]:
        document: Dict[str, Any] = {
            "action": self.action,
            "description": self.description,
            "nearest": None if self.nearest is None else {"action": self.nearest.action, "source": self.nearest.source},
            "differences": [
                {"kind": d.kind, "name": d.name, "before": d.before, "after": d.after} for d in self.differences
            ],
        }
        if include_cause:
            document["cause"] = self.cause
        return document


@dataclass(frozen=True)
class ExplainReport:
    misses: Tuple[MissExplanation, ...]
    notes: Tuple[str, ...] = field(default=())

    def to_json(self, include_cause: bool = False) -> Dict[str, Any]:
        """The public document; `include_cause` adds each miss's cause (the daemon's
        saved record keeps it, so that the summary reads the same from the file)."""
        document: Dict[str, Any] = {
            "schema": SCHEMA,
            "misses": [miss.to_json(include_cause) for miss in self.misses],
        }
        if self.notes:
            document["notes"] = list(self.notes)
        return document

    def to_bytes(self, include_cause: bool = False) -> bytes:
        return json.dumps(self.to_json(include_cause), ensure_ascii=False, indent=1).encode("utf-8")

    def only(self, actions: Sequence[str]) -> "ExplainReport":
        """The misses whose action is in `actions` ("HASH/SIZE" or just HASH)."""
        wanted = set(actions)
        return ExplainReport(
            tuple(m for m in self.misses if m.action in wanted or m.action.partition("/")[0] in wanted), self.notes
        )


def explain_misses(misses: Sequence[MissFacts], index: CandidateIndex) -> ExplainReport:
    explained = []
    incomparable = False
    for miss in misses:
        action = str(miss.action)
        if miss.view is None:
            explained.append(MissExplanation(action, miss.description, None, (), CAUSE_NOT_UPLOADED))
            continue
        itself = index.holds(miss.action)
        if itself is not None:
            nearest = Nearest(action, itself.source)
            explained.append(MissExplanation(action, miss.description, nearest, (), CAUSE_NOT_SERVABLE))
            continue
        found = index.nearest(miss.view)
        if found is None:
            explained.append(MissExplanation(action, miss.description, None, (), CAUSE_NEW))
            continue
        changes = tuple(differences(found, miss.view))
        incomparable = incomparable or masked_incomparable(found, miss.view)
        explained.append(
            MissExplanation(action, miss.description, Nearest(str(found.action), found.source), changes, cause_of(changes))
        )
    return ExplainReport(tuple(explained), (NOTE_INCOMPARABLE_MASKS,) if incomparable else ())


def cause_of(changes: Sequence[Difference]) -> str:
    kinds = {change.kind for change in changes}
    for kind, cause in _CAUSE_OF_KIND:
        if kind in kinds:
            return cause
    return CAUSE_OTHER


def summary_clause(report: ExplainReport) -> str:
    """'12 misses: 9 input files changed, 2 env changed (PATH), 1 new process' ('0 misses' for none)."""
    total = len(report.misses)
    head = f"{total} {'miss' if total == 1 else 'misses'}"
    if not total:
        return head
    counts: Dict[str, int] = {}
    env_names: List[str] = []
    for miss in report.misses:
        counts[miss.cause] = counts.get(miss.cause, 0) + 1
        if miss.cause == "env changed":
            for change in miss.differences:
                if change.kind == "env" and change.name and change.name not in env_names:
                    env_names.append(change.name)
    parts = []
    for cause, number in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        text = f"{number} {_PLURALS.get(cause, cause) if number > 1 else cause}"
        if cause == "env changed" and env_names:
            shown = env_names[:MAX_NAMES_IN_CLAUSE]
            text += f" ({', '.join(shown)}{', …' if len(env_names) > len(shown) else ''})"
        parts.append(text)
    return f"{head}: {', '.join(parts)}"


def render_table(report: ExplainReport, width: int = 72) -> str:
    """One block per miss: its description and action, the nearest action, then one
    row per difference (KIND NAME BEFORE -> AFTER)."""
    lines = [summary_clause(report)]
    for miss in report.misses:
        lines.append("")
        lines.append(f"{miss.description or '(no description)'}")
        lines.append(f"  action   {miss.action}")
        if miss.nearest is None:
            lines.append(f"  nearest  none ({miss.cause})")
        else:
            lines.append(f"  nearest  {miss.nearest.action} ({miss.nearest.source})")
        if miss.cause == CAUSE_NOT_SERVABLE:
            lines.append("           the action itself is cached, but its outputs could not be served")
        for change in miss.differences:
            name = change.name or ""
            before, after = _around_difference(_shown(change.before), _shown(change.after), width)
            lines.append(f"  {change.kind:<17} {_clip(name, 40):<40} {before} -> {after}")
    for note in report.notes:
        lines.append("")
        lines.append(f"note: {note}")
    return "\n".join(lines)


def parse_report(document: Mapping[str, Any]) -> ExplainReport:
    """The report in a `pants-oci-cache/explain/v1` document (as to_json wrote it);
    raises ValueError."""
    if document.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document")
    misses = []
    for item in document["misses"]:
        nearest = item.get("nearest")
        changes = tuple(
            Difference(str(d["kind"]), d.get("name"), d.get("before"), d.get("after")) for d in item["differences"]
        )
        cause = item.get("cause")
        if not cause:  # a document without causes (--json output): derived
            cause = CAUSE_NEW if nearest is None else (cause_of(changes) if changes else CAUSE_NOT_SERVABLE)
        misses.append(
            MissExplanation(
                str(item["action"]),
                item.get("description"),
                None if nearest is None else Nearest(str(nearest["action"]), str(nearest["source"])),
                changes,
                str(cause),
            )
        )
    return ExplainReport(tuple(misses), tuple(str(n) for n in document.get("notes", ())))


def _shown(value: Optional[str]) -> str:
    return "(absent)" if value is None else value


def _around_difference(before: str, after: str, width: int) -> Tuple[str, str]:
    """Both texts clipped to `width`, showing where they start to differ."""
    if len(before) <= width and len(after) <= width:
        return before, after
    same = 0
    while same < min(len(before), len(after)) and before[same] == after[same]:
        same += 1
    start = max(0, same - width // 3)
    if start == 0:
        return _clip(before, width), _clip(after, width)
    return _clip("…" + before[start:], width), _clip("…" + after[start:], width)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


__all__ = [
    "ExplainReport",
    "MissExplanation",
    "MissFacts",
    "Nearest",
    "SCHEMA",
    "explain_misses",
    "parse_report",
    "render_table",
    "summary_clause",
]
