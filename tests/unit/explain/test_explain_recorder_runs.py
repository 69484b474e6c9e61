"""Which run `explain` shows: the last Pants run's, even when that run missed nothing."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Set

from oci_cache.digests import Digest
from oci_cache.explain.recorder import MissRecorder, RecordingActionCache, read_last_run


class NoCandidates:
    """A CandidateLoader with nothing cached and no uploaded Actions."""

    def candidates(self, exclude: Set[Digest], budget_seconds: float = 0.0) -> List[object]:
        return []

    def read_cached(self, action_digest: Digest, source: str) -> Optional[object]:
        return None


class OneHitActionCache:
    def __init__(self, hit: Digest) -> None:
        self.hit = hit

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        return b"result" if action_digest == self.hit else None

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        pass

    def iter_action_digests(self):  # type: ignore[no-untyped-def]
        return iter([self.hit])


HIT = Digest.of(b"action that hits")
MISS = Digest.of(b"action that misses")


def _recording(tmp_path: Path) -> RecordingActionCache:
    recorder = MissRecorder(tmp_path, NoCandidates())  # type: ignore[arg-type]
    cache = RecordingActionCache(OneHitActionCache(HIT), recorder)
    cache.recorder = recorder  # type: ignore[attr-defined]
    return cache


def test_a_run_that_only_hits_replaces_the_saved_misses_of_the_run_before(tmp_path: Path) -> None:
    cache = _recording(tmp_path)
    recorder: MissRecorder = cache.recorder  # type: ignore[attr-defined]
    assert cache.get_action_result(MISS) is None
    recorder.finish_run()
    saved = read_last_run(tmp_path)
    assert saved is not None and [miss.action for miss in saved.misses] == [str(MISS)]

    assert cache.get_action_result(HIT) == b"result"
    recorder.finish_run()
    saved = read_last_run(tmp_path)
    assert saved is not None and list(saved.misses) == []
    assert list(recorder.report().misses) == []


def test_finishing_without_any_lookup_keeps_the_last_saved_run(tmp_path: Path) -> None:
    cache = _recording(tmp_path)
    recorder: MissRecorder = cache.recorder  # type: ignore[attr-defined]
    assert cache.get_action_result(MISS) is None
    recorder.finish_run()
    recorder.finish_run()  # e.g. the daemon stopping after the run
    saved = read_last_run(tmp_path)
    assert saved is not None and [miss.action for miss in saved.misses] == [str(MISS)]
