"""A fault-injecting HTTP proxy between oci-cache and a real plain-HTTP registry.

    plan = FaultPlan(seed=7, rules=[FaultRule("corrupt", 0.5, methods={"GET"}, path=BLOB_PATH)])
    proxy = RegistryFaultProxy(registry.host, plan)
    ... point oci-cache at proxy.host ...
    proxy.injected      # [(method, path, kind), ...] what was actually done
    proxy.stop()

Fault kinds (`FAULT_KINDS`):
    500, 503          answered by the proxy; the registry never sees the request
    429               answered with `Retry-After: <retry_after>`
    stall             the request is read, then nothing is answered for `stall_seconds`
                      (longer than the client's read timeout), then the connection is reset
    reset_request     the connection is reset while the request (its body) is being read
    reset_body        the registry answers; the client gets the headers and half the body,
                      then a reset
    truncate          the registry answers; the client gets the full Content-Length but
                      only half the body, then a clean close
    corrupt           the registry answers; one byte of the response body is changed
                      (same length, same headers)

The three response faults forward the request first, so a PUT reaches the registry
and only its answer is lost — what a real network does. `truncate` and `corrupt`
apply to responses with a body (not HEAD, not empty 201s); `reset_body` on an empty
answer (a 201 to a manifest PUT) resets before anything is sent; `corrupt` never alters request
bodies (TLS rules that out on a real network; registries verify uploads anyway).

Each decision is a seeded draw keyed by (seed, rule, method, path without the
repository and upload id, how often that key was seen), so a run with one client
thread is replayed exactly by its seed, whatever the repository, and concurrent
runs nearly so. The Host
header is passed through unchanged, so the registry's upload Locations point at the
proxy.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

FAULT_KINDS = ("500", "503", "429", "stall", "reset_request", "reset_body", "truncate", "corrupt")
STATUS_FAULTS = {"500": 500, "503": 503, "429": 429}
RESPONSE_FAULTS = frozenset({"reset_body", "truncate", "corrupt"})

# Path patterns (regular expressions searched in the request path).
BLOB_PATH = r"/blobs/sha256:"
MANIFEST_PATH = r"/manifests/"
UPLOAD_PATH = r"/blobs/uploads/"
API_PATH = r"^/v2/.+"  # everything but the /v2/ ping


@dataclass(frozen=True)
class FaultRule:
    """Injects `kind` into a `rate` share of the requests it matches."""

    kind: str
    rate: float
    methods: Optional[FrozenSet[str]] = None  # None: every method
    path: Optional[str] = None  # a regex searched in the path (with query); None: every path
    limit: Optional[int] = None  # at most this many injections
    retry_after: str = "1"  # for 429
    stall_seconds: float = 3.0  # for stall

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; want one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate {self.rate} is not in [0, 1]")
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or re.search(self.path, path) is not None

    def describe(self) -> str:
        where = ",".join(sorted(self.methods)) if self.methods else "any method"
        if self.path:
            where += f" {self.path}"
        extra = f", Retry-After {self.retry_after}" if self.kind == "429" else ""
        extra += f", {self.stall_seconds:g}s" if self.kind == "stall" else ""
        return f"{self.kind} at {self.rate:.0%} of {where}{extra}"


@dataclass
class FaultPlan:
    seed: int = 0
    rules: Sequence[FaultRule] = ()

    def describe(self) -> str:
        return f"seed {self.seed}: " + ("; ".join(rule.describe() for rule in self.rules) or "no faults")


@dataclass
class _Decision:
    rule: Optional[FaultRule]
    rng: random.Random
    index: int = -1  # the rule's position in the plan


class RegistryFaultProxy:
    """See the module docstring. `plan` may be replaced at any time (`set_plan`)."""

    def __init__(self, upstream: str, plan: Optional[FaultPlan] = None, upstream_timeout: float = 60.0) -> None:
        self.upstream = upstream  # "127.0.0.1:PORT" of a plain-HTTP server
        self.upstream_timeout = upstream_timeout
        self.injected: List[Tuple[str, str, str]] = []
        self.requests: List[Tuple[str, str]] = []
        self._plan = plan or FaultPlan()
        self._seen: Counter = Counter()
        self._used: Counter = Counter()  # rule index -> injections
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: Set[socket.socket] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _handle(self) -> None:
                proxy._relay(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    # ------------------------------------------------------------------ control

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._seen.clear()
            self._used.clear()

    def clear(self) -> None:
        """No more faults (records are kept)."""
        self.set_plan(FaultPlan())

    def injected_kinds(self) -> Counter:
        with self._lock:
            return Counter(kind for _, _, kind in self.injected)

    def stop(self) -> None:
        """Stops listening and closes the kept-alive connections (clients see the host go away)."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------------ relaying

    def _decide(self, method: str, path: str) -> _Decision:
        key_path = decision_key(path)
        with self._lock:
            self.requests.append((method, path))
            self._seen[(method, key_path)] += 1
            occurrence = self._seen[(method, key_path)]
            plan = self._plan
            for index, rule in enumerate(plan.rules):
                if not rule.matches(method, path):
                    continue
                if rule.limit is not None and self._used[index] >= rule.limit:
                    continue
                rng = _rng(f"{plan.seed}|{index}|{method}|{key_path}|{occurrence}")
                if rng.random() < rule.rate:
                    return _Decision(rule, rng, index)
            return _Decision(None, _rng(f"{plan.seed}|{method}|{key_path}|{occurrence}"))

    def _record(self, decision: _Decision, method: str, path: str) -> None:
        assert decision.rule is not None
        with self._lock:
            self.injected.append((method, path, decision.rule.kind))
            self._used[decision.index] += 1

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        decision = self._decide(method, path)
        kind = decision.rule.kind if decision.rule else None
        if kind == "reset_request":
            self._record(decision, method, path)
            _read_part_of_body(handler)
            _reset(handler)
            return
        body = read_request_body(handler)
        if kind == "stall":
            self._record(decision, method, path)
            assert decision.rule is not None
            self._stopping.wait(decision.rule.stall_seconds)
            _reset(handler)
            return
        if kind in STATUS_FAULTS:
            self._record(decision, method, path)
            assert decision.rule is not None
            headers = {"Retry-After": decision.rule.retry_after} if kind == "429" else {}
            answer_error(handler, STATUS_FAULTS[kind], headers, method)
            return
        status, headers, data = self._forward(handler, method, path, body)
        if kind in RESPONSE_FAULTS and data and method != "HEAD":
            self._record(decision, method, path)
            self._answer_faulty(handler, kind, status, headers, data, decision.rng)
            return
        if kind == "reset_body" and method != "HEAD":  # no body to cut: the whole answer is lost
            self._record(decision, method, path)
            _reset(handler)
            return
        answer(handler, status, headers, data, method)

    def _forward(
        self, handler: BaseHTTPRequestHandler, method: str, path: str, body: bytes
    ) -> Tuple[int, List[Tuple[str, str]], bytes]:
        host, port = self.upstream.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=self.upstream_timeout)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
            headers["Content-Length"] = str(len(body))
            send_body = body if (body or method in ("PUT", "POST", "PATCH")) else None
            conn.request(method, path, body=send_body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    def _answer_faulty(
        self,
        handler: BaseHTTPRequestHandler,
        kind: Optional[str],
        status: int,
        headers: List[Tuple[str, str]],
        data: bytes,
        rng: random.Random,
    ) -> None:
        if kind == "corrupt":
            position = rng.randrange(len(data))
            altered = bytearray(data)
            altered[position] ^= 1 + rng.randrange(255)  # never 0: the byte always changes
            answer(handler, status, headers, bytes(altered), handler.command)
            return
        _send_head(handler, status, headers, len(data))
        handler.wfile.write(data[: len(data) // 2])
        if kind == "reset_body":
            _reset(handler)
        else:  # truncate: a clean close, short of the promised length
            handler.close_connection = True
            try:
                handler.wfile.flush()
                handler.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass


# ---------------------------------------------------------------------- helpers


def _rng(key: str) -> random.Random:
    """A generator for one decision. Seeded with a SHA-256 of the key: Mersenne Twister
    seeded with similar strings directly gives correlated first draws."""
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


def decision_key(path: str) -> str:
    """What a request's draws are keyed by: the path without the repository name, the
    upload session id or the query, so that a seed replays with other repositories."""
    path = path.split("?", 1)[0]
    path = re.sub(r"^/v2/.+?/(blobs|manifests|tags)/", r"\1/", path)
    return re.sub(r"^blobs/uploads/.*$", "blobs/uploads/", path)


def _send_head(handler: BaseHTTPRequestHandler, status: int, headers: List[Tuple[str, str]], length: int) -> None:
    handler.send_response(status)
    for key, value in headers:
        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
            handler.send_header(key, value)
    handler.send_header("Content-Length", str(length))
    handler.end_headers()


def answer(
    handler: BaseHTTPRequestHandler, status: int, headers: List[Tuple[str, str]], data: bytes, method: str
) -> None:
    if method == "HEAD":
        declared = next((v for k, v in headers if k.lower() == "content-length"), None)
        _send_head(handler, status, headers, int(declared) if declared and declared.isdigit() else 0)
        return
    _send_head(handler, status, headers, len(data))
    handler.wfile.write(data)


def answer_error(handler: BaseHTTPRequestHandler, status: int, headers: Dict[str, str], method: str) -> None:
    payload = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}).encode()
    pairs = list(headers.items()) + [("Content-Type", "application/json")]
    answer(handler, status, pairs + [("Content-Length", str(len(payload)))], payload, method)


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Closes with a TCP RST (SO_LINGER 0) instead of a FIN."""
    handler.close_connection = True
    try:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
    except OSError:
        pass


def _read_part_of_body(handler: BaseHTTPRequestHandler) -> None:
    length = int(handler.headers.get("Content-Length") or 0)
    if length > 1:
        handler.rfile.read(length // 2)


def read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
