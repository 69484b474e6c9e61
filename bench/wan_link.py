"""A simulated wide-area link on 127.0.0.1: TCP relays that delay, throttle and redirect.

Everything a client sends through a `WanLink` listener, and everything it receives,
crosses one simulated link:

- **delay**: every chunk of bytes is delivered half a round trip after it was sent, in
  each direction, in order (a queue per connection and direction, not a delay per
  connection), so a request/response exchange costs one round trip;
- **bandwidth**: one token bucket per direction shared by every connection of the link
  (a FIFO transmitter: a chunk leaves when the chunks before it have, at `bandwidth`);
- **connection set-up**: a new connection relays nothing for `setup` seconds (the TCP
  and TLS handshakes of a real connection); the client's connect() itself succeeds at once;
- **plain HTTP standing in for HTTPS**: the HTTP relays answer a TLS ClientHello at once,
  off the link, with a plain-HTTP 400 (a client that probes https first learns for free
  that this registry is plain HTTP; a real registry's TLS handshake is in `setup`);
- **registry redirects** (`RegistryFront`): an HTTP/1.1 relay that answers every
  `GET /v2/<name>/blobs/<digest>` itself with a 307 to a second listener (the "storage"
  host, like GHCR/ECR/Docker Hub redirecting to S3 or a CDN), which relays the same path,
  Range header and all, to the same registry. The 307 costs a round trip and, on a new
  connection to the storage host, the set-up too.

Byte counts (`LinkCounts`) cover what crossed the link each way, and for the HTTP relays
the response bodies and requests by kind.

    link = WanLink(rtt=0.040, bandwidth=400e6 / 8, setup=0.080)
    front = RegistryFront(link, "127.0.0.1:5000")    # front.address: point clients here
    peer = TcpRelay(link, "127.0.0.1:50051")          # plain TCP (gRPC h2c) through the link
    ...
    front.close(); peer.close()

Runs its own asyncio loop in a background thread. Command line (for trying it by hand):

    python bench/wan_link.py --upstream 127.0.0.1:5000 --rtt-ms 40 --setup-ms 80 --mbit 400 [--registry]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, Optional, Set, Tuple

_CHUNK = 64 * 1024
_MAX_HEAD = 64 * 1024
_BLOB_GET = re.compile(rb"^GET (/v2/(?:[^ ?]+)/blobs/sha256:[0-9a-f]{64})(\?[^ ]*)? HTTP/1\.[01]$")


@dataclass
class LinkCounts:
    """What crossed the link. down = towards the client, up = towards the server."""

    down_bytes: int = 0
    up_bytes: int = 0
    body_bytes: int = 0  # response bodies relayed by the HTTP relays (not the 307s)
    connections: int = 0
    requests: Dict[str, int] = field(default_factory=lambda: collections.Counter())

    def copy(self) -> "LinkCounts":
        return LinkCounts(self.down_bytes, self.up_bytes, self.body_bytes, self.connections, collections.Counter(self.requests))

    def __sub__(self, other: "LinkCounts") -> "LinkCounts":
        requests = collections.Counter(self.requests)
        requests.subtract(other.requests)
        return LinkCounts(
            self.down_bytes - other.down_bytes,
            self.up_bytes - other.up_bytes,
            self.body_bytes - other.body_bytes,
            self.connections - other.connections,
            +requests,
        )


class _Transmitter:
    """One direction of the link: a FIFO sender at `bandwidth` bytes/s (shared by connections)."""

    def __init__(self, bandwidth: float) -> None:
        self.bandwidth = bandwidth
        self._free_at = 0.0

    def departure(self, size: int) -> float:
        """The monotonic time the last byte of `size` bytes handed over now leaves the sender."""
        if self.bandwidth <= 0:
            return time.monotonic()
        start = max(time.monotonic(), self._free_at)
        self._free_at = start + size / self.bandwidth
        return self._free_at


class WanLink:
    """The link's parameters, its two transmitters and counters, and the event loop that runs it."""

    def __init__(self, rtt: float, bandwidth: float, setup: float) -> None:
        self.rtt = rtt
        self.setup = setup
        self.bandwidth = bandwidth
        self.up = _Transmitter(bandwidth)
        self.down = _Transmitter(bandwidth)
        self.counts = LinkCounts()
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="wan-link", daemon=True)
        self._thread.start()

    def snapshot(self) -> LinkCounts:
        with self._lock:
            return self.counts.copy()

    def count(self, **deltas: int) -> None:
        with self._lock:
            for name, value in deltas.items():
                setattr(self.counts, name, getattr(self.counts, name) + value)

    def count_request(self, kind: str) -> None:
        with self._lock:
            self.counts.requests[kind] += 1

    def run(self, coroutine: Awaitable) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()  # type: ignore[arg-type]

    def close(self) -> None:
        """Ends every connection still open, then the loop and its thread."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class _DelayedPipe:
    """Bytes written now come out of `deliver` half a round trip (plus transmission) later, in order."""

    def __init__(self, link: WanLink, transmitter: _Transmitter, deliver: Callable[[bytes], Awaitable[None]], counter: str) -> None:
        self._link = link
        self._transmitter = transmitter
        self._deliver = deliver
        self._counter = counter
        self._queue: "asyncio.Queue[Optional[Tuple[float, bytes]]]" = asyncio.Queue()
        self.task = asyncio.ensure_future(self._run())

    def send(self, data: bytes) -> None:
        self._link.count(**{self._counter: len(data)})
        self._queue.put_nowait((self._transmitter.departure(len(data)) + self._link.rtt / 2, data))

    def finish(self) -> None:
        self._queue.put_nowait(None)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                await self._deliver(b"")
                return
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._deliver(data)


def _writer_sink(writer: asyncio.StreamWriter) -> Callable[[bytes], Awaitable[None]]:
    async def deliver(data: bytes) -> None:
        try:
            if data:
                writer.write(data)
                await writer.drain()
            elif writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, RuntimeError):
            pass

    return deliver


def _split(address: str) -> Tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class _Listener:
    """A listening socket on the link's loop; `handle(reader, writer)` serves each connection."""

    def __init__(self, link: WanLink, listen: str = "127.0.0.1:0") -> None:
        self.link = link
        host, port = _split(listen)
        self._server = link.run(asyncio.start_server(self._accepted, host, port, limit=_MAX_HEAD * 2))
        sock = self._server.sockets[0]  # type: ignore[attr-defined]
        self.host, self.port = sock.getsockname()[:2]
        self._tasks: Set["asyncio.Task[Any]"] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The loop holds tasks only weakly: without this reference a connection's task can be
        # collected mid-response (the client then sees the body cut short).
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if not await self.admit(reader, writer):
                return
            self.link.count(connections=1)
            if self.link.setup > 0:
                await asyncio.sleep(self.link.setup)
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def admit(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Whether this connection crosses the link (False: it was answered off the link)."""
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()  # type: ignore[attr-defined]
            await self._server.wait_closed()  # type: ignore[attr-defined]

        self.link.run(stop())


class TcpRelay(_Listener):
    """Relays bytes both ways between a client and `upstream`, across the link (gRPC h2c, anything)."""

    def __init__(self, link: WanLink, upstream: str, listen: str = "127.0.0.1:0") -> None:
        self.upstream = _split(upstream)
        super().__init__(link, listen)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        to_server = _DelayedPipe(self.link, self.link.up, _writer_sink(up_writer), "up_bytes")
        to_client = _DelayedPipe(self.link, self.link.down, _writer_sink(writer), "down_bytes")

        async def pump(source: asyncio.StreamReader, pipe: _DelayedPipe) -> None:
            try:
                while True:
                    data = await source.read(_CHUNK)
                    if not data:
                        break
                    pipe.send(data)
            except (ConnectionError, OSError):
                pass
            pipe.finish()
            await pipe.task

        try:
            await asyncio.gather(pump(reader, to_server), pump(up_reader, to_client))
        finally:
            up_writer.close()


class _HttpError(Exception):
    pass


async def _read_head(reader: asyncio.StreamReader) -> Optional[bytes]:
    """One HTTP/1.1 head (through the blank line), or None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise _HttpError("truncated head") from None
    except asyncio.LimitOverrunError:
        raise _HttpError("head too large") from None
    return head


def _headers(head: bytes) -> Dict[bytes, bytes]:
    headers: Dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


async def _copy_body(reader: asyncio.StreamReader, headers: Dict[bytes, bytes], send: Callable[[bytes], None], to_eof: bool) -> int:
    """Copies one message body (Content-Length, chunked, or to the end of the stream); returns its size."""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            send(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, through the blank line
                    line = await reader.readuntil(b"\r\n")
                    send(line)
                    if line == b"\r\n":
                        return total
            left = size + 2
            while left:
                data = await reader.read(min(left, _CHUNK))
                if not data:
                    raise _HttpError("truncated chunk")
                left -= len(data)
                send(data)
            total += size
    length = headers.get(b"content-length")
    if length is None:
        if not to_eof:
            return 0
        total = 0
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                return total
            total += len(data)
            send(data)
    left = int(length)
    total = left
    while left:
        data = await reader.read(min(left, _CHUNK))
        if not data:
            raise _HttpError("truncated body")
        left -= len(data)
        send(data)
    return total


class HttpRelay(_Listener):
    """An HTTP/1.1 relay across the link to `upstream`, one request at a time per connection.

    With `redirect_blobs_to` ("host:port"), it answers blob GETs itself with a 307 there.
    """

    def __init__(self, link: WanLink, upstream: str, listen: str = "127.0.0.1:0", redirect_blobs_to: Optional[str] = None) -> None:
        self.upstream = _split(upstream)
        self.redirect_blobs_to = redirect_blobs_to
        self._first_bytes: Dict[int, bytes] = {}
        super().__init__(link, listen)

    async def admit(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        # The registry behind the relay speaks plain HTTP, a real one HTTPS. A client that
        # tries TLS first (a TLS record starts with 0x16) is told at once, off the link and
        # free of charge, that this is not TLS (as a plain-HTTP server would answer): the
        # handshake a real registry needs is in the link's set-up cost instead.
        first = await reader.read(1)
        if not first:
            return False
        if first == b"\x16":
            self.link.count_request("TLS probe (answered off the link)")
            writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return False
        self._first_bytes[id(writer)] = first
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The client's bytes cross the link into `arrived`, which the relay parses.
        arrived = asyncio.StreamReader(limit=_MAX_HEAD * 2)
        first = self._first_bytes.pop(id(writer), b"")

        async def into_arrived(data: bytes) -> None:
            if data:
                arrived.feed_data(data)
            else:
                arrived.feed_eof()

        to_relay = _DelayedPipe(self.link, self.link.up, into_arrived, "up_bytes")
        to_client = _DelayedPipe(self.link, self.link.down, _writer_sink(writer), "down_bytes")

        async def pump_client() -> None:
            to_relay.send(first)
            try:
                while True:
                    data = await reader.read(_CHUNK)
                    if not data:
                        break
                    to_relay.send(data)
            except (ConnectionError, OSError):
                pass
            to_relay.finish()

        pumping = asyncio.ensure_future(pump_client())
        upstream: Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = None
        try:
            while True:
                head = await _read_head(arrived)
                if head is None:
                    break
                request_line = head.split(b"\r\n", 1)[0]
                headers = _headers(head)
                method = request_line.split(b" ", 1)[0].decode("ascii", "replace")
                blob = _BLOB_GET.match(request_line)
                if blob and self.redirect_blobs_to:
                    self.link.count_request("GET blob (307)")
                    location = f"http://{self.redirect_blobs_to}{blob.group(1).decode()}{(blob.group(2) or b'').decode()}"
                    to_client.send(
                        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: "
                        + location.encode()
                        + b"\r\nContent-Length: 0\r\nDocker-Distribution-Api-Version: registry/2.0\r\n\r\n"
                    )
                    continue
                self.link.count_request(f"{method} blob" if blob else method)
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.upstream, limit=_MAX_HEAD * 2)
                up_reader, up_writer = upstream
                up_writer.write(head)
                await _copy_body(arrived, headers, up_writer.write, to_eof=False)
                await up_writer.drain()
                response_head = await _read_head(up_reader)
                if response_head is None:
                    raise _HttpError("upstream closed")
                to_client.send(response_head)
                status = int(response_head.split(b" ", 2)[1])
                response_headers = _headers(response_head)
                if method != "HEAD" and status not in (204, 304) and status >= 200:
                    body = await _copy_body(up_reader, response_headers, to_client.send, to_eof=True)
                    self.link.count(body_bytes=body)
                framed = b"content-length" in response_headers or b"chunked" in response_headers.get(
                    b"transfer-encoding", b""
                ).lower()
                if b"close" in response_headers.get(b"connection", b"").lower() or (
                    not framed and method != "HEAD" and status not in (204, 304)
                ):
                    break
        except (_HttpError, asyncio.IncompleteReadError, ValueError, IndexError):
            pass
        finally:
            if upstream is not None:
                upstream[1].close()
            to_client.finish()
            await to_client.task
            pumping.cancel()


class RegistryFront:
    """The registry as a client across the link sees it: a front that 307s blob GETs to a storage host.

    `address` is the registry's (point image refs there); `storage_address` the storage host's.
    """

    def __init__(self, link: WanLink, registry: str, listen: str = "127.0.0.1:0") -> None:
        self.storage = HttpRelay(link, registry)
        self.front = HttpRelay(link, registry, listen, redirect_blobs_to=self.storage.address)

    @property
    def address(self) -> str:
        return self.front.address

    @property
    def storage_address(self) -> str:
        return self.storage.address

    def close(self) -> None:
        self.front.close()
        self.storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="host:port of the server behind the link")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--setup-ms", type=float, default=80.0)
    parser.add_argument("--mbit", type=float, default=400.0, help="bandwidth each way, Mbit/s (0: unlimited)")
    parser.add_argument("--registry", action="store_true", help="an HTTP registry front with 307 blob redirects")
    args = parser.parse_args()
    link = WanLink(args.rtt_ms / 1000, args.mbit * 1e6 / 8, args.setup_ms / 1000)
    if args.registry:
        front = RegistryFront(link, args.upstream, args.listen)
        print(f"registry front on {front.address}, storage on {front.storage_address}", flush=True)
    else:
        relay = TcpRelay(link, args.upstream, args.listen)
        print(f"relay on {relay.address}", flush=True)
    try:
        while True:
            time.sleep(10)
            counts = link.snapshot()
            print(f"down {counts.down_bytes} B, up {counts.up_bytes} B, {counts.connections} connections, {dict(counts.requests)}", flush=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
