"""Fuzzing the gRPC surface of a real `oci-cache serve` (issue 5, item 4).

A seeded generator (hostile_requests) makes hostile requests for every RPC:
resource names, offsets and limits, digests and sizes, batches with duplicates and
mismatches, zstd bombs and garbage, Write streams that change name or offset, finish
twice, stop early or are cancelled, messages over the receive limit, bytes that are no
message at all, unknown methods, bad GetTree page tokens, garbage ActionResults.
One server takes all of them; then:

- the server process never went away, and still answers valid calls correctly;
- every status code is one the spec allows for that input (never UNKNOWN, INTERNAL or
  UNAVAILABLE), and every OK answer carries the right bytes;
- every write the server acknowledged is stored, byte for byte;
- the server log holds no traceback (apart from one known grpc.aio message, counted);
- the server's peak RSS (VmHWM) stays bounded.

Environment knobs (all optional):
  OCI_CACHE_FUZZ_SEED=N         the seed (default 20240605)
  OCI_CACHE_FUZZ_CASES=N        cases in the fast run (default 10000)
  OCI_CACHE_FUZZ_CASE=I         run only case I of the seed (to reproduce a failure)
  OCI_CACHE_FUZZ_WORKERS=N      concurrent client threads (default 4)
  OCI_CACHE_FUZZ_LONG_CASES=N   cases per seed in the slow run (default 50000, 2 seeds)
  OCI_CACHE_FUZZ_REPORT=PATH    also write the run's figures there as JSON ("{seed}" in PATH: the seed)
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Sequence

import grpc
import pytest

from fuzz_runner import FUZZ_CHANNEL_OPTIONS, FuzzReport, FuzzRunner, preload, run_cases
from hostile_requests import SPEC_CODES, Corpus, FuzzCase, read_check, generate_case, sha256_hex
from oci_cache.reapi import bytestream_pb2, bytestream_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from process_watch import KNOWN_GRPC_AIO_NOISE, MIB, ProcessWatch, unexpected_log_records
from server_fixtures import ServerProcess, start_server

SEED = int(os.environ.get("OCI_CACHE_FUZZ_SEED", "20240605"))
FAST_CASES = int(os.environ.get("OCI_CACHE_FUZZ_CASES", "10000"))
ONLY_CASE = os.environ.get("OCI_CACHE_FUZZ_CASE")
WORKERS = int(os.environ.get("OCI_CACHE_FUZZ_WORKERS", "4"))
LONG_CASES = int(os.environ.get("OCI_CACHE_FUZZ_LONG_CASES", "50000"))
LONG_SEEDS = (SEED + 1, SEED + 2)
REPORT_PATH = os.environ.get("OCI_CACHE_FUZZ_REPORT")

# Bound on the server's peak RSS over the fast run. With the zstd leak fixed (measured by
# patching it out locally) the server peaks near 210 MiB here (start ~50 MiB; 4 MiB batches,
# 5-8 MiB messages, zstd contexts on 32 worker threads); with the leak it passes 550 MiB.
RSS_BOUND_BYTES = 384 * MIB


@dataclass
class FuzzRun:
    seed: int
    server: ServerProcess
    report: FuzzReport
    watch: ProcessWatch
    log_alarms: List[str]
    log_noise: List[str]
    after_problems: List[str]
    acknowledged_problems: List[str]

    def figures(self) -> dict:
        return {
            "seed": self.seed,
            "cases": self.report.cases,
            "seconds": round(self.report.seconds, 1),
            "status_codes": dict(self.report.codes),
            "kinds": {k: dict(v) for k, v in self.report.kinds.items()},
            "problems": [o.describe() for o in self.report.problems[:50]],
            "acknowledged_writes": len(self.report.acknowledged),
            "start_rss_mib": round(self.watch.start_rss_bytes / MIB, 1),
            "peak_rss_mib": round(self.watch.peak_rss_bytes / MIB, 1),
            "end_rss_mib": round(self.watch.last_rss_bytes / MIB, 1),
            "log_alarms": len(self.log_alarms),
            "known_grpc_aio_noise": len(self.log_noise),
        }


def fuzz(server: ServerProcess, seed: int, indices: Sequence[int], workers: int = WORKERS) -> FuzzRun:
    channel = grpc.insecure_channel(server.target, options=FUZZ_CHANNEL_OPTIONS)
    try:
        corpus = Corpus.build(seed)
        preload(channel, corpus)
        watch = ProcessWatch(server.pid)
        try:
            report = run_cases(channel, seed, indices, corpus, workers=workers)
        finally:
            watch.stop()
    finally:
        channel.close()
    check_channel = server.channel()
    after = valid_calls_still_work(check_channel, corpus) if server.is_running() else ["the server exited"]
    acknowledged = acknowledged_blobs_problems(check_channel, report.acknowledged) if server.is_running() else []
    alarms, noise = unexpected_log_records(server.log_text(), [KNOWN_GRPC_AIO_NOISE])
    run = FuzzRun(seed, server, report, watch, alarms, noise, after, acknowledged)
    print(f"\nfuzz seed {seed}: " + report.summary())
    print(
        f"server RSS: start {watch.start_rss_bytes / MIB:.0f} MiB, peak {watch.peak_rss_bytes / MIB:.0f} MiB, "
        f"end {watch.last_rss_bytes / MIB:.0f} MiB; log: {len(alarms)} alarming, {len(noise)} known grpc.aio noise"
    )
    if REPORT_PATH:
        Path(REPORT_PATH.replace("{seed}", str(seed))).write_text(json.dumps(run.figures(), indent=2, sort_keys=True))
    return run


def valid_calls_still_work(channel: grpc.Channel, corpus: Corpus) -> List[str]:
    """After the storm: capabilities, a fresh write and read, a known hit, a known blob."""
    problems: List[str] = []
    try:
        caps = re_grpc.CapabilitiesStub(channel).GetCapabilities(re_pb2.GetCapabilitiesRequest(), timeout=10)
        if caps.cache_capabilities.max_batch_total_size_bytes <= 0:
            problems.append("GetCapabilities lost max_batch_total_size_bytes")
        data = b"after the fuzz " + uuid.uuid4().bytes * 1000
        name_digest = f"{sha256_hex(data)}/{len(data)}"
        bytestream = bytestream_pb2_grpc.ByteStreamStub(channel)
        written = bytestream.Write(
            iter(
                [
                    bytestream_pb2.WriteRequest(
                        resource_name=f"uploads/{uuid.uuid4()}/blobs/{name_digest}", data=data, finish_write=True
                    )
                ]
            ),
            timeout=10,
        )
        if written.committed_size != len(data):
            problems.append(f"a fresh Write committed {written.committed_size} of {len(data)}")
        read = b"".join(
            r.data
            for r in bytestream.Read(bytestream_pb2.ReadRequest(resource_name=f"blobs/{name_digest}"), timeout=10)
        )
        if read != data:
            problems.append("a fresh blob read back differently")
        action_hash, (size, result) = sorted(corpus.actions.items())[0]
        hit = re_grpc.ActionCacheStub(channel).GetActionResult(
            re_pb2.GetActionResultRequest(action_digest=re_pb2.Digest(hash=action_hash, size_bytes=size)), timeout=10
        )
        if hit.SerializeToString() != result:
            problems.append("a corpus ActionResult changed")
        biggest = max(corpus.blobs.values(), key=len)
        got = b"".join(
            r.data
            for r in bytestream.Read(
                bytestream_pb2.ReadRequest(resource_name=f"blobs/{sha256_hex(biggest)}/{len(biggest)}"), timeout=10
            )
        )
        if got != biggest:
            problems.append("the largest corpus blob reads back differently")
    except grpc.RpcError as error:
        problems.append(f"a valid call failed: {error.code().name} {error.details()}")  # type: ignore[attr-defined]
    return problems


def acknowledged_blobs_problems(channel: grpc.Channel, blobs: Sequence[bytes]) -> List[str]:
    """Every acknowledged blob must be present and read back byte for byte."""
    cas = re_grpc.ContentAddressableStorageStub(channel)
    unique = {sha256_hex(b): b for b in blobs}
    problems: List[str] = []
    items = sorted(unique.items())
    for start in range(0, len(items), 500):
        part = items[start : start + 500]
        digests = [re_pb2.Digest(hash=h, size_bytes=len(b)) for h, b in part]
        missing = cas.FindMissingBlobs(
            re_pb2.FindMissingBlobsRequest(blob_digests=digests), timeout=30
        ).missing_blob_digests
        problems += [f"acknowledged blob {m.hash}/{m.size_bytes} is missing" for m in missing]
        small = [d for d in digests if d.size_bytes < 64 * 1024]
        for item in cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(digests=small[:200]), timeout=30).responses:
            if item.status.code != 0 or hashlib.sha256(item.data).hexdigest() != item.digest.hash:
                problems.append(f"acknowledged blob {item.digest.hash} reads back wrong (status {item.status.code})")
    return problems


def _indices() -> List[int]:
    return [int(ONLY_CASE)] if ONLY_CASE else list(range(FAST_CASES))


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzRun]:
    server = start_server(tmp_path_factory.mktemp("fuzz") / "state")
    try:
        yield fuzz(server, SEED, _indices())
    finally:
        server.stop()


def _assert_clean(run: FuzzRun, expected_cases: int) -> None:
    assert run.report.cases == expected_cases
    assert run.watch.died_at is None, f"the server died {run.watch.died_at:.1f}s into the fuzz"
    assert run.server.is_running()
    assert not run.report.problems, f"{len(run.report.problems)} bad answers; first ones:\n" + "\n".join(
        o.describe() for o in run.report.problems[:20]
    )
    assert not run.after_problems, run.after_problems
    assert not run.log_alarms, "server log:\n" + "\n---\n".join(run.log_alarms[:5])


# --- the fast run (CI) ---------------------------------------------------------------------------


def test_fuzz_no_crash_and_only_specified_codes(fast_run: FuzzRun) -> None:
    _assert_clean(fast_run, len(_indices()))
    if not ONLY_CASE and FAST_CASES >= 2000:
        assert set(fast_run.report.codes) - {"CANCELLED", "DEADLINE_EXCEEDED", "UNIMPLEMENTED"} <= {
            c.name for c in SPEC_CODES
        }
        # The run reached every family of cases, and each kind of answer.
        for family in ("read/", "write/", "zwrite/", "cas/", "ac/", "raw/", "query/", "deadline/"):
            assert any(kind.startswith(family) for kind in fast_run.report.kinds), family
        for code in (
            "OK",
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "OUT_OF_RANGE",
            "RESOURCE_EXHAUSTED",
            "CANCELLED",
            "UNIMPLEMENTED",
        ):
            assert fast_run.report.codes.get(code, 0) > 0, code


def test_fuzz_acknowledged_writes_are_stored(fast_run: FuzzRun) -> None:
    if not ONLY_CASE and FAST_CASES >= 2000:
        assert len(fast_run.report.acknowledged) > 100
    assert not fast_run.acknowledged_problems, fast_run.acknowledged_problems[:10]


def test_fuzz_memory_stays_bounded(fast_run: FuzzRun) -> None:
    if ONLY_CASE or FAST_CASES < 10000:
        pytest.skip("the bound is calibrated for a run of at least 10,000 cases")
    assert (
        fast_run.watch.peak_rss_bytes < RSS_BOUND_BYTES
    ), f"peak RSS {fast_run.watch.peak_rss_bytes / MIB:.0f} MiB (bound {RSS_BOUND_BYTES / MIB:.0f} MiB)"


# --- the fuzzer itself ---------------------------------------------------------------------------


def test_cases_are_reproducible_from_seed_and_index() -> None:
    corpus = Corpus.build(7)
    first = [generate_case(7, i, corpus) for i in range(300)]
    rebuilt = Corpus.build(7)
    again = [generate_case(7, i, rebuilt) for i in reversed(range(300))][::-1]
    assert [(c.kind, c.method, c.requests, c.allowed, c.metadata) for c in first] == [
        (c.kind, c.method, c.requests, c.allowed, c.metadata) for c in again
    ]
    other_corpus = Corpus.build(8)
    other = [generate_case(8, i, other_corpus) for i in range(300)]
    assert [c.requests for c in first] != [c.requests for c in other]


def test_the_judge_rejects_wrong_codes_and_wrong_bytes(fast_run: FuzzRun) -> None:
    """The fuzzer can fail: a wrong status and a wrong byte are each reported."""
    corpus = Corpus.build(SEED)
    data = max(corpus.blobs.values(), key=len)
    request = bytestream_pb2.ReadRequest(resource_name=f"blobs/{sha256_hex(data)}/{len(data)}").SerializeToString()
    runner = FuzzRunner(fast_run.server.channel())
    read = "/google.bytestream.ByteStream/Read"
    right = runner.run(
        FuzzCase(0, 0, "selftest", read, [request], frozenset({grpc.StatusCode.OK}), check=read_check(data, False))
    )
    assert right.code is grpc.StatusCode.OK and right.problem is None
    wrong_code = runner.run(FuzzCase(0, 1, "selftest", read, [request], frozenset({grpc.StatusCode.NOT_FOUND})))
    assert wrong_code.problem and "not in" in wrong_code.problem
    wrong_bytes = runner.run(
        FuzzCase(
            0,
            2,
            "selftest",
            read,
            [request],
            frozenset({grpc.StatusCode.OK}),
            check=read_check(data[:-1] + b"!", False),
        )
    )
    assert wrong_bytes.problem and "differ" in wrong_bytes.problem


# --- the long run ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", LONG_SEEDS)
def test_fuzz_long(seed: int, tmp_path: Path) -> None:
    server = start_server(tmp_path / "state")
    try:
        run = fuzz(server, seed, range(LONG_CASES))
        _assert_clean(run, LONG_CASES)
        assert not run.acknowledged_problems, run.acknowledged_problems[:10]
    finally:
        server.stop()
