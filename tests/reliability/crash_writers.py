"""Concurrent REAPI writers for the crash trials, and the ledger of what the server
acknowledged.

Each writer thread has its own channel (its own TCP connection, as separate
clients would) and loops over three kinds of writes until stopped or until a call
fails (the server was killed or is shutting down):

- BatchUpdateBlobs of 1-4 small blobs (10 B - 48 KiB),
- ByteStream.Write of one blob (64 KiB - 1.5 MiB) in 16 KiB - 1 MiB chunks,
- UpdateActionResult of a new action whose output files and stdout are blobs this
  writer had acknowledged before (exit code 0, or 1-3 for one in five).

A write enters the ledger only after its call returned OK, i.e. once it was
acknowledged. Content is derived from a key string, so the ledger keeps keys,
not bytes, and every byte can be regenerated for a byte-exact comparison.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Tuple

import grpc

from oci_cache.reapi import bytestream_pb2, bytestream_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc

DigestKey = Tuple[str, int]
CALL_TIMEOUT_SECONDS = 20.0


def payload(key: str, size: int) -> bytes:
    """The bytes of the blob named by `key` (deterministic)."""
    return random.Random(key).randbytes(size)


def digest_key(data: bytes) -> DigestKey:
    return hashlib.sha256(data).hexdigest(), len(data)


@dataclass
class Ledger:
    """What the server acknowledged, across every trial of a sequence."""

    blobs: Dict[DigestKey, Tuple[str, int]] = field(default_factory=dict)
    """digest → (payload key, size)."""
    actions: Dict[DigestKey, bytes] = field(default_factory=dict)
    """action digest → the ActionResult as sent (serialized)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def blob_acked(self, digest: DigestKey, key: str, size: int) -> None:
        with self._lock:
            self.blobs[digest] = (key, size)

    def action_acked(self, action: DigestKey, result: bytes) -> None:
        with self._lock:
            self.actions[action] = result

    def blob_bytes(self, digest: DigestKey) -> bytes:
        key, size = self.blobs[digest]
        return payload(key, size)

    def counts(self) -> Tuple[int, int]:
        with self._lock:
            return len(self.blobs), len(self.actions)


@dataclass
class WriterCounts:
    batch_calls: int = 0
    stream_writes: int = 0
    action_updates: int = 0
    failed_calls: int = 0
    codes: Dict[str, int] = field(default_factory=dict)


class WriterPool:
    """`writers` threads writing to `target` ("127.0.0.1:PORT") until stop()."""

    def __init__(
        self, target: str, ledger: Ledger, key_prefix: str, writers: int = 3, pause: float = 0.0
    ) -> None:
        """`pause`: each writer sleeps up to this long (uniformly) before each call."""
        self._target = target
        self._pause = pause
        self._ledger = ledger
        self._prefix = key_prefix
        self._stop = threading.Event()
        self.counts = WriterCounts()
        self._counts_lock = threading.Lock()
        self.first_ack = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(number,), name=f"crash-writer-{number}", daemon=True)
            for number in range(writers)
        ]

    def start(self) -> "WriterPool":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a writer thread did not stop"

    def _count(self, name: str) -> None:
        with self._counts_lock:
            setattr(self.counts, name, getattr(self.counts, name) + 1)
        self.first_ack.set()

    def _run(self, number: int) -> None:
        rng = random.Random(f"{self._prefix}:writer{number}")
        channel = grpc.insecure_channel(
            self._target, options=[("grpc.max_send_message_length", 8 << 20), ("grpc.enable_retries", 0)]
        )
        cas = re_grpc.ContentAddressableStorageStub(channel)
        action_cache = re_grpc.ActionCacheStub(channel)
        bytestream = bytestream_pb2_grpc.ByteStreamStub(channel)
        mine: List[DigestKey] = []
        try:
            for serial in range(1_000_000):
                if self._stop.is_set():
                    return
                key = f"{self._prefix}:w{number}:{serial}"
                if self._pause:
                    time.sleep(rng.uniform(0.0, self._pause))
                choice = rng.random()
                try:
                    if choice < 0.35 or len(mine) < 2:
                        self._batch(cas, rng, key, mine)
                    elif choice < 0.6:
                        self._stream(bytestream, rng, key, mine)
                    else:
                        self._action(action_cache, rng, key, mine)
                except grpc.RpcError as error:
                    with self._counts_lock:
                        self.counts.failed_calls += 1
                        name = error.code().name if error.code() is not None else "?"
                        self.counts.codes[name] = self.counts.codes.get(name, 0) + 1
                    return  # killed or stopping: this writer is done
        finally:
            channel.close()

    def _batch(self, cas: re_grpc.ContentAddressableStorageStub, rng: random.Random, key: str, mine: List[DigestKey]) -> None:
        blobs = []
        for part in range(rng.randint(1, 4)):
            part_key = f"{key}.{part}"
            size = rng.choice([10, 300, 4000, 20000, 49152])
            data = payload(part_key, size)
            blobs.append((part_key, size, data))
        request = re_pb2.BatchUpdateBlobsRequest(
            requests=[
                re_pb2.BatchUpdateBlobsRequest.Request(
                    digest=re_pb2.Digest(hash=digest_key(data)[0], size_bytes=size), data=data
                )
                for _, size, data in blobs
            ]
        )
        response = cas.BatchUpdateBlobs(request, timeout=CALL_TIMEOUT_SECONDS)
        statuses = {(r.digest.hash, r.digest.size_bytes): r.status.code for r in response.responses}
        for part_key, size, data in blobs:
            digest = digest_key(data)
            if statuses.get(digest) == 0:
                self._ledger.blob_acked(digest, part_key, size)
                mine.append(digest)
        self._count("batch_calls")

    def _stream(self, bytestream: bytestream_pb2_grpc.ByteStreamStub, rng: random.Random, key: str, mine: List[DigestKey]) -> None:
        size = rng.choice([65536, 200_000, 700_000, 1_500_000])
        data = payload(key, size)
        digest = digest_key(data)
        chunk = rng.choice([16384, 65536, 1 << 20])
        name = f"uploads/{uuid.uuid4()}/blobs/{digest[0]}/{size}"

        def requests() -> Iterator[bytestream_pb2.WriteRequest]:
            for offset in range(0, size, chunk):
                piece = data[offset : offset + chunk]
                yield bytestream_pb2.WriteRequest(
                    resource_name=name if offset == 0 else "",
                    write_offset=offset,
                    data=piece,
                    finish_write=offset + len(piece) >= size,
                )

        response = bytestream.Write(requests(), timeout=CALL_TIMEOUT_SECONDS)
        if response.committed_size == size:
            self._ledger.blob_acked(digest, key, size)
            mine.append(digest)
        self._count("stream_writes")

    def _action(self, action_cache: re_grpc.ActionCacheStub, rng: random.Random, key: str, mine: List[DigestKey]) -> None:
        outputs = rng.sample(mine, min(len(mine), rng.randint(1, 3)))
        stdout = rng.choice(mine)
        result = re_pb2.ActionResult(
            output_files=[
                re_pb2.OutputFile(path=f"out/{n}.bin", digest=re_pb2.Digest(hash=h, size_bytes=s), is_executable=n == 0)
                for n, (h, s) in enumerate(outputs)
            ],
            stdout_digest=re_pb2.Digest(hash=stdout[0], size_bytes=stdout[1]),
            exit_code=0 if rng.random() < 0.8 else rng.randint(1, 3),
        )
        action_bytes = b"action " + key.encode()
        action = digest_key(action_bytes)
        action_cache.UpdateActionResult(
            re_pb2.UpdateActionResultRequest(
                action_digest=re_pb2.Digest(hash=action[0], size_bytes=action[1]), action_result=result
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        self._ledger.action_acked(action, result.SerializeToString())
        self._count("action_updates")


def wait_for_acks(pool: WriterPool, timeout: float = 10.0) -> None:
    """Until the writers have had at least one call acknowledged."""
    deadline = time.monotonic() + timeout
    while not pool.first_ack.wait(0.05):
        assert time.monotonic() < deadline, f"no write was acknowledged within {timeout:.0f}s: {pool.counts}"


__all__ = ["DigestKey", "Ledger", "WriterCounts", "WriterPool", "digest_key", "payload", "wait_for_acks"]
