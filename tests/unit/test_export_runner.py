"""server.export_runner: one export at a time; every request answered by an export that began after it."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

from oci_cache.export_report import ExportReport, ExportTargetReport
from oci_cache.server.export_runner import CoalescingExport


class GatedExport:
    """An export function that blocks until released, numbering its runs."""

    def __init__(self) -> None:
        self.started = 0
        self.running = 0
        self.max_running = 0
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self._lock = threading.Lock()

    def __call__(self) -> ExportReport:
        with self._lock:
            self.started += 1
            number = self.started
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.entered.release()
        self.gate.wait(10)
        with self._lock:
            self.running -= 1
        return ExportReport([ExportTargetReport(entry=f"run {number}", ok=True)], seconds=0.01)


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_requests_during_an_export_share_the_next_one() -> None:
    export = GatedExport()
    runner = CoalescingExport(export)
    results: List[str] = []

    def request() -> None:
        results.append(runner.run().targets[0].entry)

    first = threading.Thread(target=request)
    first.start()
    assert export.entered.acquire(timeout=10)  # export 1 is running
    assert runner.running
    waiters = [threading.Thread(target=request) for _ in range(5)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.05)
    assert export.started == 1  # the five wait instead of exporting alongside
    export.gate.set()
    for thread in [first, *waiters]:
        thread.join(10)
    assert sorted(results) == ["run 1"] + ["run 2"] * 5  # six requests, two exports
    assert export.max_running == 1
    assert runner.completed == 2 and not runner.running


def test_a_request_after_an_export_gets_a_new_one() -> None:
    export = GatedExport()
    export.gate.set()
    runner = CoalescingExport(export)
    assert runner.run().targets[0].entry == "run 1"
    assert runner.run().targets[0].entry == "run 2"


def test_a_failure_reaches_every_waiter_and_the_next_export_runs() -> None:
    calls: List[int] = []

    def export() -> ExportReport:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("registry down")
        return ExportReport([], seconds=0.0)

    runner = CoalescingExport(export)
    with pytest.raises(RuntimeError, match="registry down"):
        runner.run()
    assert runner.run().ok
    assert runner.completed == 2


def test_background_request_returns_at_once() -> None:
    export = GatedExport()
    runner = CoalescingExport(export)
    runner.start_in_background()
    assert export.entered.acquire(timeout=10)
    assert runner.running
    export.gate.set()
    wait_until(lambda: runner.completed == 1)
