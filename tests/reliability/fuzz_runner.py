"""Runs hostile_requests cases against a real server and judges each answer.

    runner = FuzzRunner(channel)
    outcome = runner.run(case)           # Outcome(code, details, problem)
    report = run_cases(channel, seed, indices, corpus, workers=4)

Requests go through generic multicallables with no serializers, so that the bytes
of each case (messages or garbage) reach the server exactly as generated. A case's
answer is a problem when its status code is not in the case's allowed set, when
it is one of NEVER_CODES, or when an OK answer fails the case's check (wrong bytes
served, wrong committed_size, ...).
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import grpc

from hostile_requests import (
    CLIENT_SIDE_CODES,
    CLIENT_STREAM,
    NEVER_CODES,
    SERVER_STREAM,
    Corpus,
    FuzzCase,
    generate_case,
)

FUZZ_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # A fresh connection per channel: the fuzzer's traffic does not share one with the checks.
    ("grpc.use_local_subchannel_pool", 1),
]
_CANCEL_WAIT_SECONDS = 10.0


class _ClientCancelled(Exception):
    """This client cancelled the call itself."""


@dataclass
class Outcome:
    case: FuzzCase
    code: grpc.StatusCode
    details: str
    problem: Optional[str]
    seconds: float

    def describe(self) -> str:
        return f"{self.case.label}: {self.code.name} {self.details[:200]!r} -> {self.problem}"


@dataclass
class FuzzReport:
    cases: int = 0
    seconds: float = 0.0
    codes: Dict[str, int] = field(default_factory=collections.Counter)  # type: ignore[assignment]
    kinds: Dict[str, Dict[str, int]] = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    problems: List[Outcome] = field(default_factory=list)
    acknowledged: List[bytes] = field(default_factory=list)
    slowest: List[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.cases += 1
        self.codes[outcome.code.name] += 1
        self.kinds[outcome.case.kind.split("+")[0]][outcome.code.name] += 1
        if outcome.problem:
            self.problems.append(outcome)
        elif outcome.code is grpc.StatusCode.OK and outcome.case.acknowledged_blob is not None:
            self.acknowledged.append(outcome.case.acknowledged_blob)
        self.slowest = sorted(self.slowest + [outcome], key=lambda o: -o.seconds)[:5]

    def summary(self) -> str:
        lines = [
            f"{self.cases} cases in {self.seconds:.1f}s; status codes: "
            + ", ".join(f"{name} {count}" for name, count in sorted(self.codes.items(), key=lambda kv: -kv[1]))
        ]
        for kind in sorted(self.kinds):
            lines.append(f"  {kind}: " + ", ".join(f"{n} {c}" for n, c in sorted(self.kinds[kind].items())))
        lines.append("  slowest: " + "; ".join(f"{o.case.kind} #{o.case.index} {o.seconds:.2f}s" for o in self.slowest))
        return "\n".join(lines)


class FuzzRunner:
    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        self._callables: Dict[Any, Any] = {}
        self._lock = threading.Lock()

    def _callable(self, method: str, shape: str) -> Any:
        key = (method, shape)
        found = self._callables.get(key)
        if found is None:
            with self._lock:
                factory = {
                    SERVER_STREAM: self._channel.unary_stream,
                    CLIENT_STREAM: self._channel.stream_unary,
                }.get(shape, self._channel.unary_unary)
                # No serializers: the case's bytes go out as they are, answers come back as bytes.
                found = self._callables[key] = factory(method)
        return found

    def run(self, case: FuzzCase) -> Outcome:
        started = time.monotonic()
        responses: List[bytes] = []
        code = grpc.StatusCode.OK
        details = ""
        client_cancelled = False
        try:
            if case.shape == SERVER_STREAM:
                client_cancelled = self._server_stream(case, responses)
            elif case.shape == CLIENT_STREAM:
                client_cancelled = self._client_stream(case, responses)
            else:
                responses.append(
                    self._callable(case.method, case.shape)(
                        case.requests[0], timeout=case.timeout, metadata=case.metadata
                    )
                )
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            details = error.details() or ""  # type: ignore[attr-defined]
        except _ClientCancelled:
            code, details, client_cancelled = grpc.StatusCode.CANCELLED, "cancelled by the client", True
        seconds = time.monotonic() - started
        return Outcome(case, code, details, self._judge(case, code, responses, client_cancelled), seconds)

    def _server_stream(self, case: FuzzCase, responses: List[bytes]) -> bool:
        call = self._callable(case.method, case.shape)(case.requests[0], timeout=case.timeout, metadata=case.metadata)
        for response in call:
            responses.append(response)
            if case.cancel_after is not None and len(responses) >= case.cancel_after:
                call.cancel()
                return True
        return False

    def _client_stream(self, case: FuzzCase, responses: List[bytes]) -> bool:
        multicallable = self._callable(case.method, case.shape)
        if case.cancel_after is None:
            responses.append(multicallable(iter(case.requests), timeout=case.timeout, metadata=case.metadata))
            return False
        sent = threading.Event()
        release = threading.Event()

        def requests() -> Iterator[bytes]:
            for request in case.requests[: case.cancel_after]:
                yield request
            sent.set()
            release.wait(_CANCEL_WAIT_SECONDS)  # the stream stays open (unfinished) until cancelled

        future = multicallable.future(requests(), timeout=case.timeout, metadata=case.metadata)
        try:
            deadline = time.monotonic() + _CANCEL_WAIT_SECONDS
            while not sent.wait(0.005):
                if future.done() or time.monotonic() > deadline:
                    break
            time.sleep(0.002)  # let the last message leave
            cancelled = future.cancel()
        finally:
            release.set()
        if not cancelled:  # the server answered first
            responses.append(future.result())
            return False
        try:
            future.result()
        except grpc.FutureCancelledError:
            pass
        raise _ClientCancelled()

    @staticmethod
    def _judge(case: FuzzCase, code: grpc.StatusCode, responses: List[bytes], client_cancelled: bool) -> Optional[str]:
        if code in NEVER_CODES:
            return f"forbidden status {code.name}"
        allowed = case.allowed
        if code in CLIENT_SIDE_CODES and code not in allowed:
            return f"{code.name} although the client neither cancelled nor set a short deadline"
        if code not in allowed:
            return f"status {code.name} not in {sorted(c.name for c in allowed)}"
        if code is grpc.StatusCode.CANCELLED and not client_cancelled and case.timeout >= 1:
            return "CANCELLED although the client did not cancel"
        if code is grpc.StatusCode.OK and case.check is not None and not client_cancelled:
            try:
                return case.check(responses)
            except Exception as error:  # noqa: BLE001 - an answer that does not even parse
                return f"the OK answer does not check out: {type(error).__name__}: {error}"
        return None


def run_cases(
    channel: grpc.Channel,
    seed: int,
    indices: Iterable[int],
    corpus: Corpus,
    workers: int = 4,
    on_outcome: Optional[Callable[[Outcome], None]] = None,
) -> FuzzReport:
    """Generates and runs the cases on `workers` threads; the report."""
    runner = FuzzRunner(channel)
    report = FuzzReport()
    report_lock = threading.Lock()
    started = time.monotonic()

    def one(index: int) -> None:
        outcome = runner.run(generate_case(seed, index, corpus))
        with report_lock:
            report.add(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fuzz") as pool:
        for future in [pool.submit(one, index) for index in indices]:
            future.result()
    report.seconds = time.monotonic() - started
    return report


__all__ = ["FUZZ_CHANNEL_OPTIONS", "FuzzReport", "FuzzRunner", "Outcome", "run_cases"]


def preload(channel: grpc.Channel, corpus: Corpus) -> None:
    """Stores the corpus: its blobs (BatchUpdateBlobs, or ByteStream.Write when large) and its
    action results; then checks that every blob is there."""
    import uuid

    from oci_cache.reapi import bytestream_pb2, bytestream_pb2_grpc
    from oci_cache.reapi import remote_execution_pb2 as re_pb2
    from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc

    cas = re_grpc.ContentAddressableStorageStub(channel)
    bytestream = bytestream_pb2_grpc.ByteStreamStub(channel)
    action_cache = re_grpc.ActionCacheStub(channel)
    small = re_pb2.BatchUpdateBlobsRequest()
    for hash_hex, data in sorted(corpus.blobs.items()):
        digest = re_pb2.Digest(hash=hash_hex, size_bytes=len(data))
        if len(data) < 100_000:
            small.requests.add(digest=digest, data=data)
            continue
        name = f"uploads/{uuid.uuid4()}/blobs/{hash_hex}/{len(data)}"
        chunks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
        written = bytestream.Write(
            iter(
                bytestream_pb2.WriteRequest(
                    resource_name=name if i == 0 else "",
                    write_offset=i << 20,
                    data=chunk,
                    finish_write=i == len(chunks) - 1,
                )
                for i, chunk in enumerate(chunks)
            )
        )
        assert written.committed_size == len(data), written
    answer = cas.BatchUpdateBlobs(small)
    assert all(r.status.code == 0 for r in answer.responses), answer
    for action_hash, (size, result) in sorted(corpus.actions.items()):
        action_cache.UpdateActionResult(
            re_pb2.UpdateActionResultRequest(
                action_digest=re_pb2.Digest(hash=action_hash, size_bytes=size),
                action_result=re_pb2.ActionResult.FromString(result),
            )
        )
    action_cache.UpdateActionResult(
        re_pb2.UpdateActionResultRequest(
            action_digest=corpus.incomplete_action,
            action_result=re_pb2.ActionResult.FromString(corpus.incomplete_result),
        )
    )
    missing = cas.FindMissingBlobs(
        re_pb2.FindMissingBlobsRequest(blob_digests=corpus.known_digests())
    ).missing_blob_digests
    assert not missing, missing
