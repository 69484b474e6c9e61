"""The gRPC adapters in-process over in-memory fakes: what the real store cannot easily
show (storage that would block, storage that fails, non-file readers, cut-off uploads)."""

from __future__ import annotations

import errno
import hashlib
import threading
import time
import uuid
from typing import Iterator, List, Optional

import grpc
import pytest

from fakes import FakeActionCache, FakeBlobStore
from oci_cache.digests import Digest
from oci_cache.errors import UnavailableError
from oci_cache.nonblocking import check_may_block
from oci_cache.reapi import bytestream_pb2, bytestream_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from oci_cache.server.grpc_server import CacheServer, ServerOptions, build_server


def digest_of(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


class Served:
    def __init__(self, server: CacheServer, port: int, blobs: FakeBlobStore, action_cache: FakeActionCache) -> None:
        self.server = server
        self.port = port
        self.blobs = blobs
        self.action_cache = action_cache
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.ac = re_grpc.ActionCacheStub(self.channel)
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.bs = bytestream_pb2_grpc.ByteStreamStub(self.channel)


def serve(blobs: Optional[FakeBlobStore] = None, action_cache: Optional[FakeActionCache] = None, **options: object) -> Served:
    blobs = blobs or FakeBlobStore()
    action_cache = action_cache or FakeActionCache()
    server, port = build_server(blobs, action_cache, "127.0.0.1:0", ServerOptions(**options))  # type: ignore[arg-type]
    server.start()
    return Served(server, port, blobs, action_cache)


@pytest.fixture
def served() -> Iterator[Served]:
    s = serve()
    yield s
    s.channel.close()
    s.server.stop(None).wait(10)


class ThreadRecordingActionCache(FakeActionCache):
    """Would block on the event loop; records the threads it was called on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: List[str] = []

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        self.threads.append(threading.current_thread().name)
        check_may_block("registry lookup")
        return super().get_action_result(action_digest)


def test_storage_that_would_block_is_retried_on_a_worker_thread() -> None:
    action_cache = ThreadRecordingActionCache()
    s = serve(action_cache=action_cache)
    try:
        action = digest_of(b"action")
        action_cache.results[Digest(action.hash, action.size_bytes)] = re_pb2.ActionResult(exit_code=7).SerializeToString()
        assert s.ac.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action)).exit_code == 7
        assert action_cache.threads[0] == "reapi-loop"
        assert action_cache.threads[1].startswith("reapi-worker")
        assert len(action_cache.threads) == 2
    finally:
        s.channel.close()
        s.server.stop(None).wait(10)


class FailingBlobStore(FakeBlobStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def find_missing(self, digests):  # type: ignore[no-untyped-def]
        raise self.error

    def put_bytes(self, digest, data):  # type: ignore[no-untyped-def]
        raise self.error


@pytest.mark.parametrize(
    "error, code",
    [
        (RuntimeError("bug"), grpc.StatusCode.UNAVAILABLE),
        (KeyError("bug"), grpc.StatusCode.UNAVAILABLE),
        (OSError(errno.ENOSPC, "No space left on device"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (OSError(errno.EIO, "I/O error"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_unexpected_storage_errors_never_become_unknown(error: Exception, code: grpc.StatusCode, caplog) -> None:  # type: ignore[no-untyped-def]
    s = serve(blobs=FailingBlobStore(error))
    try:
        with pytest.raises(grpc.RpcError) as raised:
            s.cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(blob_digests=[digest_of(b"x")]))
        assert raised.value.code() == code
        data = b"blob"
        response = s.cas.BatchUpdateBlobs(
            re_pb2.BatchUpdateBlobsRequest(requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(data), data=data)])
        )
        assert response.responses[0].status.code == code.value[0]
        assert any("failed" in record.getMessage() for record in caplog.records)
    finally:
        s.channel.close()
        s.server.stop(None).wait(10)


def test_read_through_a_reader_that_is_not_a_file(served: Served) -> None:
    data = bytes(range(256)) * 9000  # 2.3 MB
    digest = served.blobs.add(data)
    name = f"blobs/{digest.hash}/{digest.size_bytes}"

    def read(offset: int = 0, limit: int = 0) -> List[bytes]:
        request = bytestream_pb2.ReadRequest(resource_name=name, read_offset=offset, read_limit=limit)
        return [r.data for r in served.bs.Read(request)]

    chunks = read()
    assert b"".join(chunks) == data and [len(c) for c in chunks] == [1 << 20, 1 << 20, len(data) - (2 << 20)]
    assert b"".join(read(5, 1 << 20)) == data[5 : 5 + (1 << 20)]
    assert b"".join(read(len(data))) == b""


def _slow_stream(name: str, data: bytes, chunk: int, stop_after: int, release: threading.Event) -> Iterator[bytestream_pb2.WriteRequest]:
    offset = 0
    for index in range(stop_after):
        yield bytestream_pb2.WriteRequest(
            resource_name=name if index == 0 else "", write_offset=offset, data=data[offset : offset + chunk]
        )
        offset += chunk
    release.wait(10)  # the client hangs here until the test cancels the call


def test_an_upload_cut_off_by_the_client_can_resume(served: Served) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB
    digest = digest_of(data)
    name = f"uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"
    release = threading.Event()
    call = served.bs.Write.future(_slow_stream(name, data, 16 * 1024, 3, release))
    query = bytestream_pb2.QueryWriteStatusRequest(resource_name=name)
    deadline = time.monotonic() + 10
    while served.bs.QueryWriteStatus(query).committed_size < 3 * 16 * 1024:
        assert time.monotonic() < deadline, "the server never received the first chunks"
        time.sleep(0.01)
    call.cancel()
    release.set()
    status = served.bs.QueryWriteStatus(query)
    assert (status.committed_size, status.complete) == (3 * 16 * 1024, False)
    rest = [
        bytestream_pb2.WriteRequest(resource_name=name, write_offset=3 * 16 * 1024, data=data[3 * 16 * 1024 :], finish_write=True)
    ]
    assert served.bs.Write(iter(rest)).committed_size == len(data)
    assert served.bs.QueryWriteStatus(query).complete
    assert served.blobs.blobs[Digest(digest.hash, digest.size_bytes)] == data


def test_stopping_the_server_discards_unfinished_uploads() -> None:
    s = serve()
    data = b"x" * 100_000
    digest = digest_of(data)
    name = f"uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"
    partial = [bytestream_pb2.WriteRequest(resource_name=name, data=data[:1000])]
    assert s.bs.Write(iter(partial)).committed_size == 1000
    s.channel.close()
    s.server.stop(None).wait(10)
    assert [w.state for w in s.blobs.writers] == ["aborted"]


def test_token_interceptor_checks_every_call() -> None:
    s = serve(bearer_token="tok")
    try:
        caps = re_grpc.CapabilitiesStub(s.channel)
        with pytest.raises(grpc.RpcError) as raised:
            caps.GetCapabilities(re_pb2.GetCapabilitiesRequest())
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = caps.GetCapabilities(re_pb2.GetCapabilitiesRequest(), metadata=[("authorization", "Bearer tok")])
        assert ok.cache_capabilities.max_batch_total_size_bytes == 4 << 20
        with pytest.raises(grpc.RpcError) as raised:
            list(s.cas.GetTree(re_pb2.GetTreeRequest(root_digest=digest_of(b"")), metadata=[("authorization", "Bearer to")]))
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        s.channel.close()
        s.server.stop(None).wait(10)


def test_custom_batch_limit_is_advertised_and_enforced() -> None:
    s = serve(max_batch_total_size_bytes=1000)
    try:
        caps = re_grpc.CapabilitiesStub(s.channel).GetCapabilities(re_pb2.GetCapabilitiesRequest())
        assert caps.cache_capabilities.max_batch_total_size_bytes == 1000
        with pytest.raises(grpc.RpcError) as raised:
            s.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(digests=[re_pb2.Digest(hash="a" * 64, size_bytes=1001)]))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        s.channel.close()
        s.server.stop(None).wait(10)


def test_busy_address_is_reported() -> None:
    s = serve()
    try:
        with pytest.raises(UnavailableError) as raised:
            build_server(FakeBlobStore(), FakeActionCache(), f"127.0.0.1:{s.port}")
        assert "cannot listen" in str(raised.value)
    finally:
        s.channel.close()
        s.server.stop(None).wait(10)


def test_a_second_stream_on_the_same_upload_waits_for_the_first(served: Served) -> None:
    data = bytes(range(256)) * 256  # 64 KiB
    digest = digest_of(data)
    name = f"uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"
    release = threading.Event()
    first = served.bs.Write.future(_slow_stream(name, data, 16 * 1024, 1, release))
    query = bytestream_pb2.QueryWriteStatusRequest(resource_name=name)
    deadline = time.monotonic() + 10
    while served.bs.QueryWriteStatus(query).committed_size == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # The client gives up on the first stream and starts over on a second one at once.
    second = served.bs.Write.future(iter([bytestream_pb2.WriteRequest(resource_name=name, data=data, finish_write=True)]))
    time.sleep(0.2)
    assert not second.done()  # waiting for the first stream to let go
    first.cancel()
    release.set()
    assert second.result(timeout=10).committed_size == len(data)
    assert served.blobs.blobs[Digest(digest.hash, digest.size_bytes)] == data
