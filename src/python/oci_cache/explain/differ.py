"""What differs between a cached action (before) and a missed one (after).

    for difference in differences(nearest, miss): ...

Each `Difference` has a kind, a name and the two values (None: absent on that side):

- `argv`: one per changed argument, named `argv[N]` (N: its position in the missed
  action, or in the cached one for a removed argument); arguments are aligned first,
  so an inserted argument is one difference, not a shift of all the following ones;
- `env`: one per variable added, removed or changed, named by the variable;
- `platform`: one per property (Action and Command properties together);
- `working_directory`, `timeout`: the values;
- `output_paths`: one per output path added or removed, named by the path;
- `input_file`: one per file added, removed or changed (digests "HASH/SIZE"), when
  both input trees are known; otherwise `input_root`: the two root digests.

Values come from the masked records: a secret-looking variable's value only ever
appears as `<masked:hmac:…>`. Masks made with different keys (two machines without a
shared key file) do not compare: such a variable is reported changed only when it is
present on one side only; `masked_incomparable` tells the caller it happened.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from oci_cache.explain.actions import ActionView

KINDS = ("argv", "env", "input_file", "input_root", "platform", "working_directory", "output_paths", "timeout")


@dataclass(frozen=True)
class Difference:
    kind: str
    name: Optional[str]
    before: Optional[str]
    after: Optional[str]


def differences(before: ActionView, after: ActionView) -> List[Difference]:
    """What changed from `before` (the cached action) to `after` (the miss)."""
    found: List[Difference] = []
    found.extend(_input_differences(before, after))
    found.extend(argument_differences(before.command.arguments, after.command.arguments))
    found.extend(_environment_differences(before, after))
    found.extend(_mapping_differences("platform", _pairs(before.platform), _pairs(after.platform)))
    if before.command.working_directory != after.command.working_directory:
        found.append(
            Difference("working_directory", None, before.command.working_directory, after.command.working_directory)
        )
    before_outputs, after_outputs = set(before.output_key), set(after.output_key)
    for path in sorted(before_outputs - after_outputs):
        found.append(Difference("output_paths", path, path, None))
    for path in sorted(after_outputs - before_outputs):
        found.append(Difference("output_paths", path, None, path))
    if before.timeout != after.timeout:
        found.append(Difference("timeout", None, before.timeout, after.timeout))
    return found


def masked_incomparable(before: ActionView, after: ActionView) -> bool:
    """Whether masked values of the two could not be compared (different masking keys)."""
    return before.command.masked_with != after.command.masked_with and (
        before.command.masked_count > 0 or after.command.masked_count > 0
    )


def argument_differences(before: Sequence[str], after: Sequence[str]) -> List[Difference]:
    found: List[Difference] = []
    matcher = difflib.SequenceMatcher(a=list(before), b=list(after), autojunk=False)
    for tag, b_start, b_end, a_start, a_end in matcher.get_opcodes():
        if tag == "equal":
            continue
        old, new = list(before[b_start:b_end]), list(after[a_start:a_end])
        for offset in range(max(len(old), len(new))):
            old_value = old[offset] if offset < len(old) else None
            new_value = new[offset] if offset < len(new) else None
            position = a_start + offset if new_value is not None else b_start + offset
            found.append(Difference("argv", f"argv[{position}]", old_value, new_value))
    return found


def _environment_differences(before: ActionView, after: ActionView) -> List[Difference]:
    comparable = before.command.masked_with == after.command.masked_with
    old = {entry.name: entry for entry in before.command.environment}
    new = {entry.name: entry for entry in after.command.environment}
    found = []
    for name in sorted(old.keys() | new.keys()):
        old_entry, new_entry = old.get(name), new.get(name)
        if old_entry is not None and new_entry is not None:
            if old_entry.value == new_entry.value:
                continue
            if not comparable and (old_entry.masked or new_entry.masked):
                continue  # masks under different keys: unknown, not reported as changed
        found.append(
            Difference(
                "env",
                name,
                old_entry.value if old_entry is not None else None,
                new_entry.value if new_entry is not None else None,
            )
        )
    return found


def _input_differences(before: ActionView, after: ActionView) -> List[Difference]:
    if before.input_root == after.input_root:
        return []
    if before.input_files is not None and after.input_files is not None:
        files = _mapping_differences("input_file", before.input_files, after.input_files)
        if files:
            return files
    return [
        Difference(
            "input_root",
            None,
            str(before.input_root) if before.input_root is not None else None,
            str(after.input_root) if after.input_root is not None else None,
        )
    ]


def _mapping_differences(kind: str, before: Mapping[str, str], after: Mapping[str, str]) -> List[Difference]:
    found = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old != new:
            found.append(Difference(kind, name, old, new))
    return found


def _pairs(pairs: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    merged: Dict[str, str] = {}
    for name, value in pairs:
        merged[name] = value if name not in merged else merged[name] + "," + value
    return merged


__all__ = ["Difference", "KINDS", "argument_differences", "differences", "masked_incomparable"]
