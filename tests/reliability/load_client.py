"""Many concurrent REAPI clients in one process (grpc.aio), for the load test.

    python load_client.py --target 127.0.0.1:PORT --plan plan.json --out result.json \
        --clients 128 --seconds 20 --max-calls 400000

Each client has its own channel (its own TCP connection, as separate Pants processes
would) and loops until the time or the call budget is spent, doing what Pants does on
a cache hit: GetActionResult, and ByteStream.Read of blobs, one Read per blob. The plan
(JSON) lists action digests that hit, digests that miss, and blobs (hash, size) to read.
Every Read's bytes are checked against the blob's digest. Latencies are measured from
the call to its last byte, in this process, so they include this process's own queueing
(an upper bound for the server's share).

The result (JSON): calls and failures by RPC and status code, wrong bytes, latency
percentiles in milliseconds, bytes read, elapsed seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import time
from typing import Any, Dict, List

import grpc

from oci_cache.reapi import bytestream_pb2
from oci_cache.reapi import remote_execution_pb2 as re_pb2

GET_ACTION_RESULT = "/build.bazel.remote.execution.v2.ActionCache/GetActionResult"
READ = "/google.bytestream.ByteStream/Read"
PANTS_TIMEOUT_MS = 1500.0
CALL_TIMEOUT_SECONDS = 30.0


class Totals:
    def __init__(self) -> None:
        self.calls: Dict[str, Dict[str, int]] = {"GetActionResult": {}, "Read": {}}
        self.latencies_ms: Dict[str, List[float]] = {"GetActionResult": [], "Read": []}
        self.wrong_bytes = 0
        self.wrong_hits = 0
        self.lost_hits = 0
        self.bytes_read = 0
        self.budget = 0

    def count(self, rpc: str, code: str, latency_ms: float) -> None:
        self.calls[rpc][code] = self.calls[rpc].get(code, 0) + 1
        self.latencies_ms[rpc].append(latency_ms)


def percentile(values: List[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def one_client(
    number: int, target: str, plan: Dict[str, Any], totals: Totals, deadline: float, seed: int
) -> None:
    rng = random.Random(f"{seed}:{number}")
    hits = plan["hits"]
    misses = plan["misses"]
    blobs = plan["blobs"]
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        get_action_result = channel.unary_unary(
            GET_ACTION_RESULT,
            request_serializer=re_pb2.GetActionResultRequest.SerializeToString,
            response_deserializer=re_pb2.ActionResult.FromString,
        )
        read = channel.unary_stream(
            READ,
            request_serializer=bytestream_pb2.ReadRequest.SerializeToString,
            response_deserializer=bytestream_pb2.ReadResponse.FromString,
        )
        while time.monotonic() < deadline and totals.budget > 0:
            totals.budget -= 1
            if rng.random() < 0.5:
                hit = rng.random() < 0.8
                action = rng.choice(hits if hit else misses)
                request = re_pb2.GetActionResultRequest(
                    action_digest=re_pb2.Digest(hash=action["hash"], size_bytes=action["size"])
                )
                started = time.perf_counter()
                try:
                    result = await get_action_result(request, timeout=CALL_TIMEOUT_SECONDS)
                    code = "OK"
                    if not hit or result.exit_code != action["exit_code"]:
                        totals.wrong_hits += 1  # a miss answered as a hit, or another action's result
                except grpc.aio.AioRpcError as error:
                    code = error.code().name
                    if hit and code == "NOT_FOUND":
                        totals.lost_hits += 1
                totals.count("GetActionResult", code, (time.perf_counter() - started) * 1000)
            else:
                blob = rng.choice(blobs)
                name = f"blobs/{blob['hash']}/{blob['size']}"
                started = time.perf_counter()
                hasher = hashlib.sha256()
                size = 0
                try:
                    async for response in read(
                        bytestream_pb2.ReadRequest(resource_name=name), timeout=CALL_TIMEOUT_SECONDS
                    ):
                        hasher.update(response.data)
                        size += len(response.data)
                    code = "OK"
                    if hasher.hexdigest() != blob["hash"] or size != blob["size"]:
                        totals.wrong_bytes += 1
                    totals.bytes_read += size
                except grpc.aio.AioRpcError as error:
                    code = error.code().name
                totals.count("Read", code, (time.perf_counter() - started) * 1000)


async def run(args: argparse.Namespace) -> Dict[str, Any]:
    with open(args.plan, encoding="utf-8") as f:
        plan = json.load(f)
    totals = Totals()
    totals.budget = args.max_calls
    started = time.monotonic()
    deadline = started + args.seconds
    await asyncio.gather(*(one_client(n, args.target, plan, totals, deadline, args.seed) for n in range(args.clients)))
    elapsed = time.monotonic() - started
    gar = totals.latencies_ms["GetActionResult"]
    reads = totals.latencies_ms["Read"]
    return {
        "clients": args.clients,
        "elapsed_seconds": round(elapsed, 2),
        "calls": totals.calls,
        "calls_total": len(gar) + len(reads),
        "calls_per_second": round((len(gar) + len(reads)) / elapsed, 1),
        "wrong_bytes": totals.wrong_bytes,
        "wrong_hits": totals.wrong_hits,
        "lost_hits": totals.lost_hits,
        "bytes_read": totals.bytes_read,
        "get_action_result_ms": {
            "p50": round(percentile(gar, 0.50), 2),
            "p90": round(percentile(gar, 0.90), 2),
            "p99": round(percentile(gar, 0.99), 2),
            "max": round(max(gar, default=0.0), 2),
            "over_pants_timeout": sum(1 for v in gar if v > PANTS_TIMEOUT_MS),
        },
        "read_ms": {
            "p50": round(percentile(reads, 0.50), 2),
            "p99": round(percentile(reads, 0.99), 2),
            "max": round(max(reads, default=0.0), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-calls", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
