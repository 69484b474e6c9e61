"""128 concurrent clients hammering one real `oci-cache serve` (issue 5, item 3).

The clients run in a separate process (load_client.py, grpc.aio, one channel each) and
mix GetActionResult (80% hits, 20% misses) with ByteStream.Read of the hits' blobs
(sizes from 10 bytes to 3 MiB, as Pants reads outputs). Meanwhile this process watches
the server's memory. Then:

- the server never went away and still answers;
- no call failed (every hit is a hit, every miss NOT_FOUND), no wrong byte, no lost hit;
- GetActionResult p99 stays under Pants' 1,500 ms remote-cache timeout;
- the server's peak RSS stays bounded; its log holds no traceback.

Knobs: OCI_CACHE_LOAD_SECONDS (default 20), OCI_CACHE_LOAD_CLIENTS (default 128),
OCI_CACHE_LOAD_REPORT=PATH (the figures as JSON). The slow variant runs 120 s.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from process_watch import KNOWN_GRPC_AIO_NOISE, MIB, ProcessWatch, unexpected_log_records
from reapi_client import ReapiClient, digest_of
from server_fixtures import ServerProcess, start_server

LOAD_SECONDS = float(os.environ.get("OCI_CACHE_LOAD_SECONDS", "20"))
CLIENTS = int(os.environ.get("OCI_CACHE_LOAD_CLIENTS", "128"))
REPORT_PATH = os.environ.get("OCI_CACHE_LOAD_REPORT")
PANTS_TIMEOUT_MS = 1500.0
RSS_BOUND_BYTES = 512 * MIB
LOAD_CLIENT = Path(__file__).with_name("load_client.py")


def make_plan(
    rng: random.Random, actions: int = 200
) -> Tuple[Dict[Tuple[str, int], bytes], List[Tuple[re_pb2.Digest, re_pb2.ActionResult]], Dict[str, Any]]:
    """Blobs, action results referencing them, and the plan the clients follow."""
    blobs: Dict[Tuple[str, int], bytes] = {}
    results: List[Tuple[re_pb2.Digest, re_pb2.ActionResult]] = []
    for number in range(actions):
        result = re_pb2.ActionResult(exit_code=number % 7)
        for output in range(3):
            roll = rng.random()
            size = (
                rng.randint(10, 4096)
                if roll < 0.7
                else rng.randint(4097, 256 * 1024) if roll < 0.96 else rng.randint(1 << 20, 3 << 20)
            )
            data = b"load %d %d " % (number, output) + rng.getrandbits(8 * size).to_bytes(size, "little")
            digest = digest_of(data)
            blobs[(digest.hash, digest.size_bytes)] = data
            result.output_files.add(path=f"out/{output}", digest=digest)
        stdout = b"stdout of action %d\n" % number
        result.stdout_digest.CopyFrom(digest_of(stdout))
        blobs[(result.stdout_digest.hash, result.stdout_digest.size_bytes)] = stdout
        results.append((digest_of(b"load action %d" % number), result))
    plan = {
        "hits": [{"hash": a.hash, "size": a.size_bytes, "exit_code": r.exit_code} for a, r in results],
        "misses": [{"hash": digest_of(b"never %d" % n).hash, "size": 20, "exit_code": 0} for n in range(50)],
        "blobs": [{"hash": h, "size": s} for h, s in sorted(blobs)],
    }
    return blobs, results, plan


def preload(
    server: ServerProcess, blobs: Dict[Tuple[str, int], bytes], results: List[Tuple[re_pb2.Digest, re_pb2.ActionResult]]
) -> None:
    channel = server.channel()
    ReapiClient(channel).upload_blobs(blobs)
    action_cache = re_grpc.ActionCacheStub(channel)
    for action, result in results:
        action_cache.UpdateActionResult(re_pb2.UpdateActionResultRequest(action_digest=action, action_result=result))


def run_load(server: ServerProcess, workdir: Path, seconds: float, clients: int) -> Tuple[Dict[str, Any], ProcessWatch]:
    blobs, results, plan = make_plan(random.Random(5))
    preload(server, blobs, results)
    plan_path = workdir / "plan.json"
    out_path = workdir / "load-result.json"
    plan_path.write_text(json.dumps(plan))
    watch = ProcessWatch(server.pid)
    try:
        completed = subprocess.run(
            [
                sys.executable,
                str(LOAD_CLIENT),
                "--target",
                server.target,
                "--plan",
                str(plan_path),
                "--out",
                str(out_path),
                "--clients",
                str(clients),
                "--seconds",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
    finally:
        watch.stop()
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(out_path.read_text())
    result["server_rss_mib"] = {
        "start": round(watch.start_rss_bytes / MIB, 1),
        "peak": round(watch.peak_rss_bytes / MIB, 1),
        "end": round(watch.last_rss_bytes / MIB, 1),
    }
    print("\nload:", json.dumps(result, sort_keys=True))
    if REPORT_PATH:
        Path(REPORT_PATH).write_text(json.dumps(result, indent=2, sort_keys=True))
    return result, watch


def check_load(server: ServerProcess, result: Dict[str, Any], watch: ProcessWatch) -> None:
    assert watch.died_at is None and server.is_running(), "the server went away under load"
    calls = result["calls"]
    assert set(calls["GetActionResult"]) <= {"OK", "NOT_FOUND"}, calls
    assert set(calls["Read"]) == {"OK"}, calls
    assert result["wrong_bytes"] == 0 and result["wrong_hits"] == 0 and result["lost_hits"] == 0, result
    assert sum(calls["GetActionResult"].values()) > 1000, "too few calls to say anything"
    assert result["get_action_result_ms"]["p99"] < PANTS_TIMEOUT_MS, result["get_action_result_ms"]
    assert watch.peak_rss_bytes < RSS_BOUND_BYTES, f"peak RSS {watch.peak_rss_bytes / MIB:.0f} MiB"
    caps = re_grpc.CapabilitiesStub(server.channel()).GetCapabilities(re_pb2.GetCapabilitiesRequest(), timeout=10)
    assert caps.cache_capabilities.max_batch_total_size_bytes > 0
    alarms, noise = unexpected_log_records(server.log_text(), [KNOWN_GRPC_AIO_NOISE])
    assert not alarms, alarms[:3]


def test_128_clients_get_action_result_and_read(tmp_path: Path) -> None:
    server = start_server(tmp_path / "state")
    try:
        result, watch = run_load(server, tmp_path, LOAD_SECONDS, CLIENTS)
        check_load(server, result, watch)
    finally:
        server.stop()


@pytest.mark.slow
def test_128_clients_for_two_minutes(tmp_path: Path) -> None:
    server = start_server(tmp_path / "state")
    try:
        result, watch = run_load(server, tmp_path, max(LOAD_SECONDS, 120.0), CLIENTS)
        check_load(server, result, watch)
    finally:
        server.stop()
