"""The Control service as JSON over HTTP/1.1 on loopback, for clients without grpcio.

The Pants plugin runs inside Pants' own interpreter, where grpcio is usually not
importable; this endpoint lets it talk to the daemon with the standard library in
about a millisecond. Same operations, same messages (control.proto's proto3 JSON
form, original field names), same bearer token as the gRPC service:

    GET  /v1/status                          -> StatusResponse
    POST /v1/export    {"background": false} -> ExportResponse
    POST /v1/shutdown  {"skip_export": false} -> ShutdownResponse

Errors: 401 (token), 404 (path), 400 (body), 500 {"error": "..."}.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

from google.protobuf import json_format
from google.protobuf.message import Message

from oci_cache.reapi import control_pb2
from oci_cache.server.activity import Activity
from oci_cache.server.daemon_control import DaemonControl

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_ROUTE_BODY_BYTES = 8 << 20
JsonRoutes = Dict[Tuple[str, str], Callable[[bytes], Dict[str, Any]]]
"""Extra endpoints that take and answer plain JSON (e.g. explain/control_routes.py)."""
# How soon stop() takes effect (serve_forever checks for it this often).
SHUTDOWN_POLL_SECONDS = 0.1


def message_to_json(message: Message) -> bytes:
    return json.dumps(
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        ),
        sort_keys=True,
    ).encode("utf-8")


class ControlHttpServer:
    """Serves DaemonControl on http://HOST:PORT (port 0: a free one) until stop()."""

    def __init__(
        self,
        control: DaemonControl,
        activity: Activity,
        bearer_token: Optional[str],
        host: str = "127.0.0.1",
        json_routes: Optional[JsonRoutes] = None,
    ) -> None:
        routes: Dict[Tuple[str, str], Tuple[Callable[[Any], Message], Optional[type]]] = {
            ("GET", "/v1/status"): (lambda request: control.status(), None),
            ("POST", "/v1/export"): (control.export, control_pb2.ExportRequest),
            ("POST", "/v1/shutdown"): (control.shutdown, control_pb2.ShutdownRequest),
        }
        expected = f"Bearer {bearer_token}".encode("utf-8") if bearer_token else None
        self._handler_class = _handler_class(routes, expected, activity, dict(json_routes or {}))
        self._host = host
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> str:
        """Binds a free port on the host, serves on a thread; the URL."""
        server = ThreadingHTTPServer((self._host, 0), self._handler_class)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="control-http", daemon=True
        )
        self._thread.start()
        return f"http://{self._host}:{server.server_address[1]}"

    def stop(self) -> None:
        """Stops accepting requests (requests being answered finish on their threads)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        if thread is not None:
            server.shutdown()
            thread.join()
        server.server_close()


def _handler_class(
    routes: Dict[Tuple[str, str], Tuple[Callable[[Any], Message], Optional[type]]],
    expected_authorization: Optional[bytes],
    activity: Activity,
    json_routes: JsonRoutes,
) -> type:
    class ControlRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "oci-cache-control"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def _handle(self, method: str) -> None:
            activity.touch()
            json_route = json_routes.get((method, self.path.split("?", 1)[0]))
            body = self._read_body(MAX_JSON_ROUTE_BODY_BYTES if json_route is not None else MAX_BODY_BYTES)
            if body is None:
                return
            if not self._authorized():
                self._reply(401, {"error": "missing or wrong 'authorization: Bearer' token"})
                return
            if json_route is not None:
                self._answer_json_route(json_route, body, method)
                return
            route = routes.get((method, self.path.split("?", 1)[0]))
            if route is None:
                self._reply(404, {"error": f"no such endpoint: {method} {self.path}"})
                return
            function, request_class = route
            request: Any = None
            if request_class is not None:
                request = request_class()
                try:
                    if body.strip():
                        json_format.Parse(body.decode("utf-8"), request, ignore_unknown_fields=True)
                except (json_format.ParseError, UnicodeDecodeError) as error:
                    self._reply(400, {"error": f"request body does not parse: {error}"})
                    return
            try:
                response = function(request)
            except Exception as error:  # noqa: BLE001 - the caller gets the reason
                logger.exception("control request %s %s failed", method, self.path)
                self._reply(500, {"error": f"{type(error).__name__}: {error}"})
                return
            self._send(200, message_to_json(response))

        def _answer_json_route(self, route: Callable[[bytes], Dict[str, Any]], body: bytes, method: str) -> None:
            try:
                document = route(body)
            except ValueError as error:
                self._reply(400, {"error": f"request body does not parse: {error}"})
                return
            except Exception as error:  # noqa: BLE001 - the caller gets the reason
                logger.exception("control request %s %s failed", method, self.path)
                self._reply(500, {"error": f"{type(error).__name__}: {error}"})
                return
            self._send(200, json.dumps(document, ensure_ascii=False).encode("utf-8"))

        def _read_body(self, limit: int) -> Optional[bytes]:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > limit:
                self._reply(400, {"error": "bad Content-Length"})
                return None
            return self.rfile.read(length) if length else b""

        def _authorized(self) -> bool:
            if expected_authorization is None:
                return True
            presented = (self.headers.get("Authorization") or "").encode("utf-8")
            return hmac.compare_digest(presented, expected_authorization)

        def _reply(self, status: int, document: Dict[str, Any]) -> None:
            self._send(status, json.dumps(document).encode("utf-8"))

        def _send(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            logger.debug("control http: " + format, *args)

    return ControlRequestHandler


__all__: List[str] = ["ControlHttpServer", "message_to_json"]
