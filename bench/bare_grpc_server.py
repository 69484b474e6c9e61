"""A bare grpcio server with the REAPI method names: the ceiling for bench/reapi_bench.py.

It does what a cache server must do on the wire and nothing else: handlers take and return
raw bytes (no protobuf parsing, no storage, no digest checks).

- ActionCache.GetActionResult returns a canned serialized ActionResult (`--action-result`,
  a file holding the bytes; an empty ActionResult without it).
- ContentAddressableStorage.BatchUpdateBlobs accepts anything and returns a canned response
  holding one OK entry.
- ByteStream.Read streams `--read-mib` (default 64) pre-built ReadResponse messages of
  1 MiB each, whatever the request asks for.
- ByteStream.Write reads every request and drops it, then returns a canned WriteResponse.
- The other REAPI methods answer with canned empty messages.

Usage: python bench/bare_grpc_server.py [--listen 127.0.0.1:0] [--mode aio|sync]
Prints `listening on grpc://HOST:PORT` as its first line on stdout, then serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from concurrent import futures
from typing import AsyncIterator, Callable, Dict, Iterator, List, Optional, Tuple

import grpc

CHUNK_BYTES = 1024 * 1024

REAPI = "build.bazel.remote.execution.v2"
ACTION_CACHE = f"{REAPI}.ActionCache"
CAS = f"{REAPI}.ContentAddressableStorage"
CAPABILITIES = f"{REAPI}.Capabilities"
BYTESTREAM = "google.bytestream.ByteStream"

SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    """One protobuf field of wire type 2 (bytes, string or embedded message)."""
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def _varint_field(field_number: int, value: int) -> bytes:
    return _varint(field_number << 3 | 0) + _varint(value)


def read_response_chunks(total_mib: int) -> List[bytes]:
    """ReadResponse{data = 1 MiB} messages, serialized once at start-up."""
    chunk = _length_delimited(10, os.urandom(CHUNK_BYTES))  # ReadResponse.data = 10
    return [chunk] * total_mib


def batch_update_response() -> bytes:
    """BatchUpdateBlobsResponse{responses: [{digest: {hash, size}, status: {}}]}."""
    digest = _length_delimited(1, b"0" * 64) + _varint_field(2, 4096)
    entry = _length_delimited(1, digest) + _length_delimited(2, b"")
    return _length_delimited(1, entry)


def write_response(committed_size: int) -> bytes:
    return _varint_field(1, committed_size)  # WriteResponse.committed_size = 1


class CannedResponses:
    def __init__(self, action_result: bytes, read_mib: int) -> None:
        self.action_result = action_result
        self.read_chunks = read_response_chunks(read_mib)
        self.batch_update = batch_update_response()
        self.write = write_response(read_mib * CHUNK_BYTES)


# --- grpc.aio handlers ---------------------------------------------------------------------


def _aio_handlers(canned: CannedResponses) -> List[grpc.GenericRpcHandler]:
    def constant(response: bytes) -> Callable[[bytes, object], object]:
        async def handler(request: bytes, context: object) -> bytes:
            return response

        return handler

    async def read(request: bytes, context: object) -> AsyncIterator[bytes]:
        for chunk in canned.read_chunks:
            yield chunk

    async def write(requests: AsyncIterator[bytes], context: object) -> bytes:
        async for _ in requests:
            pass
        return canned.write

    async def empty_stream(request: bytes, context: object) -> AsyncIterator[bytes]:
        if False:  # pragma: no cover - makes this an async generator
            yield b""

    return _generic_handlers(
        unary=constant,
        action_result=constant(canned.action_result),
        batch_update=constant(canned.batch_update),
        read=read,
        write=write,
        empty_stream=empty_stream,
    )


# --- sync (thread pool) handlers -----------------------------------------------------------


def _sync_handlers(canned: CannedResponses) -> List[grpc.GenericRpcHandler]:
    def constant(response: bytes) -> Callable[[bytes, object], bytes]:
        def handler(request: bytes, context: object) -> bytes:
            return response

        return handler

    def read(request: bytes, context: object) -> Iterator[bytes]:
        return iter(canned.read_chunks)

    def write(requests: Iterator[bytes], context: object) -> bytes:
        for _ in requests:
            pass
        return canned.write

    def empty_stream(request: bytes, context: object) -> Iterator[bytes]:
        return iter(())

    return _generic_handlers(
        unary=constant,
        action_result=constant(canned.action_result),
        batch_update=constant(canned.batch_update),
        read=read,
        write=write,
        empty_stream=empty_stream,
    )


def _generic_handlers(
    unary: Callable[[bytes], Callable[..., object]],
    action_result: Callable[..., object],
    batch_update: Callable[..., object],
    read: Callable[..., object],
    write: Callable[..., object],
    empty_stream: Callable[..., object],
) -> List[grpc.GenericRpcHandler]:
    """Method handlers without serializers: requests and responses are raw bytes."""
    empty = unary(b"")
    services: Dict[str, Dict[str, grpc.RpcMethodHandler]] = {
        ACTION_CACHE: {
            "GetActionResult": grpc.unary_unary_rpc_method_handler(action_result),
            "UpdateActionResult": grpc.unary_unary_rpc_method_handler(empty),
        },
        CAS: {
            "FindMissingBlobs": grpc.unary_unary_rpc_method_handler(empty),
            "BatchUpdateBlobs": grpc.unary_unary_rpc_method_handler(batch_update),
            "BatchReadBlobs": grpc.unary_unary_rpc_method_handler(empty),
            "GetTree": grpc.unary_stream_rpc_method_handler(empty_stream),
        },
        CAPABILITIES: {
            "GetCapabilities": grpc.unary_unary_rpc_method_handler(empty),
        },
        BYTESTREAM: {
            "Read": grpc.unary_stream_rpc_method_handler(read),
            "Write": grpc.stream_unary_rpc_method_handler(write),
            "QueryWriteStatus": grpc.unary_unary_rpc_method_handler(empty),
        },
    }
    return [grpc.method_handlers_generic_handler(name, methods) for name, methods in services.items()]


# --- serving -------------------------------------------------------------------------------


def _announce(host: str, port: int) -> None:
    if port == 0:
        raise SystemExit(f"bare_grpc_server: could not bind {host}")
    sys.stdout.write(f"listening on grpc://{host}:{port}\n")
    sys.stdout.flush()


async def _serve_aio(host: str, port: int, canned: CannedResponses) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(_aio_handlers(canned))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    _announce(host, bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=None)


def _serve_sync(host: str, port: int, canned: CannedResponses, threads: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(_sync_handlers(canned))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    _announce(host, bound)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(grace=None).wait()


def parse_listen(listen: str) -> Tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--listen wants HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks a free port)")
    parser.add_argument("--mode", choices=("aio", "sync"), default="aio", help="grpc.aio or thread-pool server")
    parser.add_argument("--threads", type=int, default=256, help="thread-pool size in --mode sync")
    parser.add_argument("--action-result", help="file with the serialized ActionResult to return")
    parser.add_argument("--read-mib", type=int, default=64, help="MiB streamed by every ByteStream.Read")
    args = parser.parse_args(argv)

    action_result = b""
    if args.action_result:
        with open(args.action_result, "rb") as f:
            action_result = f.read()
    canned = CannedResponses(action_result, args.read_mib)
    host, port = parse_listen(args.listen)
    if args.mode == "aio":
        asyncio.run(_serve_aio(host, port, canned))
    else:
        _serve_sync(host, port, canned, args.threads)


if __name__ == "__main__":
    main()
