"""Assembles the REAPI cache server: the services over a BlobStore and an ActionCache.

    server, port = build_server(blobs, action_cache, "127.0.0.1:0", ServerOptions())
    server.start()
    ...
    server.stop(grace=5).wait()      # also discards unfinished uploads

The server is a grpc.aio server on an event loop of its own (a daemon thread),
with a thread pool for storage work that blocks (see method_handlers); callers
use it through this synchronous API. `build_server` binds exactly the address
it is given (port 0: a free port, which it returns) and does not start serving,
so callers can still add handlers (`options.extra_handlers`; synchronous
behaviours run on the thread pool) and aio interceptors first.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, List, Optional, Sequence, Tuple, TypeVar

import grpc

from oci_cache.errors import UnavailableError
from oci_cache.server.action_cache_service import ActionCacheService
from oci_cache.server.auth_interceptor import BearerTokenInterceptor
from oci_cache.server.bytestream_service import DEFAULT_READ_CHUNK_BYTES, ByteStreamService
from oci_cache.server.capabilities_service import CapabilitiesService
from oci_cache.server.cas_service import CasService
from oci_cache.server.ended_call_log_filter import install_ended_call_log_filter
from oci_cache.server.method_handlers import Dispatcher
from oci_cache.server.upload_sessions import UploadSessions
from oci_cache.store.interfaces import ActionCache, BlobStore

DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES = 4 * 1024 * 1024
# A BatchUpdateBlobs carrying one blob of max_batch_total_size_bytes is a little larger
# than the blob (digest, framing); Pants sends exactly that.
RECEIVE_HEADROOM_BYTES = 1024 * 1024
MAX_SEND_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_WORKERS = 32

T = TypeVar("T")


@dataclass
class ServerOptions:
    max_batch_total_size_bytes: int = DEFAULT_MAX_BATCH_TOTAL_SIZE_BYTES
    # Threads for storage work that blocks (writes, fsync, compression) and sync extra handlers.
    max_workers: int = DEFAULT_MAX_WORKERS
    read_chunk_bytes: int = DEFAULT_READ_CHUNK_BYTES
    # When set, every RPC must carry `authorization: Bearer <token>`.
    bearer_token: Optional[str] = None
    # Further services (e.g. the daemon's Control service) served on the same port.
    extra_handlers: Sequence[grpc.GenericRpcHandler] = field(default_factory=list)
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = field(default_factory=list)


class CacheServer:
    """A grpc.aio server running on its own event-loop thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        loop_thread: threading.Thread,
        server: grpc.aio.Server,
        executor: ThreadPoolExecutor,
        bytestream: ByteStreamService,
    ) -> None:
        self._loop = loop
        self._loop_thread = loop_thread
        self._server = server
        self._executor = executor
        self._bytestream = bytestream
        self._stopped = threading.Event()
        self._stopping = False
        self._mutex = threading.Lock()

    def start(self) -> None:
        self._run(self._server.start())

    def stop(self, grace: Optional[float]) -> threading.Event:
        """Stops accepting calls, lets running ones finish within `grace` seconds, then
        discards unfinished uploads and ends the loop thread. Returns an event set when done."""
        with self._mutex:
            if self._stopping:
                return self._stopped
            self._stopping = True
        stopping = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)

        def finish() -> None:
            try:
                stopping.result()
            finally:
                self._bytestream.close()
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop_thread.join()
                self._executor.shutdown(wait=True)  # storage work in flight ends before the stores close
                self._stopped.set()

        threading.Thread(target=finish, name="reapi-stop", daemon=True).start()
        return self._stopped

    def wait_for_termination(self, timeout: Optional[float] = None) -> bool:
        """Waits until stop() has finished; False on timeout."""
        return self._stopped.wait(timeout)

    def _run(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]


def grpc_server_options(max_batch_total_size_bytes: int) -> List[Tuple[str, int]]:
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", max_batch_total_size_bytes + RECEIVE_HEADROOM_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
    ]


def build_server(
    blobs: BlobStore,
    action_cache: ActionCache,
    listen: str = "127.0.0.1:0",
    options: Optional[ServerOptions] = None,
) -> Tuple[CacheServer, int]:
    """A server (not yet serving) for the REAPI cache services, bound to `listen` only.

    Returns it and the bound port. Raises UnavailableError when `listen` cannot be bound.
    """
    options = options or ServerOptions()
    install_ended_call_log_filter()
    executor = ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="reapi-worker")
    dispatcher = Dispatcher(executor)
    bytestream = ByteStreamService(blobs, dispatcher, UploadSessions(blobs), options.read_chunk_bytes)
    max_batch = options.max_batch_total_size_bytes
    handlers = [
        CapabilitiesService(max_batch).handler(dispatcher),
        ActionCacheService(action_cache, blobs, max_batch).handler(dispatcher),
        CasService(blobs, max_batch).handler(dispatcher),
        bytestream.handler(dispatcher),
        *options.extra_handlers,
    ]
    interceptors: List[grpc.aio.ServerInterceptor] = []
    if options.bearer_token:
        interceptors.append(BearerTokenInterceptor(options.bearer_token))
    interceptors.extend(options.extra_interceptors)

    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=_run_loop, args=(loop,), name="reapi-loop", daemon=True)
    loop_thread.start()

    async def create() -> Tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            migration_thread_pool=executor,
            interceptors=interceptors or None,
            options=grpc_server_options(max_batch),
        )
        server.add_generic_rpc_handlers(handlers)
        try:
            port = server.add_insecure_port(listen)
        except RuntimeError as error:
            raise UnavailableError(f"cannot listen on {listen}: {error}") from None
        if port == 0:
            raise UnavailableError(f"cannot listen on {listen}")
        return server, port

    try:
        server, port = asyncio.run_coroutine_threadsafe(create(), loop).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join()
        executor.shutdown(wait=False)
        raise
    return CacheServer(loop, loop_thread, server, executor, bytestream), port


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


__all__: List[Any] = ["CacheServer", "ServerOptions", "build_server", "grpc_server_options"]
