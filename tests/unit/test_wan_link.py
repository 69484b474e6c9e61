"""bench/wan_link.py, the simulated WAN link of bench/wan_bench.py, does what it is configured to:
a round trip per exchange, set-up per new connection, the bandwidth cap, blob GETs redirected
with Range intact, and byte counts. Measured against a tiny local HTTP server; no Pants."""

from __future__ import annotations

import hashlib
import http.client
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from wan_link import RegistryFront, TcpRelay, WanLink  # noqa: E402

BLOB = bytes(range(256)) * 4096  # 1 MiB
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path.endswith("/blobs/" + DIGEST):
            body = BLOB
            start, end = 0, len(BLOB) - 1
            ranged = self.headers.get("Range")
            if ranged:
                first, _, last = ranged.split("=", 1)[1].partition("-")
                start, end = int(first), int(last)
            body = BLOB[start : end + 1]
            self.send_response(206 if ranged else 200)
        else:
            body = b"{}"
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _get(conn: http.client.HTTPConnection, path: str, **headers: str) -> Tuple[int, bytes, str]:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, response.read(), response.getheader("Location") or ""


def test_a_request_on_an_open_connection_costs_one_round_trip_and_a_new_connection_adds_the_set_up(
    http_server: str,
) -> None:
    link = WanLink(rtt=0.100, bandwidth=0, setup=0.150)
    relay = TcpRelay(link, http_server)
    try:
        host, port = relay.address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        started = time.monotonic()
        assert _get(conn, "/v2/")[0] == 200
        first = time.monotonic() - started
        started = time.monotonic()
        assert _get(conn, "/v2/")[0] == 200
        second = time.monotonic() - started
        conn.close()
    finally:
        relay.close()
        link.close()
    assert 0.245 <= first < 1.0, first  # set-up 150 ms + one round trip 100 ms
    assert 0.095 <= second < 0.6, second


def test_the_registry_front_redirects_blob_gets_to_the_storage_host_which_serves_ranges(http_server: str) -> None:
    link = WanLink(rtt=0.050, bandwidth=0, setup=0.0)
    front = RegistryFront(link, http_server)
    try:
        host, port = front.address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        started = time.monotonic()
        status, body, location = _get(conn, f"/v2/acme/cache/blobs/{DIGEST}")
        redirect_seconds = time.monotonic() - started
        assert (status, body) == (307, b"")
        assert location == f"http://{front.storage_address}/v2/acme/cache/blobs/{DIGEST}"
        assert _get(conn, "/v2/acme/cache/manifests/latest")[0] == 200  # other requests pass through
        conn.close()
        storage_host, storage_port = front.storage_address.split(":")
        storage = http.client.HTTPConnection(storage_host, int(storage_port), timeout=10)
        before = link.snapshot()
        status, body, _ = _get(storage, f"/v2/acme/cache/blobs/{DIGEST}", Range="bytes=1000-1999")
        counted = link.snapshot() - before
        storage.close()
    finally:
        front.close()
        link.close()
    assert 0.045 <= redirect_seconds < 0.6, redirect_seconds
    assert (status, body) == (206, BLOB[1000:2000])
    assert counted.body_bytes == 1000
    assert counted.down_bytes > 1000 and counted.requests == {"GET blob": 1}


def test_the_bandwidth_cap_paces_a_transfer(http_server: str) -> None:
    link = WanLink(rtt=0.0, bandwidth=8e6 / 8 * 8, setup=0.0)  # 8 MB/s: 1 MiB in about 131 ms
    relay = TcpRelay(link, http_server)
    try:
        host, port = relay.address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        _get(conn, "/v2/")  # the connection is up
        started = time.monotonic()
        status, body, _ = _get(conn, f"/v2/acme/cache/blobs/{DIGEST}")
        seconds = time.monotonic() - started
        conn.close()
    finally:
        relay.close()
        link.close()
    assert status == 200 and body == BLOB
    assert 0.125 <= seconds < 1.0, seconds


def test_the_relay_preserves_byte_order_across_many_chunks(http_server: str) -> None:
    link = WanLink(rtt=0.010, bandwidth=0, setup=0.0)
    relay = TcpRelay(link, http_server)
    try:
        host, port = relay.address.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            requests = b"".join(
                f"GET /v2/acme/cache/blobs/{DIGEST} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for _ in range(3)
            )
            sock.sendall(requests)
            received = b""
            while received.count(BLOB) < 3:
                data = sock.recv(1 << 20)
                assert data, "the relay closed the connection early"
                received += data
    finally:
        relay.close()
        link.close()
    assert received.count(BLOB) == 3
