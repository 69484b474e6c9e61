"""A TCP relay on 127.0.0.1 that counts the bytes passing each way, and the HTTP/1.1
requests and response bodies in them.

Put it in front of a plain-HTTP registry and point a client at `proxy.host`. Every
byte the client receives from the registry is counted in `downstream_bytes` (HTTP
headers included), and the part of it that is response bodies in `body_bytes`;
`requests` counts requests by method. Bytes are relayed unchanged: the registry
sees the proxy's address in the Host header, so its upload Locations point back
through the proxy.

    proxy = CountingProxy("127.0.0.1:5000")
    before = proxy.snapshot()
    ...                                   # client works against proxy.host
    fetched = proxy.snapshot() - before   # Counts
    proxy.stop()

The HTTP accounting follows Content-Length framing (what distribution sends); a
response it cannot frame (chunked, or no length) is counted as body to the end of
the connection.
"""

from __future__ import annotations

import collections
import socket
import threading
from typing import Callable, Deque, Dict, List, NamedTuple, Optional, Tuple

_BUFFER_BYTES = 256 * 1024
_MAX_HEAD_BYTES = 64 * 1024


class Counts(NamedTuple):
    downstream_bytes: int  # registry -> client, everything
    upstream_bytes: int  # client -> registry, everything
    body_bytes: int  # registry -> client, response bodies only
    connections: int
    requests: Dict[str, int]  # by method

    def __sub__(self, other: "Counts") -> "Counts":  # type: ignore[override]
        methods = set(self.requests) | set(other.requests)
        return Counts(
            self.downstream_bytes - other.downstream_bytes,
            self.upstream_bytes - other.upstream_bytes,
            self.body_bytes - other.body_bytes,
            self.connections - other.connections,
            {m: self.requests.get(m, 0) - other.requests.get(m, 0) for m in sorted(methods)},
        )

    @property
    def request_count(self) -> int:
        return sum(self.requests.values())


class _Totals:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.downstream = 0
        self.upstream = 0
        self.body = 0
        self.connections = 0
        self.requests: Dict[str, int] = collections.Counter()


class _RequestParser:
    """Finds request heads in the client's byte stream (bodies skipped by Content-Length)."""

    def __init__(self, methods: Deque[str], totals: _Totals) -> None:
        self._methods = methods
        self._totals = totals
        self._head = b""
        self._body_left = 0
        self._broken = False

    def feed(self, data: bytes) -> None:
        while data and not self._broken:
            if self._body_left:
                taken = min(self._body_left, len(data))
                self._body_left -= taken
                data = data[taken:]
                continue
            self._head += data
            data = b""
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                self._broken = len(self._head) > _MAX_HEAD_BYTES
                return
            head, data = self._head[:end], self._head[end + 4 :]
            self._head = b""
            method = head.split(b" ", 1)[0].decode("ascii", "replace")
            headers = _headers(head)
            self._methods.append(method)
            with self._totals.lock:
                self._totals.requests[method] += 1
            if "chunked" in headers.get("transfer-encoding", ""):
                self._broken = True  # our clients do not send chunked bodies; stop parsing
                return
            self._body_left = int(headers.get("content-length", "0") or 0)


class _ResponseParser:
    """Splits the registry's byte stream into heads and bodies (Content-Length framing)."""

    def __init__(self, methods: Deque[str], totals: _Totals) -> None:
        self._methods = methods
        self._totals = totals
        self._head = b""
        self._body_left = 0
        self._unframed = False

    def feed(self, data: bytes) -> None:
        while data:
            if self._unframed:
                self._count_body(len(data))
                return
            if self._body_left:
                taken = min(self._body_left, len(data))
                self._body_left -= taken
                self._count_body(taken)
                data = data[taken:]
                continue
            self._head += data
            data = b""
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _MAX_HEAD_BYTES:
                    self._unframed = True
                return
            head, data = self._head[:end], self._head[end + 4 :]
            self._head = b""
            method = self._methods.popleft() if self._methods else "GET"
            status = int(head.split(b" ", 2)[1]) if head.count(b" ") >= 1 else 0
            headers = _headers(head)
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                continue
            if "content-length" in headers:
                self._body_left = int(headers["content-length"] or 0)
            else:
                self._unframed = True

    def _count_body(self, count: int) -> None:
        with self._totals.lock:
            self._totals.body += count


def _headers(head: bytes) -> Dict[str, str]:
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("ascii", "replace")] = value.strip().decode("ascii", "replace").lower()
    return headers


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream: Tuple[str, int] = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._totals = _Totals()
        self._open: List[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="counting-proxy", daemon=True)
        self._thread.start()

    def snapshot(self) -> Counts:
        totals = self._totals
        with totals.lock:
            return Counts(totals.downstream, totals.upstream, totals.body, totals.connections, dict(totals.requests))

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._totals.lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            _close(sock)
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            methods: Deque[str] = collections.deque()
            with self._totals.lock:
                self._totals.connections += 1
                self._open.extend((client, server))
            requests = _RequestParser(methods, self._totals)
            responses = _ResponseParser(methods, self._totals)
            threading.Thread(target=self._pump, args=(server, client, True, responses.feed), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, False, requests.feed), daemon=True).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, downstream: bool, parse: Callable[[bytes], None]
    ) -> None:
        buffer = bytearray(_BUFFER_BYTES)
        view = memoryview(buffer)
        try:
            while True:
                received = source.recv_into(buffer)
                if not received:
                    break
                chunk = bytes(view[:received])
                if not downstream:
                    parse(chunk)  # before relaying: the response cannot come before its request
                sink.sendall(chunk)
                if downstream:
                    parse(chunk)
                with self._totals.lock:
                    if downstream:
                        self._totals.downstream += received
                    else:
                        self._totals.upstream += received
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._forget(source)

    def _forget(self, sock: Optional[socket.socket]) -> None:
        if sock is None:
            return
        with self._totals.lock:
            if sock in self._open:
                self._open.remove(sock)
        _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
