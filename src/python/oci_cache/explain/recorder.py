"""The daemon's record of a run's misses, and the explanation built from it.

    recorder = MissRecorder(state_dir, blobs, loader)
    cache = RecordingActionCache(action_cache, recorder)   # in the serving stack
    recorder.describe({"HASH/SIZE": "Run Pytest - a_test.py:tests"})   # from the plugin
    report = recorder.report()          # the current run (or the last finished one)
    clause = recorder.finish_run()      # saves STATE_DIR/explain/last-run.json, starts a new run

What a lookup costs: a miss is one dict insert under a lock; an UpdateActionResult of
a missed action one set insert. Nothing is parsed while Pants waits: the Actions and
Commands the client uploaded are read from the local store when an explanation is
asked for. A run is the misses since the last `finish_run` (the plugin calls it at
the end of every Pants run; the daemon at shutdown); at most MAX_MISSES_PER_RUN are
kept (the first ones), and the descriptions of those only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, Iterator, Mapping, Optional, Set

from oci_cache.digests import Digest
from oci_cache.explain.candidates import LOAD_BUDGET_SECONDS, CandidateLoader
from oci_cache.explain.input_trees import FileListing, directories_of_listing
from oci_cache.explain.matcher import CandidateIndex
from oci_cache.explain.report import ExplainReport, MissFacts, explain_misses, parse_report, summary_clause
from oci_cache.store.interfaces import ActionCache

logger = logging.getLogger(__name__)

EXPLAIN_DIRECTORY = "explain"
LAST_RUN_FILE = "last-run.json"
MAX_MISSES_PER_RUN = 10_000
MAX_DESCRIPTION_CHARS = 500
FINISH_BUDGET_SECONDS = 3.0


class MissRecorder:
    def __init__(self, state_dir: Path, loader: CandidateLoader, max_misses: int = MAX_MISSES_PER_RUN) -> None:
        self._path = Path(state_dir) / EXPLAIN_DIRECTORY / LAST_RUN_FILE
        self._loader = loader
        self._max_misses = max_misses
        self._lock = threading.Lock()
        self._misses: "OrderedDict[Digest, Optional[str]]" = OrderedDict()
        self._uploaded: Set[Digest] = set()
        self._dropped = 0
        self._looked_up = False
        self._last: Optional[ExplainReport] = None

    # ---- recording (on the serving path: cheap) -----------------------------------

    def hit(self) -> None:
        """A lookup of this run was a hit: a run with lookups and no miss is saved as such."""
        self._looked_up = True

    def missed(self, action: Digest) -> None:
        with self._lock:
            self._looked_up = True
            if action in self._misses:
                return
            if len(self._misses) >= self._max_misses:
                self._dropped += 1
                return
            self._misses[action] = None

    def uploaded(self, action: Digest) -> None:
        with self._lock:
            if action in self._misses:
                self._uploaded.add(action)

    def describe(self, descriptions: Mapping[str, str]) -> int:
        """Attaches Pants' descriptions ("HASH/SIZE" -> text) to this run's misses; how many matched."""
        matched = 0
        with self._lock:
            for text, description in descriptions.items():
                hash_hex, _, size = str(text).partition("/")
                try:
                    digest = Digest(hash_hex, int(size))
                except ValueError:
                    continue
                if digest in self._misses:
                    self._misses[digest] = str(description)[:MAX_DESCRIPTION_CHARS]
                    matched += 1
        return matched

    def describe_processes(self, descriptions: Mapping[str, str]) -> int:
        """Attaches descriptions keyed by process key (process_keys.py) to the misses whose
        uploaded Command has that key; how many misses got one."""
        with self._lock:
            undescribed = [d for d, text in self._misses.items() if text is None and d in self._uploaded]
        found: Dict[Digest, str] = {}
        for digest in undescribed:
            key = self._loader.process_key(digest)
            if key is not None and key in descriptions:
                found[digest] = str(descriptions[key])[:MAX_DESCRIPTION_CHARS]
        with self._lock:
            for digest, text in found.items():
                if digest in self._misses:
                    self._misses[digest] = text
        return len(found)

    def add_input_tree(self, root: Digest, files: Iterable[FileListing], empty_directories: Iterable[str] = ()) -> bool:
        """Keeps the Directory messages of input root `root`, rebuilt from a listing of its
        files (input_trees.py), when the rebuilt root is `root`; whether it was."""
        rebuilt, directories = directories_of_listing(files, empty_directories)
        if rebuilt != root:
            logger.debug("explain: the listing of input root %s rebuilds as %s: not kept", root, rebuilt)
            return False
        self._loader.store_directories(directories)
        return True

    # ---- explaining ---------------------------------------------------------------

    def report(self) -> ExplainReport:
        """The current run's explanation when it has misses, else the last finished run's
        (from memory, or the file a previous daemon left)."""
        with self._lock:
            has_current = bool(self._misses)
        if has_current:
            return self._explain_current()
        if self._last is None:
            self._last = read_last_run(self._path.parent.parent)
        return self._last if self._last is not None else ExplainReport(())

    def finish_run(self, budget_seconds: float = FINISH_BUDGET_SECONDS) -> str:
        """Explains the current run, saves it and starts a new run; the summary clause.
        Candidates not read yet are read for at most `budget_seconds` (the end of a Pants
        run waits for this; the rest are read by the next explanation). A run without
        misses but with hits is saved as a run without misses (so `explain` never shows an
        older run's misses as the last run's); one without any lookup leaves the last saved
        run in place (a daemon stopping after a run)."""
        with self._lock:
            looked_up, self._looked_up = self._looked_up, False
            if not self._misses:
                if looked_up:
                    self._last = ExplainReport(())
                    self._save(self._last)
                return summary_clause(ExplainReport(()))
        report = self._explain_current(budget_seconds)
        with self._lock:
            self._misses = OrderedDict()
            self._uploaded = set()
            self._dropped = 0
        self._last = report
        self._save(report)
        return summary_clause(report)

    def _explain_current(self, budget_seconds: float = LOAD_BUDGET_SECONDS) -> ExplainReport:
        with self._lock:
            misses = list(self._misses.items())
            uploaded = set(self._uploaded)
        own = {digest for digest, _ in misses}
        facts = [
            MissFacts(digest, description, self._loader.read_cached(digest, "local") if digest in uploaded else None)
            for digest, description in misses
        ]
        return explain_misses(facts, CandidateIndex(self._loader.candidates(own, budget_seconds)))

    def _save(self, report: ExplainReport) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temp = self._path.with_name(f".{self._path.name}.{os.getpid()}")
            temp.write_bytes(report.to_bytes(include_cause=True))
            os.replace(str(temp), str(self._path))
        except OSError as error:
            logger.warning("explain: cannot save the run's misses to %s: %s", self._path, error)


def read_last_run(state_dir: Path) -> Optional[ExplainReport]:
    """The last finished run's explanation a daemon saved in `state_dir`, or None."""
    path = Path(state_dir) / EXPLAIN_DIRECTORY / LAST_RUN_FILE
    try:
        return parse_report(json.loads(path.read_bytes().decode("utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("explain: %s is not readable: %s", path, error)
        return None


class RecordingActionCache:
    """An ActionCache that tells a MissRecorder of every miss and every update."""

    def __init__(self, inner: ActionCache, recorder: MissRecorder) -> None:
        self._inner = inner
        self._recorder = recorder

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        result = self._inner.get_action_result(action_digest)
        if result is None:
            self._recorder.missed(action_digest)
        else:
            self._recorder.hit()
        return result

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self._inner.put_action_result(action_digest, serialized_result)
        self._recorder.uploaded(action_digest)

    def iter_action_digests(self) -> Iterator[Digest]:
        return self._inner.iter_action_digests()


__all__ = ["LAST_RUN_FILE", "MissRecorder", "RecordingActionCache", "read_last_run"]
