"""What the gRPC fuzzer found, each as a small test against a real `oci-cache serve`.

A finding that is a server bug is marked xfail(strict=True) with the bug described:
it fails today, and turns into an error (XPASS) once the server is fixed, so the mark
is removed together with the bug. See docs/reliability.md, "Findings".
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from typing import List

import grpc
import pytest
import zstandard

from oci_cache.reapi import bytestream_pb2
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from process_watch import KNOWN_GRPC_AIO_NOISE, MIB, rss_bytes, unexpected_log_records
from server_fixtures import ServerProcess

WRITE = "/google.bytestream.ByteStream/Write"


def _digest(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def _bomb(window_log: int = 23, total_bytes: int = 64 << 20) -> bytes:
    """One zstd frame of zeros without a content size: ~2 KiB that inflate to `total_bytes`."""
    parameters = zstandard.ZstdCompressionParameters.from_level(19, window_log=window_log, write_content_size=False)
    out = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=parameters).stream_writer(out, closefd=False) as writer:
        for _ in range(total_bytes >> 22):
            writer.write(bytes(1 << 22))
    return out.getvalue()


def _settled_rss(server: ServerProcess) -> int:
    time.sleep(0.3)
    return rss_bytes(server.pid) or 0


def test_zstd_decompression_does_not_leak_memory(running_server: ServerProcess) -> None:
    cas = re_grpc.ContentAddressableStorageStub(running_server.channel())
    bomb = _bomb()

    def one_batch(i: int) -> None:
        declared = b"%d" % i + bytes((1 << 20) - 8)  # the bomb inflates past this 1 MiB
        request = re_pb2.BatchUpdateBlobsRequest(
            requests=[
                re_pb2.BatchUpdateBlobsRequest.Request(
                    digest=_digest(declared), data=bomb, compressor=re_pb2.Compressor.ZSTD
                )
            ]
        )
        status = cas.BatchUpdateBlobs(request, timeout=30).responses[0].status
        assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], status

    for i in range(10):  # warm up: thread pool, allocator arenas
        one_batch(i)
    before = _settled_rss(running_server)
    for i in range(10, 160):
        one_batch(i)
    growth = _settled_rss(running_server) - before
    assert running_server.is_running()
    assert growth < 64 * MIB, f"RSS grew {growth / MIB:.0f} MiB over 150 refused zstd bombs"


def test_compressed_writes_do_not_leak_memory(running_server: ServerProcess) -> None:
    write = running_server.channel().stream_unary(WRITE)

    def one_write() -> None:
        data = os.urandom(200_000)
        digest = _digest(data)
        name = f"uploads/{uuid.uuid4()}/compressed-blobs/zstd/{digest.hash}/{digest.size_bytes}"
        payload = zstandard.ZstdCompressor().compress(data)
        answer = write(
            iter(
                [bytestream_pb2.WriteRequest(resource_name=name, data=payload, finish_write=True).SerializeToString()]
            ),
            timeout=30,
        )
        assert bytestream_pb2.WriteResponse.FromString(answer).committed_size == len(payload)

    for _ in range(20):
        one_write()
    before = _settled_rss(running_server)
    for _ in range(400):
        one_write()
    growth = _settled_rss(running_server) - before
    assert growth < 48 * MIB, f"RSS grew {growth / MIB:.0f} MiB over 400 compressed writes of 200 kB"


def test_cut_off_calls_leave_a_clean_log(running_server: ServerProcess) -> None:
    """Writes whose second message is over the receive limit, and Reads the client cancels,
    get the right status, and the server keeps serving. grpc.aio logs an ERROR with a
    traceback (ExecuteBatchError) when the handler answers a call that had already ended;
    the server's log filter turns that into a debug line, so the log stays clean."""
    channel = running_server.channel()
    write = channel.stream_unary(WRITE)
    data = b"z" * (6 << 20)
    digest = _digest(data)
    codes: List[grpc.StatusCode] = []
    for _ in range(10):
        name = f"uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"
        first = bytestream_pb2.WriteRequest(resource_name=name, data=data[:1000]).SerializeToString()
        rest = bytestream_pb2.WriteRequest(write_offset=1000, data=data[1000:], finish_write=True).SerializeToString()
        with pytest.raises(grpc.RpcError) as error:
            write(iter([first, rest]), timeout=30)
        codes.append(error.value.code())  # type: ignore[attr-defined]
    assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    big = os.urandom(3 << 20)
    cas = re_grpc.ContentAddressableStorageStub(channel)
    assert (
        cas.BatchUpdateBlobs(
            re_pb2.BatchUpdateBlobsRequest(
                requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=_digest(big), data=big)]
            )
        )
        .responses[0]
        .status.code
        == 0
    )
    read = channel.unary_stream("/google.bytestream.ByteStream/Read")
    for _ in range(20):
        call = read(
            bytestream_pb2.ReadRequest(resource_name=f"blobs/{_digest(big).hash}/{len(big)}").SerializeToString()
        )
        next(call)
        call.cancel()
    time.sleep(0.3)
    assert running_server.is_running()
    assert cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(blob_digests=[_digest(big)])).missing_blob_digests == []
    alarms, noise = unexpected_log_records(running_server.log_text(), [KNOWN_GRPC_AIO_NOISE])
    assert not alarms, alarms[:3]
    # server/ended_call_log_filter.py turns grpc.aio's ExecuteBatchError tracebacks into
    # debug lines: at the default log level none is left.
    assert not noise, noise[:1]
