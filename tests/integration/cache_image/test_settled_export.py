"""An export with nothing new to a settled image (one the full path just left as it
was) answers "unchanged" without building a plan; anything that would change the
image still takes the full path (unchanged_export.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import pytest

from action_scenario import make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.exporting import exporter as exporter_module
from oci_cache.cache_image.exporting.exporter import UNCHANGED_MESSAGE, CacheExporter
from oci_cache.cache_image.exporting.image_plan import ImagePlan
from oci_cache.store import local_store as local_store_module
from oci_cache.store.local_store import LocalStore


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class PlanCounter:
    """Counts full-path merges (ImagePlan.from_image calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = ImagePlan.from_image.__func__  # type: ignore[attr-defined]

        def counting(cls: type, *args: object, **kwargs: object) -> ImagePlan:
            self.calls += 1
            return original(cls, *args, **kwargs)

        monkeypatch.setattr(ImagePlan, "from_image", classmethod(counting))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(1_800_000_000.0)
    monkeypatch.setattr(local_store_module, "time", type("T", (), {"time": staticmethod(clock)}))
    return clock


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[LocalStore]:
    local = LocalStore(tmp_path / "store", 1 << 30)
    for seed in range(5):
        store_action(local, make_action(seed))
    yield local
    local.close()


def _export(exporter: CacheExporter, entry: str) -> str:
    report = exporter.export([parse_cache_to(entry)]).targets[0]
    assert report.ok, report.message
    return report.message


def _actions_at(layout: Path) -> List[str]:
    image = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}")))
    return sorted(action.action.hash for action in image.index.iter_actions())


def test_a_settled_image_is_unchanged_without_a_plan_until_something_is_new(
    tmp_path: Path, store: LocalStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = f"type=local,dest={tmp_path / 'layout'}"
    exporter = CacheExporter(store, tmp_path / "work", clock=clock, confirm_delay=0)
    plans = PlanCounter(monkeypatch)
    assert _export(exporter, entry) != UNCHANGED_MESSAGE  # the first image
    clock.now += 10
    assert _export(exporter, entry) == UNCHANGED_MESSAGE  # full path: settles the image
    settled_plans = plans.calls
    for _ in range(3):
        clock.now += 10
        assert _export(exporter, entry) == UNCHANGED_MESSAGE
    assert plans.calls == settled_plans  # no plan was built

    store_action(store, make_action(99))  # something new: the full path publishes it
    assert _export(exporter, entry) != UNCHANGED_MESSAGE
    assert plans.calls == settled_plans + 1
    assert make_action(99).action.hash in _actions_at(tmp_path / "layout")


def test_a_moved_ref_a_due_prune_or_a_stale_use_takes_the_full_path(
    tmp_path: Path, store: LocalStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = tmp_path / "layout"
    entry = f"type=local,dest={layout},keep-duration=1h"
    exporter = CacheExporter(store, tmp_path / "work", clock=clock, confirm_delay=0)
    plans = PlanCounter(monkeypatch)
    _export(exporter, entry)
    _export(exporter, entry)  # settled

    # Another writer moves the ref: the settled digest no longer matches.
    other_store = LocalStore(tmp_path / "other", 1 << 30)
    try:
        store_action(other_store, make_action(50))
        other = CacheExporter(other_store, tmp_path / "other-work", clock=clock, confirm_delay=0)
        assert _export(other, entry) != UNCHANGED_MESSAGE
    finally:
        other_store.close()
    calls = plans.calls
    assert _export(exporter, entry) == UNCHANGED_MESSAGE and plans.calls == calls + 1  # full path, settled again
    calls = plans.calls

    # An hour and a bit later, with no new use: keep-duration prunes everything old.
    clock.now += 3700
    message = _export(exporter, entry)
    assert message != UNCHANGED_MESSAGE and plans.calls == calls + 1
    assert _actions_at(layout) == []


def test_a_use_that_makes_last_used_stale_is_published(
    tmp_path: Path, store: LocalStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = f"type=local,dest={tmp_path / 'layout'},keep-duration=40s"  # last_used refreshed every 10 s
    exporter = CacheExporter(store, tmp_path / "work", clock=clock, confirm_delay=0)
    plans = PlanCounter(monkeypatch)
    _export(exporter, entry)
    _export(exporter, entry)  # settled
    calls = plans.calls
    clock.now += 15
    store_action(store, make_action(2))  # written again: used now, 15 s after the stored time
    assert _export(exporter, entry) != UNCHANGED_MESSAGE
    assert plans.calls == calls + 1


def test_the_settled_record_is_kept_per_entry_and_dropped_on_failure(tmp_path: Path, store: LocalStore, clock: Clock) -> None:
    entry = parse_cache_to(f"type=local,dest={tmp_path / 'layout'}")
    exporter = CacheExporter(store, tmp_path / "work", clock=clock, confirm_delay=0)
    exporter.export([entry])
    exporter.export([entry])
    key = exporter_module.job_key(entry, None, None)
    assert key in exporter.settled
    (tmp_path / "layout" / "index.json").write_text("not json")  # the next export fails
    assert not exporter.export([entry]).ok
    assert key not in exporter.settled
