"""Runs the daemon's exports one at a time, coalescing concurrent requests.

    runner = CoalescingExport(stack.export)
    report = runner.run()            # blocks; the result of an export that began after this call
    runner.start_in_background()     # returns at once

Every request is answered by an export that *started after the request arrived*, so
everything acknowledged before the request is in it. Requests that arrive while an
export is running share the next one: N Pants runs ending together cost at most two
exports, not N.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, List, Optional, Tuple

from oci_cache.export_report import ExportReport

logger = logging.getLogger(__name__)


class CoalescingExport:
    def __init__(self, export: Callable[[], ExportReport]) -> None:
        self._export = export
        self._condition = threading.Condition()
        self._running = False
        self._started = 0  # exports begun so far
        self._finished = 0  # the generation of the last export that ended
        self._last: Tuple[Optional[ExportReport], Optional[BaseException]] = (None, None)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def completed(self) -> int:
        """Exports finished so far (successful or not)."""
        return self._finished

    def run(self) -> ExportReport:
        """Waits for an export that starts after this call (running it on this thread
        when no other caller is) and returns its report; re-raises its exception."""
        condition = self._condition
        with condition:
            wanted = self._started + 1
            while self._finished < wanted:
                if self._running:
                    condition.wait()
                    continue
                self._running = True
                self._started += 1
                generation = self._started
                condition.release()
                outcome: Tuple[Optional[ExportReport], Optional[BaseException]] = (
                    None,
                    RuntimeError("the export was interrupted"),
                )
                try:
                    outcome = self._run_once()
                finally:
                    condition.acquire()
                    self._running = False
                    self._finished = generation
                    self._last = outcome
                    condition.notify_all()
            report, error = self._last
        if error is not None:
            raise error
        assert report is not None
        return report

    def start_in_background(self) -> None:
        """Requests an export without waiting for it (its failure is logged)."""
        threading.Thread(target=self._run_logged, name="export-background", daemon=True).start()

    def _run_logged(self) -> None:
        try:
            report = self.run()
        except Exception:  # noqa: BLE001 - a background export has nobody else to tell
            logger.exception("background export failed")
            return
        if not report.ok:
            logger.warning("background export finished with failures: %s", describe_failures(report))

    def _run_once(self) -> Tuple[Optional[ExportReport], Optional[BaseException]]:
        try:
            return self._export(), None
        except Exception as error:  # noqa: BLE001 - handed to every waiting caller
            return None, error


def describe_failures(report: ExportReport) -> str:
    return "; ".join(f"{target.entry}: {target.message}" for target in report.targets if not target.ok)


__all__: List[str] = ["CoalescingExport", "describe_failures"]
