"""REAPI server benchmark: this server against its ceiling, a bare grpcio server, in one run.

Both servers run as subprocesses on 127.0.0.1 (free ports, temporary state directory):
  this server   `python -m oci_cache.cli.main serve --listen 127.0.0.1:0 --state-dir TMP`
  bare grpcio   bench/bare_grpc_server.py: the same REAPI method names answered from canned
                bytes, no protobuf parsing, no storage (the ceiling of Python gRPC here)
The client is this script: one grpc.aio process, N concurrent tasks on one channel, sending
pre-serialized requests. When h2load (nghttp2-client, a C HTTP/2 load generator) is on PATH,
GetActionResult is measured with it too: a Python client adds tail latency of its own, h2load
hardly any, like Pants' Rust client; the latency targets are then judged on the h2load rows.
Client and servers share the machine's cores, so every number is measured against the
ceiling in the same run and reported as a ratio.

Measures GetActionResult hit latency (concurrency 1, 32, 128; the ActionResult references
real blobs uploaded first, so the server's completeness check does real work), one-blob
BatchUpdateBlobs requests per second (4 KiB random blobs, distinct digests, concurrency 16),
and ByteStream Read / Write MB/s of a 64 MiB blob (1 MiB write chunks like Pants; read
offset 0 limit 0), then checks the targets of issue 2.

    python bench/reapi_bench.py [--quick] [--json [PATH]] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import resource
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

# This process starts server subprocesses while its gRPC channels are open; grpc's fork
# handlers are of no use for fork+exec and only print a warning.
_SET_FORK_SUPPORT = "GRPC_ENABLE_FORK_SUPPORT" not in os.environ
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402

import _h2load  # noqa: E402
import _harness  # noqa: E402

_harness.import_path_for_repo()

from oci_cache.reapi import bytestream_pb2, remote_execution_pb2  # noqa: E402

MIB = 1024 * 1024
STREAM_BLOB_BYTES = 64 * MIB
WRITE_CHUNK_BYTES = MIB
BATCH_BLOB_BYTES = 4096
BATCH_CONCURRENCY = 16
GAR_CONCURRENCIES = (1, 32, 128)

THIS = "this server"
BARE = "bare grpcio"

REAPI = "/build.bazel.remote.execution.v2"
GET_ACTION_RESULT = f"{REAPI}.ActionCache/GetActionResult"
UPDATE_ACTION_RESULT = f"{REAPI}.ActionCache/UpdateActionResult"
BATCH_UPDATE_BLOBS = f"{REAPI}.ContentAddressableStorage/BatchUpdateBlobs"
BYTESTREAM_READ = "/google.bytestream.ByteStream/Read"
BYTESTREAM_WRITE = "/google.bytestream.ByteStream/Write"

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * MIB),
    ("grpc.max_send_message_length", 16 * MIB),
]

# Targets of issue 2.
TARGET_GAR_P50_C1_MS = 1.0
TARGET_GAR_P99_C128_MS = 50.0
TARGET_READ_FRACTION = 0.70


@dataclass(frozen=True)
class Plan:
    """Fixed request counts, so a slow server makes the run longer but never unbounded."""

    gar_requests: Dict[int, int]
    gar_warmup: int
    batch_requests: int
    stream_repetitions: int
    rounds: int  # request counts are split into rounds that alternate between the servers

    @classmethod
    def default(cls) -> "Plan":
        return cls(
            {1: 4000, 32: 12000, 128: 16000}, gar_warmup=300, batch_requests=6000, stream_repetitions=7, rounds=6
        )

    @classmethod
    def quick(cls) -> "Plan":
        return cls({1: 500, 32: 1500, 128: 2000}, gar_warmup=100, batch_requests=600, stream_repetitions=2, rounds=2)


@dataclass
class Measurement:
    value: float
    elapsed_s: float
    server_cores: Optional[float]  # server CPU seconds / wall seconds during the measurement
    client_cores: float
    server_cpu_per_op_s: Optional[float]  # server CPU seconds per request (per blob for streams)
    extra: Dict[str, float] = field(default_factory=dict)


@dataclass
class Metric:
    key: str
    label: str
    unit: str
    lower_is_better: bool
    results: Dict[str, Measurement] = field(default_factory=dict)

    def fraction_of_ceiling(self) -> Optional[float]:
        """1.0 = as good as the bare server: this/bare for throughput, bare/this for latency."""
        this, bare = self.results.get(THIS), self.results.get(BARE)
        if this is None or bare is None or this.value <= 0 or bare.value <= 0:
            return None
        return bare.value / this.value if self.lower_is_better else this.value / bare.value


# --- requests ------------------------------------------------------------------------------


def digest_of(data: bytes) -> remote_execution_pb2.Digest:
    return remote_execution_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def resource_prefix(instance_name: str) -> str:
    return f"{instance_name}/" if instance_name else ""


def batch_update_request(instance_name: str, blobs: Sequence[bytes]) -> bytes:
    request = remote_execution_pb2.BatchUpdateBlobsRequest(instance_name=instance_name)
    for blob in blobs:
        request.requests.add(digest=digest_of(blob), data=blob)
    return request.SerializeToString()


def write_requests(instance_name: str, blob: bytes) -> List[bytes]:
    """ByteStream WriteRequests in 1 MiB chunks, as Pants sends them."""
    d = digest_of(blob)
    resource = f"{resource_prefix(instance_name)}uploads/{uuid.uuid4()}/blobs/{d.hash}/{d.size_bytes}"
    requests = []
    for offset in range(0, len(blob), WRITE_CHUNK_BYTES):
        chunk = blob[offset : offset + WRITE_CHUNK_BYTES]
        requests.append(
            bytestream_pb2.WriteRequest(
                resource_name=resource if offset == 0 else "",
                write_offset=offset,
                finish_write=offset + len(chunk) == len(blob),
                data=chunk,
            ).SerializeToString()
        )
    return requests


def read_request(instance_name: str, blob_digest: remote_execution_pb2.Digest) -> bytes:
    resource = f"{resource_prefix(instance_name)}blobs/{blob_digest.hash}/{blob_digest.size_bytes}"
    return bytestream_pb2.ReadRequest(resource_name=resource, read_offset=0, read_limit=0).SerializeToString()


def stream_blob(repetition: int, base: bytes) -> bytes:
    """A distinct 64 MiB blob per repetition, so no upload can be skipped as already present."""
    return repetition.to_bytes(8, "big") + base[8:]


# --- one server under test -----------------------------------------------------------------


class Target:
    """A running server and the raw-bytes callables the client uses on it."""

    def __init__(self, label: str, process: _harness.ServerProcess, check_responses: bool) -> None:
        self.label = label
        self.process = process
        self.check_responses = check_responses
        self.channel = grpc.aio.insecure_channel(process.address, options=CHANNEL_OPTIONS)
        self.get_action_result = self.channel.unary_unary(GET_ACTION_RESULT)
        self.update_action_result = self.channel.unary_unary(UPDATE_ACTION_RESULT)
        self.batch_update_blobs = self.channel.unary_unary(BATCH_UPDATE_BLOBS)
        self.read = self.channel.unary_stream(BYTESTREAM_READ)
        self.write = self.channel.stream_unary(BYTESTREAM_WRITE)

    async def close(self) -> None:
        await self.channel.close()

    async def timed(self, run: Callable[[], Awaitable[None]], usage: "Usage") -> None:
        """Runs `run` with the client's garbage collector paused, adding wall and CPU time to `usage`."""
        gc.collect()
        gc.disable()
        try:
            server_cpu0 = self.process.cpu_seconds()
            client_cpu0 = _client_cpu_seconds()
            started = time.perf_counter()
            await run()
            elapsed = time.perf_counter() - started
            client_cpu = _client_cpu_seconds() - client_cpu0
            server_cpu1 = self.process.cpu_seconds()
        finally:
            gc.enable()
        server_cpu = None if server_cpu0 is None or server_cpu1 is None else server_cpu1 - server_cpu0
        usage.add(elapsed, server_cpu, client_cpu)


def _client_cpu_seconds() -> float:
    """This process plus its waited-for children (h2load; the servers are reaped only at the end)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class Usage:
    """Wall time and CPU time on both sides, summed over the rounds of one measurement."""

    elapsed_s: float = 0.0
    server_cpu_s: Optional[float] = 0.0
    client_cpu_s: float = 0.0

    def add(self, elapsed_s: float, server_cpu_s: Optional[float], client_cpu_s: float) -> None:
        self.elapsed_s += elapsed_s
        self.client_cpu_s += client_cpu_s
        if server_cpu_s is None or self.server_cpu_s is None:
            self.server_cpu_s = None
        else:
            self.server_cpu_s += server_cpu_s

    def measurement(self, value: float, operations: int) -> Measurement:
        server_cores = per_op = None
        if self.server_cpu_s is not None:
            server_cores = self.server_cpu_s / self.elapsed_s
            per_op = self.server_cpu_s / operations
        return Measurement(value, self.elapsed_s, server_cores, self.client_cpu_s / self.elapsed_s, per_op)


def in_turns(targets: Sequence[Target], round_index: int) -> List[Target]:
    """The targets in alternating order, so drifting load on a shared machine hits both alike."""
    return list(targets) if round_index % 2 == 0 else list(reversed(targets))


def split(total: int, parts: int) -> List[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def fan_out(concurrency: int, total: int, one: Callable[[int], Awaitable[None]]) -> None:
    """Calls `one(i)` for i in range(total) from `concurrency` tasks."""
    indices = iter(range(total))

    async def worker() -> None:
        for i in indices:  # a shared iterator: each index is taken once
            await one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def unary_latency(
    call: Callable[[bytes], Awaitable[bytes]], request: bytes, concurrency: int, total: int
) -> Tuple[List[float], float]:
    latencies: List[float] = []

    async def one(_: int) -> None:
        started = time.perf_counter()
        await call(request)
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await fan_out(concurrency, total, one)
    return sorted(latencies), time.perf_counter() - started


# --- GetActionResult clients ----------------------------------------------------------------


class LatencyClient(Protocol):
    name: str
    key_prefix: str  # of the metric keys, e.g. "gar" -> gar_c128_p99_ms
    label_suffix: str

    async def latencies(self, target: Target, concurrency: int, count: int) -> List[float]: ...


class AioClient:
    """The grpc.aio client of this process: N tasks on one channel."""

    name = "grpc.aio"
    key_prefix = "gar"
    label_suffix = ""

    def __init__(self, request: bytes) -> None:
        self.request = request

    async def latencies(self, target: Target, concurrency: int, count: int) -> List[float]:
        values, _ = await unary_latency(target.get_action_result, self.request, concurrency, count)
        return values


class H2loadClient:
    """h2load (C) on one connection with N concurrent streams; see bench/_h2load.py."""

    name = "h2load"
    key_prefix = "gar_h2load"
    label_suffix = " (h2load)"

    def __init__(self, h2load: str, request: bytes, response_bytes: int, workdir: str) -> None:
        self.h2load = h2load
        self.body_path = os.path.join(workdir, "get_action_result.grpc")
        self.log_path = os.path.join(workdir, "h2load.log")
        self.response_bytes = response_bytes
        _h2load.write_grpc_body(self.body_path, request)

    async def latencies(self, target: Target, concurrency: int, count: int) -> List[float]:
        run = await _h2load.run_h2load(
            self.h2load, target.process.address, GET_ACTION_RESULT, self.body_path, self.log_path, count, concurrency
        )
        # Every answer must be the ActionResult (5-byte gRPC prefix + message); a miss has none.
        expected = count * (5 + self.response_bytes)
        if run.succeeded != count or len(run.latencies_s) != count or run.data_bytes < expected:
            raise RuntimeError(
                f"{target.label}: h2load got {run.succeeded}/{count} answers, "
                f"{run.data_bytes} of {expected} response bytes: not every GetActionResult was a hit"
            )
        return run.latencies_s


# --- the benchmark -------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, instance_name: str, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.instance_name = instance_name
        self.log = log
        self.metrics: Dict[str, Metric] = {}
        self.notes: List[str] = []
        # Setup results, shared with the bare server so both return the same bytes.
        self.gar_request = b""
        self.action_result_bytes = b""
        self.stream_base = os.urandom(STREAM_BLOB_BYTES)
        self.stream_digest = digest_of(self.stream_base)

    def metric(self, key: str, label: str, unit: str, lower_is_better: bool) -> Metric:
        if key not in self.metrics:
            self.metrics[key] = Metric(key, label, unit, lower_is_better)
        return self.metrics[key]

    # setup ---------------------------------------------------------------------------------

    def build_action(self) -> Tuple[List[bytes], remote_execution_pb2.Digest, remote_execution_pb2.ActionResult]:
        """A cache entry like a small Pants test run: four output files and stdout."""
        files = [os.urandom(n) for n in (120, 2_000, 30_000, 250_000)]
        stdout = b"============================= 12 passed in 0.34s ==============================\n"
        result = remote_execution_pb2.ActionResult(exit_code=0, stdout_digest=digest_of(stdout))
        for i, data in enumerate(files):
            result.output_files.add(path=f"dist/out/file_{i}.bin", digest=digest_of(data), is_executable=i == 0)
        action_digest = digest_of(b"reapi_bench action " + os.urandom(16))
        return files + [stdout], action_digest, result

    async def set_up_this_server(self, target: Target) -> None:
        blobs, action_digest, result = self.build_action()
        response = remote_execution_pb2.BatchUpdateBlobsResponse.FromString(
            await target.batch_update_blobs(batch_update_request(self.instance_name, blobs))
        )
        failed = [r for r in response.responses if r.status.code != 0]
        if failed:
            raise RuntimeError(f"{target.label}: BatchUpdateBlobs failed during setup: {failed[0]}")
        await target.update_action_result(
            remote_execution_pb2.UpdateActionResultRequest(
                instance_name=self.instance_name, action_digest=action_digest, action_result=result
            ).SerializeToString()
        )
        self.gar_request = remote_execution_pb2.GetActionResultRequest(
            instance_name=self.instance_name, action_digest=action_digest
        ).SerializeToString()
        self.action_result_bytes = await target.get_action_result(self.gar_request)
        got = remote_execution_pb2.ActionResult.FromString(self.action_result_bytes)
        if list(got.output_files) != list(result.output_files) or got.stdout_digest != result.stdout_digest:
            raise RuntimeError(f"{target.label}: GetActionResult returned a different ActionResult:\n{got}")

        # The 64 MiB blob that every Read measurement fetches, uploaded and read back once.
        await self.write_blob(target, self.stream_base)
        hasher = hashlib.sha256()
        received = 0
        async for raw in target.read(read_request(self.instance_name, self.stream_digest)):
            data = bytestream_pb2.ReadResponse.FromString(raw).data
            hasher.update(data)
            received += len(data)
        if received != STREAM_BLOB_BYTES or hasher.hexdigest() != self.stream_digest.hash:
            raise RuntimeError(f"{target.label}: ByteStream.Read returned {received} bytes with the wrong digest")

    def set_up_without_this_server(self) -> None:
        _, action_digest, result = self.build_action()
        self.gar_request = remote_execution_pb2.GetActionResultRequest(
            instance_name=self.instance_name, action_digest=action_digest
        ).SerializeToString()
        self.action_result_bytes = result.SerializeToString()

    async def write_blob(self, target: Target, blob: bytes) -> None:
        raw = await target.write(_iterate(write_requests(self.instance_name, blob)))
        if target.check_responses:
            committed = bytestream_pb2.WriteResponse.FromString(raw).committed_size
            if committed != len(blob):
                raise RuntimeError(f"{target.label}: ByteStream.Write committed {committed} of {len(blob)} bytes")

    # measurements --------------------------------------------------------------------------

    async def get_action_result(self, targets: Sequence[Target], client: LatencyClient) -> None:
        for concurrency in GAR_CONCURRENCIES:
            total = self.plan.gar_requests[concurrency]
            self.log(f"GetActionResult c={concurrency} x{total}, {client.name}, {self.plan.rounds} rounds per server")
            for target in targets:
                await client.latencies(target, concurrency, self.plan.gar_warmup)
            latencies: Dict[str, List[float]] = {t.label: [] for t in targets}
            usage = {t.label: Usage() for t in targets}
            for round_index, count in enumerate(split(total, self.plan.rounds)):
                for target in in_turns(targets, round_index):

                    async def run() -> None:
                        latencies[target.label].extend(await client.latencies(target, concurrency, count))

                    await target.timed(run, usage[target.label])
            prefix, suffix = client.key_prefix, client.label_suffix
            for target in targets:
                values = sorted(latencies[target.label])
                u = usage[target.label]
                for key, label, value, unit, lower in (
                    (f"{prefix}_c{concurrency}_p50_ms", f"GetActionResult hit p50, c={concurrency}{suffix}",
                     _harness.percentile(values, 0.50) * 1e3, "ms", True),
                    (f"{prefix}_c{concurrency}_p99_ms", f"GetActionResult hit p99, c={concurrency}{suffix}",
                     _harness.percentile(values, 0.99) * 1e3, "ms", True),
                    (f"{prefix}_c{concurrency}_rps", f"GetActionResult hits/s, c={concurrency}{suffix}",
                     total / u.elapsed_s, "RPC/s", False),
                ):
                    self.metric(key, label, unit, lower).results[target.label] = u.measurement(value, total)

    async def batch_update_blobs(self, targets: Sequence[Target]) -> None:
        total = self.plan.batch_requests
        self.log(f"BatchUpdateBlobs 1 x 4 KiB c={BATCH_CONCURRENCY} x{total} in {self.plan.rounds} rounds per server")
        usage = {t.label: Usage() for t in targets}
        for round_index, count in enumerate(split(total, self.plan.rounds)):
            for target in in_turns(targets, round_index):
                # Distinct random blobs, serialized before the clock starts.
                requests = [
                    batch_update_request(self.instance_name, [os.urandom(BATCH_BLOB_BYTES)]) for _ in range(count)
                ]

                async def one(i: int) -> None:
                    response = remote_execution_pb2.BatchUpdateBlobsResponse.FromString(
                        await target.batch_update_blobs(requests[i])
                    )
                    if any(r.status.code != 0 for r in response.responses):
                        raise RuntimeError(f"{target.label}: BatchUpdateBlobs failed: {response}")

                async def run() -> None:
                    await fan_out(BATCH_CONCURRENCY, count, one)

                await target.timed(run, usage[target.label])
        metric = self.metric("batch_update_rps", f"BatchUpdateBlobs 1x4 KiB, c={BATCH_CONCURRENCY}", "req/s", False)
        for target in targets:
            u = usage[target.label]
            metric.results[target.label] = u.measurement(total / u.elapsed_s, total)

    async def bytestream(self, targets: Sequence[Target]) -> None:
        reps = self.plan.stream_repetitions
        reads: Dict[str, List[Measurement]] = {t.label: [] for t in targets}
        writes: Dict[str, List[Measurement]] = {t.label: [] for t in targets}
        read_req = read_request(self.instance_name, self.stream_digest)
        for rep in range(reps):
            self.log(f"ByteStream Read and Write 64 MiB, repetition {rep + 1}/{reps}")
            for target in in_turns(targets, rep):

                async def read() -> None:
                    received = 0
                    async for raw in target.read(read_req):
                        received += len(raw)
                    if received < STREAM_BLOB_BYTES:
                        raise RuntimeError(f"{target.label}: Read returned {received} of {STREAM_BLOB_BYTES} bytes")

                usage = Usage()
                await target.timed(read, usage)
                reads[target.label].append(usage.measurement(STREAM_BLOB_BYTES / usage.elapsed_s / 1e6, 1))

            blob = stream_blob(rep + 1, self.stream_base)
            for target in in_turns(targets, rep):
                requests = write_requests(self.instance_name, blob)  # a fresh upload id each time
                responses: List[bytes] = []

                async def write() -> None:
                    responses.append(await target.write(_iterate(requests)))

                usage = Usage()
                await target.timed(write, usage)
                if target.check_responses:
                    committed = bytestream_pb2.WriteResponse.FromString(responses[0]).committed_size
                    if committed != STREAM_BLOB_BYTES:
                        raise RuntimeError(f"{target.label}: Write committed {committed} of {STREAM_BLOB_BYTES} bytes")
                writes[target.label].append(usage.measurement(STREAM_BLOB_BYTES / usage.elapsed_s / 1e6, 1))
        for key, label, runs in (
            ("read_64mib_mbps", f"ByteStream Read 64 MiB, median of {reps}", reads),
            ("write_64mib_mbps", f"ByteStream Write 64 MiB (1 MiB chunks), median of {reps}", writes),
        ):
            metric = self.metric(key, label, "MB/s", False)
            for target_label, measurements in runs.items():
                metric.results[target_label] = _median_measurement(measurements)


def _median_measurement(measurements: List[Measurement]) -> Measurement:
    """The median value; CPU figures are medians too (each of its own column)."""

    def median_of(values: List[Optional[float]]) -> Optional[float]:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    ordered = sorted(measurements, key=lambda m: m.value)
    return Measurement(
        value=statistics.median(m.value for m in ordered),
        elapsed_s=sum(m.elapsed_s for m in ordered),
        server_cores=median_of([m.server_cores for m in ordered]),
        client_cores=statistics.median(m.client_cores for m in ordered),
        server_cpu_per_op_s=median_of([m.server_cpu_per_op_s for m in ordered]),
        extra={"min": ordered[0].value, "max": ordered[-1].value, "runs": float(len(ordered))},
    )


async def _iterate(items: Sequence[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


# --- reporting -----------------------------------------------------------------------------


def _fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    return f"{value:,.0f} {unit}"


def _cpu_per_op(m: Optional[Measurement]) -> str:
    seconds = None if m is None else m.server_cpu_per_op_s
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.1f} ms" if seconds < 10e-3 else f"{seconds * 1e3:.0f} ms"


def _cores(m: Optional[Measurement], side: str) -> str:
    cores = None if m is None else (m.server_cores if side == "server" else m.client_cores)
    return "-" if cores is None else f"{cores:.2f}"


def results_table(metrics: Sequence[Metric]) -> str:
    header = [
        "metric",
        "this server",
        "bare grpcio (ceiling)",
        "this as % of ceiling",
        "server CPU/op: this / bare",
        "server cores: this / bare",
        "client cores: this / bare",
    ]
    rows = []
    for m in metrics:
        this, bare = m.results.get(THIS), m.results.get(BARE)
        fraction = m.fraction_of_ceiling()
        rows.append(
            [
                m.label,
                _fmt(this.value if this else None, m.unit),
                _fmt(bare.value if bare else None, m.unit),
                "-" if fraction is None else f"{fraction * 100:.0f}%",
                f"{_cpu_per_op(this)} / {_cpu_per_op(bare)}",
                f"{_cores(this, 'server')} / {_cores(bare, 'server')}",
                f"{_cores(this, 'client')} / {_cores(bare, 'client')}",
            ]
        )
    legend = (
        "this as % of ceiling: throughput this/bare, latency bare/this (100% = as fast as bare grpcio).\n"
        "server CPU/op: server CPU time per request (per 64 MiB blob for the streams); cores: CPU seconds\n"
        "per wall second during the measurement (server process; client = this script, plus h2load on its rows), of "
        f"{os.cpu_count()} shared cores."
    )
    return _harness.format_table(header, rows) + "\n" + legend


@dataclass
class TargetCheck:
    name: str
    passed: Optional[bool]  # None: not measured
    detail: str


def check_targets(metrics: Dict[str, Metric]) -> List[TargetCheck]:
    """The latency targets are judged on the h2load rows when there are some: like Pants'
    own (Rust) client, h2load adds little latency of its own; the grpc.aio rows are shown too."""
    checks = []

    def value(key: str, label: str) -> Optional[float]:
        m = metrics.get(key)
        r = m.results.get(label) if m else None
        return r.value if r else None

    def latency_check(name: str, key: str, limit_ms: float) -> TargetCheck:
        judged: Optional[float] = None
        details = []
        for prefix, client in (("gar_h2load", "h2load"), ("gar", "grpc.aio client")):
            this, bare = value(f"{prefix}_{key}", THIS), value(f"{prefix}_{key}", BARE)
            if this is None:
                continue
            if judged is None:
                judged = this
            bare_text = "-" if bare is None else f"{bare:.3g} ms"
            details.append(f"{this:.3g} ms with {client} (bare grpcio {bare_text})")
        return TargetCheck(
            name, None if judged is None else judged <= limit_ms, "; ".join(details) if details else "not measured"
        )

    checks.append(
        latency_check(f"GetActionResult hit p50 <= {TARGET_GAR_P50_C1_MS:g} ms at concurrency 1", "c1_p50_ms",
                      TARGET_GAR_P50_C1_MS)
    )
    checks.append(
        latency_check(f"GetActionResult hit p99 <= {TARGET_GAR_P99_C128_MS:g} ms at concurrency 128", "c128_p99_ms",
                      TARGET_GAR_P99_C128_MS)
    )
    read = metrics.get("read_64mib_mbps")
    fraction = read.fraction_of_ceiling() if read else None
    checks.append(
        TargetCheck(
            f"ByteStream Read 64 MiB >= {TARGET_READ_FRACTION:.0%} of ceiling",
            None if fraction is None else fraction >= TARGET_READ_FRACTION,
            "not measured"
            if fraction is None or read is None
            else f"{fraction:.0%} ({read.results[THIS].value:,.0f} vs {read.results[BARE].value:,.0f} MB/s)",
        )
    )
    return checks


def json_results(
    machine: Dict[str, object], settings: Dict[str, object], metrics: Sequence[Metric], checks: Sequence[TargetCheck]
) -> Dict[str, object]:
    return {
        "benchmark": "reapi_bench",
        "machine": machine,
        "settings": settings,
        "metrics": {
            m.key: {
                "label": m.label,
                "unit": m.unit,
                "lower_is_better": m.lower_is_better,
                "fraction_of_ceiling": m.fraction_of_ceiling(),
                "results": {
                    label: {
                        "value": r.value,
                        "elapsed_s": r.elapsed_s,
                        "server_cores": r.server_cores,
                        "client_cores": r.client_cores,
                        "server_cpu_per_op_s": r.server_cpu_per_op_s,
                        **r.extra,
                    }
                    for label, r in m.results.items()
                },
            }
            for m in metrics
        },
        "targets": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in checks],
    }


# --- main ----------------------------------------------------------------------------------


def this_server_command(state_dir: str, extra_args: Sequence[str], command: Optional[str] = None) -> List[str]:
    prefix = shlex.split(command) if command else [sys.executable, "-m", "oci_cache.cli.main", "serve"]
    return [
        *prefix,
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state_dir,
        *extra_args,
    ]


def bare_server_command(action_result_path: str, mode: str) -> List[str]:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bare_grpc_server.py")
    return [
        sys.executable,
        script,
        "--listen",
        "127.0.0.1:0",
        "--mode",
        mode,
        "--action-result",
        action_result_path,
        "--read-mib",
        str(STREAM_BLOB_BYTES // MIB),
    ]


async def run_benchmark(args: argparse.Namespace, workdir: str, processes: List[_harness.ServerProcess]) -> Bench:
    plan = Plan.quick() if args.quick else Plan.default()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"  .. {message}", file=sys.stderr, flush=True)

    bench = Bench(plan, args.instance_name, log)
    h2load: Optional[str] = args.h2load_path
    env = _harness.env_with_repo_sources()
    if _SET_FORK_SUPPORT:
        env.pop("GRPC_ENABLE_FORK_SUPPORT", None)  # the servers get the environment we were given
    targets: List[Target] = []
    try:
        if not args.ceiling_only:
            state_dir = os.path.join(workdir, "state")
            os.makedirs(state_dir)
            this = _harness.ServerProcess(
                THIS,
                this_server_command(state_dir, args.server_arg, args.server_command),
                os.path.join(workdir, "this-server.log"),
                env,
            )
            processes.append(this)
            log(f"starting {THIS}: {' '.join(this.argv)}")
            this.start(timeout=args.start_timeout)
            this_target = Target(THIS, this, check_responses=True)
            targets.append(this_target)
            log(f"setting up {THIS} at {this.address} (blobs, action result, 64 MiB blob)")
            await bench.set_up_this_server(this_target)
        else:
            bench.set_up_without_this_server()

        action_result_path = os.path.join(workdir, "action_result.bin")
        with open(action_result_path, "wb") as f:
            f.write(bench.action_result_bytes)
        bare = _harness.ServerProcess(
            BARE, bare_server_command(action_result_path, args.bare_mode), os.path.join(workdir, "bare.log"), env
        )
        processes.append(bare)
        log(f"starting {BARE} ({args.bare_mode})")
        bare.start(timeout=args.start_timeout)
        bare_target = Target(BARE, bare, check_responses=False)
        targets.insert(0, bare_target)  # the ceiling first, then this server, per measurement

        await bench.get_action_result(targets, AioClient(bench.gar_request))
        if h2load:
            h2_client = H2loadClient(h2load, bench.gar_request, len(bench.action_result_bytes), workdir)
            await bench.get_action_result(targets, h2_client)
        await bench.batch_update_blobs(targets)
        await bench.bytestream(targets)
    finally:
        for target in targets:
            await target.close()
    return bench


def resolve_h2load(choice: str) -> Optional[str]:
    if choice == "no":
        return None
    path = _h2load.find_h2load()
    if path is None and choice == "yes":
        raise SystemExit("reapi_bench: --h2load yes, but h2load is not on PATH (apt-get install nghttp2-client)")
    return path


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and repetitions (~15 s)")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="also write the results as JSON, to PATH or (no PATH) to stdout after the table",
    )
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a target fails")
    parser.add_argument("--ceiling-only", action="store_true", help="measure only the bare grpcio server")
    parser.add_argument(
        "--bare-mode", choices=("aio", "sync"), default="aio", help="the bare server's flavour (default aio)"
    )
    parser.add_argument(
        "--h2load",
        choices=("auto", "yes", "no"),
        default="auto",
        help="also measure GetActionResult with h2load, a C HTTP/2 client (auto: when it is on PATH)",
    )
    parser.add_argument("--instance-name", default="", help="REAPI instance name used in every request")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra argument for `oci-cache serve` (repeatable)"
    )
    parser.add_argument(
        "--server-command",
        help="run this instead of `python -m oci_cache.cli.main serve` (shell words; "
        "`--listen 127.0.0.1:0 --state-dir DIR` are appended), e.g. to try a variant",
    )
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds a server may take to listen")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temporary state dir and server logs")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    args.h2load_path = resolve_h2load(args.h2load)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    machine = _harness.machine_info()
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="reapi-bench-")
    processes: List[_harness.ServerProcess] = []
    keep_workdir = args.keep_workdir
    try:
        bench = asyncio.run(run_benchmark(args, workdir, processes))
    except KeyboardInterrupt:
        print("reapi_bench: interrupted; servers stopped", file=sys.stderr)
        return 130
    except _harness.ServerStartError as e:
        print(f"reapi_bench: {e}", file=sys.stderr)
        return 2
    except BaseException:
        keep_workdir = True
        raise
    finally:
        for process in processes:
            process.stop()
        if keep_workdir:
            print(f"reapi_bench: state dir and server logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    metrics = list(bench.metrics.values())
    checks = check_targets(bench.metrics)
    plan = bench.plan
    settings: Dict[str, object] = {
        "quick": args.quick,
        "gar_requests": plan.gar_requests,
        "gar_warmup": plan.gar_warmup,
        "batch_requests": plan.batch_requests,
        "batch_concurrency": BATCH_CONCURRENCY,
        "stream_repetitions": plan.stream_repetitions,
        "rounds": plan.rounds,
        "bare_mode": args.bare_mode,
        "client": "one grpc.aio process (this script), N concurrent tasks on one channel",
        "h2load": args.h2load_path,
        "wall_s": round(time.monotonic() - started, 1),
    }
    load_at_start = machine.get("loadavg_1m", "?")
    machine["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(
        f"REAPI server benchmark (bench/reapi_bench.py{' --quick' if args.quick else ''})\n"
        f"machine: {machine['nproc']} cores, load {load_at_start} at start and {machine['loadavg_1m_at_end']} "
        "at end, "
        f"Python {machine['python']}, grpcio {machine['grpcio']}, protobuf {machine.get('protobuf', '?')}\n"
        f"client: {settings['client']}, pre-serialized requests"
        f"{'; (h2load) rows: h2load, one connection, N concurrent streams' if settings['h2load'] else ''}\n"
        f"servers in their own processes; client and servers share the {machine['nproc']} cores\n"
        f"bare grpcio = bench/bare_grpc_server.py --mode {args.bare_mode} (canned bytes, no parsing, no storage)\n"
    )
    print(results_table(metrics))
    print("\nTargets (issue 2):")
    for c in checks:
        verdict = "n/a " if c.passed is None else ("PASS" if c.passed else "FAIL")
        print(f"  {verdict}  {c.name}: {c.detail}")
    print(f"\ntotal wall time {settings['wall_s']} s")
    if args.json:
        document = json.dumps(json_results(machine, settings, metrics, checks), indent=2, sort_keys=False)
        if args.json == "-":
            print(document)
        else:
            with open(args.json, "w") as f:
                f.write(document + "\n")
    if args.check and any(c.passed is False for c in checks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
