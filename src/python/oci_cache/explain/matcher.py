"""The nearest cached action of a miss: the previous version of the same process.

    index = CandidateIndex(candidate_views)
    nearest = index.nearest(miss_view)        # an ActionView, or None

In order of precedence:
1. same output paths (the Command's output paths, files and directories as a set):
   the same process writes the same outputs;
2. most similar arguments: the share of arguments both hold (as multisets, over the
   longer list);
3. most similar environment: the share of (name, value) pairs both hold (masked
   values compare by their masks);
4. then the same input root, then the same Command, then the smaller action hash (stable).

A candidate with other output paths, or with no output paths at all, is only taken
when at least MIN_ARGUMENT_SIMILARITY of the arguments are shared; otherwise the
miss has no nearest action (a new process). A candidate with the miss's own action
digest is never its nearest (see `holds`).

Cost: arguments are indexed (argument -> candidates); a miss is scored against the
candidates that share one of its rarer arguments (at most MAX_SCORED of them), plus
those with its output paths, so a run of 1,000 misses against many thousands of
candidates is matched in well under a second.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import DefaultDict, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from oci_cache.digests import Digest
from oci_cache.explain.actions import ActionView

MIN_ARGUMENT_SIMILARITY = 0.5
MAX_SCORED = 32
"""Candidates scored exactly per miss (the best by shared rare arguments)."""
COMMON_ARGUMENT_SHARE = 0.2
"""An argument held by more than this share of the candidates does not pick candidates."""


class CandidateIndex:
    def __init__(self, candidates: Iterable[ActionView]) -> None:
        self._views: List[ActionView] = []
        self._arguments: List["Counter[str]"] = []
        self._environments: List[Set[Tuple[str, str]]] = []
        self._by_action: Dict[Digest, int] = {}
        self._by_outputs: DefaultDict[Tuple[str, ...], List[int]] = defaultdict(list)
        self._by_argument: DefaultDict[str, List[int]] = defaultdict(list)
        for view in candidates:
            if view.action in self._by_action:
                continue
            number = len(self._views)
            self._views.append(view)
            self._arguments.append(Counter(view.command.arguments))
            self._environments.append(set(view.command.environment_values().items()))
            self._by_action[view.action] = number
            self._by_outputs[view.output_key].append(number)
            for argument in set(view.command.arguments):
                self._by_argument[argument].append(number)
        self._common_limit = max(8, int(len(self._views) * COMMON_ARGUMENT_SHARE))

    def __len__(self) -> int:
        return len(self._views)

    def holds(self, action: Digest) -> Optional[ActionView]:
        """The candidate with this very action digest (a cached action that was not a hit)."""
        number = self._by_action.get(action)
        return None if number is None else self._views[number]

    def nearest(self, miss: ActionView) -> Optional[ActionView]:
        same_outputs: Sequence[int] = self._by_outputs.get(miss.output_key, ()) if miss.output_key else ()
        picked = self._picked_by_arguments(miss)
        numbers: Set[int] = set(picked)
        numbers.update(same_outputs[:MAX_SCORED] if len(same_outputs) > MAX_SCORED else same_outputs)
        miss_arguments = Counter(miss.command.arguments)
        miss_environment = set(miss.command.environment_values().items())
        best: Optional[Tuple[tuple, int]] = None
        for number in numbers:
            view = self._views[number]
            if view.action == miss.action:
                continue
            outputs_match = bool(miss.output_key) and view.output_key == miss.output_key
            arguments = _similarity(miss_arguments, self._arguments[number])
            if not outputs_match and arguments < MIN_ARGUMENT_SIMILARITY:
                continue
            score = (
                outputs_match,
                arguments,
                _share(miss_environment, self._environments[number]),
                view.input_root == miss.input_root,
                view.command.command == miss.command.command,
            )
            if best is None or score > best[0] or (score == best[0] and view.action.hash < self._views[best[1]].action.hash):
                best = (score, number)
        return None if best is None else self._views[best[1]]

    def _picked_by_arguments(self, miss: ActionView) -> List[int]:
        shared: Counter = Counter()
        for argument in set(miss.command.arguments):
            holders = self._by_argument.get(argument)
            if holders and len(holders) <= self._common_limit:
                shared.update(holders)
        if not shared:  # only common arguments: every holder of the rarest of them
            rarest = min(
                (self._by_argument[a] for a in set(miss.command.arguments) if a in self._by_argument),
                key=len,
                default=[],
            )
            return list(rarest[:MAX_SCORED])
        return [number for number, _ in shared.most_common(MAX_SCORED)]


def similarity_of_arguments(first: Sequence[str], second: Sequence[str]) -> float:
    """Shared arguments (as multisets) over the longer list's length; 1.0 for two empty lists."""
    return _similarity(Counter(first), Counter(second))


def _similarity(first: "Counter[str]", second: "Counter[str]") -> float:
    longest = max(sum(first.values()), sum(second.values()))
    if longest == 0:
        return 1.0
    return sum((first & second).values()) / longest


def _share(first: Set[Tuple[str, str]], second: Set[Tuple[str, str]]) -> float:
    longest = max(len(first), len(second))
    return 1.0 if longest == 0 else len(first & second) / longest


__all__ = ["CandidateIndex", "MAX_SCORED", "MIN_ARGUMENT_SIMILARITY", "similarity_of_arguments"]
