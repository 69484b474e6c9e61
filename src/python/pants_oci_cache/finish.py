"""What the end of a Pants run does with the daemon (Pants-independent, see end_of_run.py).

    line, ok = finish_run(start, "wait")     # "wait" | "background" | "off"

asks the daemon to export (per the mode), then for its counters, and returns the
summary line and whether everything went well.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from oci_cache.daemon.control_client import ControlClient, ControlError, ExportResult
from oci_cache.sizes import parse_duration
from pants_oci_cache.run_state import RunStart
from pants_oci_cache.summary import RunCounters, describe_export, summary_line

logger = logging.getLogger(__name__)

MODES = ("wait", "background", "off")
PROGRESS_AFTER_SECONDS = 2.0
PROGRESS_INTERVAL_SECONDS = 5.0
DEFAULT_WAIT_LIMIT_SECONDS = 15 * 60.0
"""`[oci-cache] export_wait_limit`'s default (15m)."""


def wait_limit_seconds(text: str) -> Optional[float]:
    """`[oci-cache] export_wait_limit` in seconds (None for 0: no limit); a bad value warns
    and falls back to the default, since the cache must never fail the build."""
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        logger.warning("[oci-cache] export_wait_limit: %s; using 15m", error)
        return DEFAULT_WAIT_LIMIT_SECONDS
    return seconds if seconds > 0 else None


def finish_run(
    start: RunStart, mode: str, terminal: Optional[bool] = None, wait_limit: Optional[float] = None
) -> Tuple[str, bool]:
    """(summary line, whether all went well). `terminal` (default: whether stderr is one)
    turns on progress lines while a `wait` export takes long; `wait_limit` (seconds, None:
    no limit) is how long a `wait` export is waited for before the run ends without it."""
    if mode not in MODES:
        raise ValueError(f"export_on_finish must be one of {', '.join(MODES)}, not {mode!r}")
    client = start.handle.client()
    began = time.monotonic()
    if mode == "off":
        export_text, ok = 'export off (`export_on_finish = "off"`)', True
    else:
        try:
            result = export_with_progress(
                client,
                background=mode == "background",
                terminal=_stderr_is_terminal() if terminal is None else terminal,
                limit=wait_limit,
            )
        except ControlError as error:
            return f"oci-cache: the export failed, the daemon did not answer ({error})", False
        if result is None:
            export_text, ok = (
                f"the export is still running after {time.monotonic() - began:.0f}s (`export_wait_limit`); "
                "the daemon finishes it (`oci-cache status` shows when)"
            ), False
        else:
            export_text, ok = describe_export(result, time.monotonic() - began), result.ok
    try:
        end = client.status()
    except ControlError as error:
        return f"oci-cache: {export_text}; no counters, the daemon did not answer ({error})", False
    line = summary_line(RunCounters.between(start.handle.status, end), export_text)
    failed_imports = [state for state in end.imports if state.failed]
    for state in failed_imports:
        kept = f"serving the image imported before ({state.manifest_digest})" if state.manifest_digest else "no hits from it"
        line += f"; cache-from {state.entry} FAILED to import: {state.problem} ({kept})"
    return line, ok and not failed_imports


def export_with_progress(
    client: ControlClient,
    background: bool,
    terminal: bool,
    report: Callable[[str], None] = logger.info,
    after: float = PROGRESS_AFTER_SECONDS,
    interval: float = PROGRESS_INTERVAL_SECONDS,
    limit: Optional[float] = None,
) -> Optional[ExportResult]:
    """The export; with `terminal`, a progress line (`report`) after `after` seconds and
    every `interval` seconds while it runs (log lines, which Pants' console shows cleanly).
    None when it is still running after `limit` seconds: the daemon goes on with it (an
    export asked for is not cancelled when its caller stops waiting)."""
    if background:
        return client.export(background=True)
    outcome: List[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(_capture(client.export)), daemon=True)
    began = time.monotonic()
    deadline = began + limit if limit is not None else None
    next_report = began + after if terminal else None
    worker.start()
    while True:
        wakeups = [moment for moment in (deadline, next_report) if moment is not None]
        worker.join(max(0.0, min(wakeups) - time.monotonic()) if wakeups else None)
        if not worker.is_alive():
            break
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return None
        if next_report is not None and now >= next_report:
            report(f"oci-cache: exporting ... {now - began:.0f}s")
            next_report = now + interval
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[no-any-return]


def _capture(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except BaseException as error:  # noqa: BLE001 - re-raised on the calling thread
        return error


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


__all__: List[str] = ["DEFAULT_WAIT_LIMIT_SECONDS", "MODES", "export_with_progress", "finish_run", "wait_limit_seconds"]
