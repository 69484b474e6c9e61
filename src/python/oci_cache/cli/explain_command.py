"""`oci-cache explain`: why the last run's cache lookups missed.

    oci-cache explain [--state-dir DIR] [--json] [ACTION_DIGEST ...]

For each miss of the current run of a running daemon (asked through its JSON control
endpoint, which the Pants plugin's daemons have), or of the last run a daemon saved
(STATE_DIR/explain/last-run.json, written at the end of every Pants run and at
shutdown): Pants' description of the process, its nearest cached action and what
differs. ACTION_DIGEST (HASH/SIZE or HASH) keeps only those misses. A terminal table
by default, the `pants-oci-cache/explain/v1` document with --json. Exit status 0, or
1 when no record was found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from oci_cache.cli.daemon_discovery import FoundDaemon, find_daemons
from oci_cache.daemon.control_client import ControlClient, ControlError
from oci_cache.explain.recorder import EXPLAIN_DIRECTORY, LAST_RUN_FILE, read_last_run
from oci_cache.explain.report import ExplainReport, parse_report, render_table

NAME = "explain"
HELP = "explain the last run's cache misses: each process, its nearest cached action, and what differs"

DEFAULT_STATE_DIR = "~/.cache/pants-oci-cache"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", default=DEFAULT_STATE_DIR, help=f"the daemon's state directory (default {DEFAULT_STATE_DIR})"
    )
    parser.add_argument("--json", action="store_true", help="print the pants-oci-cache/explain/v1 JSON document")
    parser.add_argument("actions", nargs="*", metavar="ACTION_DIGEST", help="only these misses (HASH/SIZE or HASH)")


def run(args: argparse.Namespace) -> int:
    state_dir = Path(os.path.expanduser(args.state_dir))
    found = find_report(state_dir)
    if found is None:
        print(f"oci-cache explain: no record of misses under {state_dir} (no daemon has run there yet)", file=sys.stderr)
        return 1
    report, where = found
    if args.actions:
        report = report.only(args.actions)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        print(render_table(report))
        print(f"\n(from {where})")
    return 0


def find_report(state_dir: Path) -> Optional[Tuple[ExplainReport, str]]:
    """The report of the most recent run under `state_dir` (itself, or a daemon per
    subdirectory): a running daemon's, else the newest saved one."""
    daemons = find_daemons(state_dir)
    for daemon in daemons:
        report = _ask_running(daemon)
        if report is not None:
            return report, f"the daemon at {daemon.state.address if daemon.state else daemon.directory}"
    saved: List[Tuple[float, Path]] = []
    for directory in [state_dir, *(d.directory for d in daemons if d.directory != state_dir)]:
        path = directory / EXPLAIN_DIRECTORY / LAST_RUN_FILE
        try:
            saved.append((path.stat().st_mtime, directory))
        except OSError:
            continue
    for _, directory in sorted(saved, reverse=True):
        report = read_last_run(directory)
        if report is not None:
            return report, str(directory / EXPLAIN_DIRECTORY / LAST_RUN_FILE)
    return None


def _ask_running(daemon: FoundDaemon) -> Optional[ExplainReport]:
    if not daemon.running or daemon.state is None or not daemon.state.control_url:
        return None
    try:
        return parse_report(ControlClient(daemon.state.control_url, daemon.token()).explain())
    except (ControlError, ValueError, KeyError, TypeError):
        return None


__all__ = ["HELP", "NAME", "configure", "find_report", "run"]
