"""`oci-cache export [--state-dir DIR]`: export the cache now, and wait.

With a daemon running for DIR (DIR/daemon.json, or the per-configuration
subdirectories the Pants plugin's launcher creates), each running daemon is asked
over gRPC (Control.Export, with its bearer token when it has one) to export to its
cache-to entries; the command waits and prints one line per target.

With no daemon running, `--cache-to ENTRY` (repeatable) exports the local store of
DIR directly (see export_direct.py); without it the command says that no daemon
runs and exits 1. `--cache-to` while a daemon runs is refused (the daemon owns the
store; its own cache-to entries apply).

Exit status: 0 every target exported (or failed with ignore-error=true, or there
was nothing to export to); 1 an export failed, no daemon runs, or a daemon could
not be reached; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import grpc

from oci_cache.cache_entries import CacheEntryError, CacheTo, parse_cache_to, redact
from oci_cache.cli import export_direct
from oci_cache.cli.command_logging import quiet_library_info
from oci_cache.cli.daemon_discovery import FoundDaemon, control_stub, find_daemons
from oci_cache.cli.export_report_text import ExportOutcome, TargetOutcome, outcome_lines, outcomes_json
from oci_cache.cli.progress import Progress, plural
from oci_cache.reapi import control_pb2
from oci_cache.sizes import parse_duration

NAME = "export"
HELP = "export the cache now: ask the running daemon (or export a state directory to --cache-to) and wait"

DEFAULT_STATE_DIR = "~/.cache/pants-oci-cache"
_TICK_SECONDS = 0.2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"the daemon's state directory, or a parent of per-configuration ones (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--cache-to",
        action="append",
        default=[],
        metavar="ENTRY",
        help="with no daemon running: export the state directory's local store to ENTRY (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        default="0",
        help="give up waiting for a daemon's export after this long, e.g. 10m; 0 = wait as long as it takes (default)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON document")


def run(args: argparse.Namespace) -> int:
    quiet_library_info(args)
    state_dir = Path(os.path.expanduser(args.state_dir))
    try:
        timeout = parse_duration(args.timeout) or None
        entries = [parse_cache_to(text) for text in args.cache_to]
    except (ValueError, CacheEntryError) as error:
        print(f"oci-cache export: {error}", file=sys.stderr)
        return 2
    daemons = [daemon for daemon in find_daemons(state_dir) if daemon.running]
    if daemons and entries:
        print(
            f"oci-cache export: a daemon runs for {state_dir} and exports to its own cache-to entries; "
            "leave out --cache-to (or stop it with `oci-cache stop` first)",
            file=sys.stderr,
        )
        return 2
    if daemons:
        outcomes = [_export_daemon(daemon, timeout) for daemon in daemons]
    elif entries:
        outcomes = [_export_state_dir(state_dir, entries)]
    else:
        print(
            f"oci-cache export: no oci-cache daemon runs for {state_dir}; start one (`oci-cache serve "
            "--state-dir DIR --cache-to …` or a Pants run), or pass --cache-to ENTRY to export the "
            "state directory's local store directly",
            file=sys.stderr,
        )
        return 1
    _print(outcomes, as_json=args.json)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def _export_daemon(daemon: FoundDaemon, timeout: Optional[float]) -> ExportOutcome:
    assert daemon.state is not None
    progress = Progress("export", sys.stderr)
    address = daemon.state.address
    base = ExportOutcome(source="daemon", directory=str(daemon.directory), address=address)
    done = threading.Event()
    ticker = threading.Thread(target=_tick, args=(progress, address, done), daemon=True)
    ticker.start()
    channel, stub, metadata = control_stub(daemon)
    try:
        response = stub.Export(control_pb2.ExportRequest(), metadata=metadata, timeout=timeout)
    except grpc.RpcError as error:
        return _with_error(base, _rpc_error_text(error, daemon, timeout))
    finally:
        done.set()
        ticker.join()
        progress.clear()
        channel.close()
    return ExportOutcome(
        source="daemon",
        directory=base.directory,
        address=address,
        targets=_targets(response.targets),
        seconds=response.seconds,
        nothing_to_export_to=response.nothing_to_export_to,
    )


def _targets(targets: Iterable[Any]) -> Tuple[TargetOutcome, ...]:
    """control.proto ExportTargets or export_report.ExportTargetReports (same fields)."""
    return tuple(
        TargetOutcome(
            entry=redact(target.entry),
            ok=target.ok,
            message=redact(target.message),
            entries=target.entries,
            bytes_uploaded=target.bytes_uploaded,
            layers_uploaded=target.layers_uploaded,
            layers_reused=target.layers_reused,
            manifest_digest=target.manifest_digest,
            ignored_error=target.ignored_error,
        )
        for target in targets
    )


def _tick(progress: Progress, address: str, done: threading.Event) -> None:
    while not done.wait(_TICK_SECONDS):
        progress.update(f"waiting for the daemon at {address} to export")


def _rpc_error_text(error: grpc.RpcError, daemon: FoundDaemon, timeout: Optional[float]) -> str:
    code = error.code() if hasattr(error, "code") else None
    details = redact(error.details() or "") if hasattr(error, "details") else ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach the daemon ({details}); is it still running?"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"the daemon refused our token ({details}); is {daemon.directory}'s token file the daemon's?"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no result within --timeout {timeout:g}s; the export goes on in the daemon"
    name = code.name if code is not None else "error"
    return f"{name}: {details}"


def _export_state_dir(state_dir: Path, entries: Sequence[CacheTo]) -> ExportOutcome:
    progress = Progress("export", sys.stderr)
    progress.update(f"exporting {state_dir} to {plural(len(entries), 'target')}", force=True)
    try:
        report = export_direct.export_state_dir(state_dir, entries, on_step=progress.update)
    except export_direct.DirectExportError as error:
        progress.clear()
        return ExportOutcome(source="state-dir", directory=str(state_dir), error=redact(str(error)))
    progress.clear()
    return ExportOutcome(
        source="state-dir", directory=str(state_dir), targets=_targets(report.targets), seconds=report.seconds
    )


def _with_error(base: ExportOutcome, error: str) -> ExportOutcome:
    return ExportOutcome(source=base.source, directory=base.directory, address=base.address, error=error)


def _print(outcomes: Sequence[ExportOutcome], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(outcomes_json(outcomes), indent=2) + "\n")
    else:
        for outcome in outcomes:
            for line in outcome_lines(outcome):
                sys.stdout.write(line + "\n")
    sys.stdout.flush()


__all__: List[str] = ["NAME", "HELP", "configure", "run"]
