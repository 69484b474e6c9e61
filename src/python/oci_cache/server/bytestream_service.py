"""google.bytestream.ByteStream over the CAS: Read, Write and QueryWriteStatus.

Resource names are in resource_names. Offsets and sizes follow REAPI:
- Read `blobs/`: read_offset/read_limit in bytes of the blob; an offset past the
  end (or negative) is OUT_OF_RANGE, a negative limit INVALID_ARGUMENT.
- Read `compressed-blobs/zstd/`: read_offset is an offset in the uncompressed
  blob, read_limit must be 0 (INVALID_ARGUMENT otherwise).
- Write `uploads/.../blobs/`: write_offset counts bytes of the blob.
- Write `uploads/.../compressed-blobs/zstd/`: the first write_offset is an offset in
  the uncompressed blob (0, or where an interrupted upload stopped); later ones add
  the compressed bytes sent since. The final committed_size is that same sum.
- A Write for a blob the store already has answers at once: the blob's size
  (uncompressed) or -1 (compressed).
- A Write stream that ends without finish_write (or is cut off) leaves its upload
  resumable (upload_sessions); QueryWriteStatus reports how much is held.

Reads of plain blobs run on the event loop chunk by chunk (a page-cache read of
1 MiB is cheaper than a thread hop; the storage raises WouldBlockError when it
would wait). Compression, decompression, large writes and commits (fsync) run on
worker threads.
"""

from __future__ import annotations

import asyncio
import io
import mmap
import os
import stat
from typing import Any, AsyncIterator, Callable, Optional

import grpc

from oci_cache.digests import EMPTY_DIGEST
from oci_cache.errors import InvalidArgumentError, OutOfRangeError, UnavailableError
from oci_cache.reapi import bytestream_pb2
from oci_cache.server import zstd_codec
from oci_cache.server.method_handlers import MALFORMED, Dispatcher, Method, Runs, check_parsed, generic_handler
from oci_cache.server.resource_names import BlobResource, parse_read_resource_name, parse_write_resource_name
from oci_cache.server.upload_sessions import UploadSession, UploadSessions
from oci_cache.store.interfaces import BlobStore

SERVICE_NAME = "google.bytestream.ByteStream"
DEFAULT_READ_CHUNK_BYTES = 1 << 20
# Uncompressed Write chunks up to this size are written on the event loop (Bazel sends 16 KiB).
INLINE_WRITE_BYTES = 64 * 1024
_READ_RESPONSE_DATA_TAG = b"\x52"  # ReadResponse.data: field 10, wire type 2


class ByteStreamService:
    def __init__(
        self,
        blobs: BlobStore,
        dispatcher: Dispatcher,
        uploads: Optional[UploadSessions] = None,
        read_chunk_bytes: int = DEFAULT_READ_CHUNK_BYTES,
    ) -> None:
        self._blobs = blobs
        self._dispatcher = dispatcher
        self._uploads = uploads if uploads is not None else UploadSessions(blobs)
        self._read_chunk_bytes = read_chunk_bytes

    # --- Read -----------------------------------------------------------------------------

    async def read(self, request: Any, context: Any) -> AsyncIterator[bytes]:
        check_parsed(request)
        resource = parse_read_resource_name(request.resource_name)
        size = resource.digest.size_bytes
        offset, limit = request.read_offset, request.read_limit
        if offset < 0 or offset > size:
            raise OutOfRangeError(f"read_offset {offset} is outside the blob of {size} bytes")
        if limit < 0:
            raise InvalidArgumentError(f"negative read_limit {limit}")
        if resource.is_compressed and limit != 0:
            raise InvalidArgumentError("read_limit must be 0 when reading compressed-blobs")
        end = size if limit == 0 else min(size, offset + limit)
        if end == offset and not resource.is_compressed:
            if await self._dispatcher.inline_first(self._blobs.contains, resource.digest):
                yield _read_response(b"")
                return
        reader = await self._dispatcher.inline_first(self._blobs.open_blob, resource.digest)
        chunks: Optional[AsyncIterator[bytes]] = None
        try:
            if offset:
                reader.seek(offset)
            mapped = None if resource.is_compressed else _map_file(reader, size)
            if resource.is_compressed:
                chunks = self._compressed_chunks(reader)
            elif mapped is not None:
                chunks = _mapped_chunks(mapped, offset, end, self._read_chunk_bytes)
            else:
                chunks = self._file_chunks(reader, resource, end - offset)
            async for chunk in chunks:
                yield chunk
        finally:
            if chunks is not None:
                await chunks.aclose()  # type: ignore[attr-defined]
            reader.close()

    async def _compressed_chunks(self, reader: Any) -> AsyncIterator[bytes]:
        """The rest of the blob zstd-compressed (on a worker thread), as ReadResponses."""
        chunks = zstd_codec.compressed_chunks(reader, self._read_chunk_bytes)
        while True:
            chunk = await self._dispatcher.blocking(next, chunks, None)
            if chunk is None:
                return
            yield _read_response(chunk)

    async def _file_chunks(self, reader: Any, resource: BlobResource, remaining: int) -> AsyncIterator[bytes]:
        """`remaining` bytes read through the BlobReader, as ReadResponses."""
        chunk_bytes = self._read_chunk_bytes
        read = reader.read
        while remaining > 0:
            chunk = await self._dispatcher.inline_first(read, chunk_bytes if remaining > chunk_bytes else remaining)
            if not chunk:
                raise OutOfRangeError(f"blob {resource.digest} ended {remaining} bytes early")
            remaining -= len(chunk)
            yield _read_response(chunk)

    # --- Write ----------------------------------------------------------------------------

    async def write(self, requests: Any, context: Any) -> Any:
        stream = requests.__aiter__()
        first = await _next_request(stream)
        if first is None:
            raise InvalidArgumentError("Write stream without any request")
        resource = parse_write_resource_name(first.resource_name)
        digest = resource.digest
        if digest == EMPTY_DIGEST or await self._dispatcher.inline_first(self._blobs.contains, digest):
            return _already_present(resource)
        session = await self._acquire(resource)
        keep = False
        try:
            committed = await self._write_stream(session, resource, first, stream)
            if committed is None:  # ended without finish_write: held for a resume
                keep = True
                committed = session.committed_size
            return bytestream_pb2.WriteResponse(committed_size=committed)
        except asyncio.CancelledError:
            keep = True  # the client went away mid-stream: it may resume
            raise
        finally:
            self._uploads.release(session, keep=keep)

    async def _acquire(self, resource: BlobResource) -> UploadSession:
        """The upload's session, locked for this stream. Waiting for another stream to let go
        happens on a worker thread; if this call is cancelled meanwhile, the session is let
        go as soon as that thread gets it."""
        try:
            return self._uploads.acquire(resource, timeout=0)
        except UnavailableError:
            pass  # another stream holds it (usually one the client just abandoned): wait
        acquiring = asyncio.ensure_future(self._dispatcher.blocking(self._uploads.acquire, resource))
        try:
            return await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            acquiring.add_done_callback(self._release_if_acquired)
            raise

    def _release_if_acquired(self, acquiring: "asyncio.Future[UploadSession]") -> None:
        if not acquiring.cancelled() and acquiring.exception() is None:
            self._uploads.release(acquiring.result(), keep=True)

    async def _write_stream(
        self, session: UploadSession, resource: BlobResource, first: Any, stream: Any
    ) -> Optional[int]:
        """Feeds the stream into the session. Returns the final committed_size when the
        blob was committed, None when the stream ended without finish_write."""
        name = first.resource_name
        size = resource.digest.size_bytes
        start = first.write_offset
        held = session.committed_size
        if start == 0 and held != 0:
            await self._dispatcher.blocking(self._uploads.restart, session)
        elif start != held:
            raise InvalidArgumentError(f"write_offset {start} does not continue the upload, which holds {held} bytes")
        writer = session.writer
        feed: Callable[[bytes], None]
        if resource.is_compressed:
            feed = zstd_codec.BoundedDecompressor(writer.write, size - start).feed
        else:
            feed = writer.write
        expected_offset = start
        request = first
        # A large chunk is written on a worker thread while the next one is received.
        pending: Optional["asyncio.Future[None]"] = None
        try:
            while True:
                if request.resource_name and request.resource_name != name:
                    raise InvalidArgumentError("resource_name changed within one Write stream")
                if request.write_offset != expected_offset:
                    raise InvalidArgumentError(
                        f"write_offset {request.write_offset} where {expected_offset} was expected"
                    )
                data = request.data
                if data:
                    if not resource.is_compressed and expected_offset + len(data) > size:
                        raise InvalidArgumentError(f"more data than the {size} bytes of {resource.digest}")
                    if pending is not None:
                        await pending
                        pending = None
                    if resource.is_compressed or len(data) > INLINE_WRITE_BYTES:
                        pending = asyncio.ensure_future(self._dispatcher.blocking(feed, data))
                    else:
                        feed(data)
                    expected_offset += len(data)
                if request.finish_write:
                    if pending is not None:
                        await pending
                        pending = None
                    session.finished = True  # committed, or discarded by a failing commit(): nothing to abort
                    await self._dispatcher.blocking(writer.commit)
                    return expected_offset
                request = await _next_request(stream)
                if request is None:
                    if pending is not None:
                        await pending
                        pending = None
                    return None
        finally:
            if pending is not None:
                # Leaving early: let the write in flight finish before the writer is released.
                await _settle(pending)

    # --- QueryWriteStatus -----------------------------------------------------------------

    def query_write_status(self, request: Any) -> Any:
        check_parsed(request)
        resource = parse_write_resource_name(request.resource_name)
        digest = resource.digest
        if digest == EMPTY_DIGEST or self._blobs.contains(digest):
            return bytestream_pb2.QueryWriteStatusResponse(committed_size=digest.size_bytes, complete=True)
        held = self._uploads.committed_size(resource)
        return bytestream_pb2.QueryWriteStatusResponse(committed_size=held or 0, complete=False)

    def close(self) -> None:
        """Discards every unfinished upload."""
        self._uploads.close()

    def handler(self, dispatcher: Dispatcher) -> grpc.GenericRpcHandler:
        return generic_handler(
            SERVICE_NAME,
            [
                Method("Read", self.read, bytestream_pb2.ReadRequest, Runs.ASYNC, response_streaming=True),
                Method("Write", self.write, bytestream_pb2.WriteRequest, Runs.ASYNC, request_streaming=True),
                Method("QueryWriteStatus", self.query_write_status, bytestream_pb2.QueryWriteStatusRequest),
            ],
            dispatcher,
        )


async def _next_request(stream: Any) -> Optional[Any]:
    """The next request of a Write stream, None at its end; INVALID_ARGUMENT if it does not parse."""
    try:
        request = await stream.__anext__()
    except StopAsyncIteration:
        return None
    if request is MALFORMED:
        raise InvalidArgumentError("request message does not parse")
    return request


async def _settle(future: "asyncio.Future[None]") -> None:
    """Waits for `future` without raising what it raised (an error already ends the stream)."""
    if not future.done():
        await asyncio.wait([future])
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" warning


def _already_present(resource: BlobResource) -> Any:
    committed = -1 if resource.is_compressed else resource.digest.size_bytes
    return bytestream_pb2.WriteResponse(committed_size=committed)


def _read_response(data: bytes) -> bytes:
    """A serialized ReadResponse{data}, framed by hand: one copy of the chunk, no message object."""
    return _READ_RESPONSE_DATA_TAG + _varint(len(data)) + data


def _read_response_header(length: int) -> bytes:
    """What precedes `length` bytes of data in a serialized ReadResponse."""
    return _READ_RESPONSE_DATA_TAG + _varint(length)


async def _mapped_chunks(mapped: "_MappedFile", start: int, end: int, chunk_bytes: int) -> AsyncIterator[bytes]:
    """Bytes [start, end) of a mapped blob file as ReadResponses, each framed straight from
    the page cache (one copy per chunk)."""
    with mapped:
        view = mapped.view
        position = start
        while position < end:
            length = min(chunk_bytes, end - position)
            yield b"".join((_read_response_header(length), view[position : position + length]))
            position += length


class _MappedFile:
    """A read-only mapping of a whole blob file; `view` is a memoryview of it."""

    def __init__(self, mapping: mmap.mmap) -> None:
        self._mapping = mapping
        self.view = memoryview(mapping)

    def __enter__(self) -> "_MappedFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.view.release()
        self._mapping.close()


def _map_file(reader: Any, size: int) -> Optional[_MappedFile]:
    """Maps the reader's file when it is a plain file of exactly `size` bytes, else None.
    (Stored blob files are immutable: replaced by rename, never rewritten in place.)"""
    fileno = getattr(reader, "fileno", None)
    if fileno is None or size == 0:
        return None
    try:
        fd = fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size != size:
            return None
        return _MappedFile(mmap.mmap(fd, size, access=mmap.ACCESS_READ))
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
