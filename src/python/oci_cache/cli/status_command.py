"""`oci-cache status`: the daemons under a state directory and what they have done.

    oci-cache status [--state-dir DIR] [--json]

For each daemon found (DIR itself, or one per subdirectory as the Pants plugin lays
them out): its address, pid, cache-from/cache-to entries, action-cache hits and
misses, bytes read and written, local store use, exports, uptime and idle time,
from its Control service. Exit status 0 when at least one daemon runs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import grpc
from google.protobuf import json_format

from oci_cache.cli.daemon_discovery import RPC_TIMEOUT_SECONDS, FoundDaemon, control_stub, find_daemons
from oci_cache.reapi import control_pb2
from oci_cache.sizes import format_duration, format_size

NAME = "status"
HELP = "show the daemons under a state directory: address, cache entries, hits/misses, bytes, exports"

DEFAULT_STATE_DIR = "~/.cache/pants-oci-cache"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", default=DEFAULT_STATE_DIR, help=f"where to look for daemons (default {DEFAULT_STATE_DIR})"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document for machines")


def run(args: argparse.Namespace) -> int:
    state_dir = Path(os.path.expanduser(args.state_dir))
    reports = [_report(daemon) for daemon in find_daemons(state_dir)]
    running = [report for report in reports if report["running"]]
    if args.json:
        json.dump({"state_dir": str(state_dir), "daemons": reports}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        for report in reports:
            print(_describe(report))
        if not running:
            print(f"no oci-cache daemon is running under {state_dir}")
    return 0 if running else 1


def _report(daemon: FoundDaemon) -> Dict[str, Any]:
    report: Dict[str, Any] = {"directory": str(daemon.directory), "running": False}
    if daemon.state is None:
        report["problem"] = "starting or stopping (no daemon.json)" if daemon.locked else "not running"
        return report
    report["address"] = daemon.state.address
    report["pid"] = daemon.state.pid
    if daemon.stale:
        report["problem"] = f"not running (stale daemon.json of pid {daemon.state.pid})"
        return report
    status, problem = _get_status(daemon)
    if status is None:
        report["problem"] = problem
        return report
    report["running"] = True
    report["status"] = json_format.MessageToDict(
        status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return report


def _get_status(daemon: FoundDaemon) -> Tuple[Optional[control_pb2.StatusResponse], str]:
    channel, stub, metadata = control_stub(daemon)
    try:
        return stub.GetStatus(control_pb2.GetStatusRequest(), timeout=RPC_TIMEOUT_SECONDS, metadata=metadata), ""
    except grpc.RpcError as error:
        return None, f"does not answer ({error.code().name}: {error.details()})"
    finally:
        channel.close()


def _describe(report: Dict[str, Any]) -> str:
    if not report["running"]:
        where = f" {report['address']}" if "address" in report else ""
        return f"{report['directory']}:{where} {report['problem']}"
    status = report["status"]
    number = lambda key: int(status.get(key, 0))  # noqa: E731 - int64 fields are JSON strings
    idle_timeout = float(status.get("idle_timeout_seconds", 0.0))
    lines = [
        f"daemon pid {status['pid']} on {status['address']} (oci-cache {status['version']}), "
        f"up {format_duration(round(float(status['uptime_seconds'])))}, idle "
        f"{format_duration(round(float(status['idle_seconds'])))}"
        + (f" of {format_duration(idle_timeout)}" if idle_timeout else ""),
        f"  state dir:    {status['state_dir']}",
        f"  cache-from:   {', '.join(status.get('cache_from', [])) or '(none)'}",
        f"  cache-to:     {', '.join(status.get('cache_to', [])) or '(none)'}",
        f"  action cache: {number('action_cache_hits')} hits, {number('action_cache_misses')} misses, "
        f"{number('action_results_written')} results written",
        f"  blobs:        {format_size(number('bytes_read'))} read ({number('blobs_read')}), "
        f"{format_size(number('bytes_written'))} written ({number('blobs_written')})",
        f"  local store:  {format_size(number('local_store_bytes'))} of {format_size(number('local_store_max_bytes'))}",
    ]
    exports = f"  exports:      {number('exports_completed')} done"
    if status.get("export_running"):
        exports += ", one running"
    if "pending_export_entries" in status:
        exports += f", {number('pending_export_entries')} entries waiting"
    lines.append(exports)
    for state in status.get("imports", []):
        if state.get("problem"):
            what = "no image yet" if state.get("missing") else f"import FAILED: {state['problem']}"
            if state.get("manifest_digest"):
                what += f" (serving {state['manifest_digest']} imported before)"
        else:
            what = f"imported {state.get('manifest_digest', '')}"
        lines.append(f"  import:       {state.get('entry', '')}: {what}")
    return "\n".join(lines)


__all__: List[str] = ["NAME", "HELP", "configure", "run"]
