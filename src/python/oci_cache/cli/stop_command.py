"""`oci-cache stop`: stop the daemons under a state directory.

    oci-cache stop --state-dir DIR [--no-export] [--timeout 120]

Each running daemon is asked to shut down through its Control service (it stops
accepting calls, exports once unless --no-export, removes daemon.json and exits);
one that does not answer gets SIGTERM, which does the same. Waits until each has
exited (its daemon.lock is released). Exit status 0 when none is left running.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import List

import grpc

from oci_cache.cli.daemon_discovery import RPC_TIMEOUT_SECONDS, FoundDaemon, control_stub, find_daemons
from oci_cache.daemon.daemon_dir import DAEMON_LOCK_FILE
from oci_cache.daemon.life_lock import wait_until_unlocked
from oci_cache.daemon_state import remove_daemon_state
from oci_cache.reapi import control_pb2
from oci_cache.sizes import parse_duration

NAME = "stop"
HELP = "stop the daemons under a state directory (each exports first, unless --no-export)"

DEFAULT_STATE_DIR = "~/.cache/pants-oci-cache"
DEFAULT_TIMEOUT = "120s"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", default=DEFAULT_STATE_DIR, help=f"where to look for daemons (default {DEFAULT_STATE_DIR})"
    )
    parser.add_argument("--no-export", action="store_true", help="exit without the export at shutdown")
    parser.add_argument(
        "--timeout",
        default=DEFAULT_TIMEOUT,
        help=f"how long to wait for each daemon to exit, export included (default {DEFAULT_TIMEOUT})",
    )


def run(args: argparse.Namespace) -> int:
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as error:
        print(f"oci-cache stop: {error}", file=sys.stderr)
        return 2
    state_dir = Path(os.path.expanduser(args.state_dir))
    daemons = find_daemons(state_dir)
    for daemon in daemons:
        if daemon.stale:
            assert daemon.state is not None
            remove_daemon_state(daemon.directory, pid=daemon.state.pid)
    running = [daemon for daemon in daemons if daemon.locked]
    if not running:
        print(f"no oci-cache daemon is running under {state_dir}")
        return 0
    failures = 0
    for daemon in running:
        if not _stop(daemon, skip_export=args.no_export, timeout=timeout):
            failures += 1
    return 1 if failures else 0


def _stop(daemon: FoundDaemon, skip_export: bool, timeout: float) -> bool:
    what = f"the daemon in {daemon.directory}"
    if daemon.state is not None:
        what = f"daemon pid {daemon.state.pid} ({daemon.state.address})"
        if not _ask_to_shut_down(daemon, skip_export):
            _terminate(daemon)
    lock = daemon.directory / DAEMON_LOCK_FILE
    if wait_until_unlocked(lock, timeout):
        print(f"stopped {what}")
        return True
    print(f"{what} has not exited after {timeout:.0f}s (still exporting?); its log: {daemon.directory / 'daemon.log'}")
    return False


def _ask_to_shut_down(daemon: FoundDaemon, skip_export: bool) -> bool:
    channel, stub, metadata = control_stub(daemon)
    try:
        stub.Shutdown(control_pb2.ShutdownRequest(skip_export=skip_export), timeout=RPC_TIMEOUT_SECONDS, metadata=metadata)
        return True
    except grpc.RpcError:
        return False
    finally:
        channel.close()


def _terminate(daemon: FoundDaemon) -> None:
    assert daemon.state is not None
    try:
        os.kill(daemon.state.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


__all__: List[str] = ["NAME", "HELP", "configure", "run"]
