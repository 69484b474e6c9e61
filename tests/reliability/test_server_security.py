"""Server-side security of `oci-cache serve` (issue 5, item 5).

- It listens on loopback only unless told otherwise (every listening socket of the
  process, read from /proc/net/tcp{,6}; the positive control shows the check can fail).
- With --token-file, every RPC (REAPI, ByteStream, Capabilities, Control) and the
  HTTP control endpoint require `authorization: Bearer <token>`: a missing or wrong
  token, the token in another header or another scheme → UNAUTHENTICATED (401), and a
  rejected call changes nothing. The token appears in no state file and no log line.
- What `serve` itself creates in its state directory, and with which modes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import grpc
import pytest

from oci_cache.reapi import bytestream_pb2, control_pb2
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from process_watch import is_loopback, listening_tcp_sockets
from server_fixtures import ServerProcess, start_server

TOKEN = "tok-" + uuid.uuid4().hex
GOOD = (("authorization", f"Bearer {TOKEN}"),)

RE = "/build.bazel.remote.execution.v2."
CONTROL = "/oci_cache.v1.Control/"


def _digest(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def _serve_supports(flag: str) -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "oci_cache.cli.main", "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    return flag in help_text


CONTROL_HTTP_FLAG = "--control-http"
CONTROL_HTTP = _serve_supports(CONTROL_HTTP_FLAG)
CONTROL_HTTP_ARGS: Tuple[str, ...] = (CONTROL_HTTP_FLAG,) if CONTROL_HTTP else ()


def start_serve_with_defaults(state_dir: Path, *args: str) -> ServerProcess:
    """`oci-cache serve --state-dir DIR [args]` with no --listen at all (start_server always passes one)."""
    log_path = state_dir.parent / f"{state_dir.name}-defaults.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "oci_cache.cli.main", "serve", "--state-dir", str(state_dir), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    lines: List[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(30)
    first = lines[0].decode().strip() if lines else ""
    if not first.startswith("listening on grpc://"):
        process.kill()
        process.wait()
        raise AssertionError(f"serve did not start: {first!r}\n{log_path.read_text()}")
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    return ServerProcess(process, first[len("listening on ") :], state_dir, log_path)


# --- listening sockets ----------------------------------------------------------------------


def test_serve_with_default_listen_binds_loopback_only(tmp_path: Path) -> None:
    server = start_serve_with_defaults(tmp_path / "state", *CONTROL_HTTP_ARGS)
    try:
        sockets = listening_tcp_sockets(server.pid)
        assert server.address.startswith("grpc://127.0.0.1:")
        assert (("127.0.0.1", server.port)) in sockets
        assert len(sockets) == (2 if CONTROL_HTTP else 1), sockets  # the cache port (+ the HTTP control port)
        assert all(is_loopback(address) for address, _ in sockets), sockets
        if CONTROL_HTTP:
            control_url = json.loads((tmp_path / "state" / "daemon.json").read_text())["control_url"]
            assert control_url.startswith("http://127.0.0.1:"), control_url
    finally:
        server.stop()


def test_listening_on_all_interfaces_only_when_told_and_control_stays_on_loopback(tmp_path: Path) -> None:
    """The positive control: the socket check does see a non-loopback bind."""
    server = start_server(tmp_path / "state", *CONTROL_HTTP_ARGS, listen="0.0.0.0:0")
    try:
        sockets = listening_tcp_sockets(server.pid)
        public = [(a, p) for a, p in sockets if not is_loopback(a)]
        assert [p for _, p in public] == [server.port], sockets
        assert public[0][0] in ("0.0.0.0", "::"), sockets
        # The HTTP control endpoint (if any) is never exposed beyond loopback.
        assert len(sockets) == (2 if CONTROL_HTTP else 1), sockets
    finally:
        server.stop()


# --- the bearer token -----------------------------------------------------------------------


class Call:
    """One RPC with a request that succeeds when the token is right."""

    def __init__(self, name: str, method: str, shape: str, requests: Sequence[bytes]) -> None:
        self.name = name
        self.method = method
        self.shape = shape
        self.requests = list(requests)

    def invoke(self, channel: grpc.Channel, metadata: Sequence[Tuple[str, object]]) -> grpc.StatusCode:
        try:
            if self.shape == "unary":
                channel.unary_unary(self.method)(self.requests[0], metadata=metadata, timeout=15)
            elif self.shape == "server_stream":
                list(channel.unary_stream(self.method)(self.requests[0], metadata=metadata, timeout=15))
            else:
                channel.stream_unary(self.method)(iter(self.requests), metadata=metadata, timeout=15)
        except grpc.RpcError as error:
            return error.code()  # type: ignore[attr-defined,no-any-return]
        return grpc.StatusCode.OK


STORED = b"stored before the test " + uuid.uuid4().bytes
STORED_ACTION = _digest(b"action stored before the test " + uuid.uuid4().bytes)


def calls() -> List[Call]:
    """Every RPC the server has; the writes use fresh digests (checked for no side effect)."""
    stored = _digest(STORED)
    new_blob = b"new blob " + uuid.uuid4().bytes
    new_stream_blob = b"new streamed blob " + uuid.uuid4().bytes
    new_action = _digest(b"new action " + uuid.uuid4().bytes)
    upload = f"uploads/{uuid.uuid4()}/blobs/{_digest(new_stream_blob).hash}/{len(new_stream_blob)}"
    return [
        Call(
            "GetCapabilities",
            RE + "Capabilities/GetCapabilities",
            "unary",
            [re_pb2.GetCapabilitiesRequest().SerializeToString()],
        ),
        Call(
            "GetActionResult",
            RE + "ActionCache/GetActionResult",
            "unary",
            [re_pb2.GetActionResultRequest(action_digest=STORED_ACTION).SerializeToString()],
        ),
        Call(
            "UpdateActionResult",
            RE + "ActionCache/UpdateActionResult",
            "unary",
            [
                re_pb2.UpdateActionResultRequest(
                    action_digest=new_action, action_result=re_pb2.ActionResult(exit_code=3)
                ).SerializeToString()
            ],
        ),
        Call(
            "FindMissingBlobs",
            RE + "ContentAddressableStorage/FindMissingBlobs",
            "unary",
            [re_pb2.FindMissingBlobsRequest(blob_digests=[stored]).SerializeToString()],
        ),
        Call(
            "BatchUpdateBlobs",
            RE + "ContentAddressableStorage/BatchUpdateBlobs",
            "unary",
            [
                re_pb2.BatchUpdateBlobsRequest(
                    requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=_digest(new_blob), data=new_blob)]
                ).SerializeToString()
            ],
        ),
        Call(
            "BatchReadBlobs",
            RE + "ContentAddressableStorage/BatchReadBlobs",
            "unary",
            [re_pb2.BatchReadBlobsRequest(digests=[stored]).SerializeToString()],
        ),
        Call(
            "GetTree",
            RE + "ContentAddressableStorage/GetTree",
            "server_stream",
            [re_pb2.GetTreeRequest(root_digest=_digest(b"")).SerializeToString()],
        ),
        Call(
            "Read",
            "/google.bytestream.ByteStream/Read",
            "server_stream",
            [bytestream_pb2.ReadRequest(resource_name=f"blobs/{stored.hash}/{stored.size_bytes}").SerializeToString()],
        ),
        Call(
            "Write",
            "/google.bytestream.ByteStream/Write",
            "client_stream",
            [
                bytestream_pb2.WriteRequest(
                    resource_name=upload, data=new_stream_blob, finish_write=True
                ).SerializeToString()
            ],
        ),
        Call(
            "QueryWriteStatus",
            "/google.bytestream.ByteStream/QueryWriteStatus",
            "unary",
            [bytestream_pb2.QueryWriteStatusRequest(resource_name=upload).SerializeToString()],
        ),
        Call("Control.GetStatus", CONTROL + "GetStatus", "unary", [control_pb2.GetStatusRequest().SerializeToString()]),
        Call("Control.Export", CONTROL + "Export", "unary", [control_pb2.ExportRequest().SerializeToString()]),
        Call(
            "Control.Shutdown",
            CONTROL + "Shutdown",
            "unary",
            [control_pb2.ShutdownRequest(skip_export=True).SerializeToString()],
        ),
    ]


CALL_NAMES = [c.name for c in calls()]

# Ways to not present the right token. None of them may get through.
BAD_METADATA = {
    "none": (),
    "wrong-token": (("authorization", "Bearer wrong-" + TOKEN[4:]),),
    "token-without-scheme": (("authorization", TOKEN),),
    "basic-scheme": (("authorization", "Basic " + base64.b64encode(f"user:{TOKEN}".encode()).decode()),),
    "token-prefix": (("authorization", f"Bearer {TOKEN[:-1]}"),),
    "token-plus-suffix": (("authorization", f"Bearer {TOKEN}x"),),
    "trailing-space": (("authorization", f"Bearer {TOKEN} "),),
    "two-spaces": (("authorization", f"Bearer  {TOKEN}"),),
    "empty-bearer": (("authorization", "Bearer "),),
    "x-authorization-header": (("x-authorization", f"Bearer {TOKEN}"),),
    "proxy-authorization-header": (("proxy-authorization", f"Bearer {TOKEN}"),),
    "authorization-bin-header": (("authorization-bin", f"Bearer {TOKEN}".encode()),),
    "token-header": (("token", TOKEN),),
    "wrong-then-right": (("authorization", "Bearer nope"), ("authorization", f"Bearer {TOKEN}")),
}


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("token")
    token_file = root / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    server = start_server(root / "state", "--token-file", str(token_file), *CONTROL_HTTP_ARGS)
    channel = server.channel()
    seed_blob = Call(
        "seed",
        RE + "ContentAddressableStorage/BatchUpdateBlobs",
        "unary",
        [
            re_pb2.BatchUpdateBlobsRequest(
                requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=_digest(STORED), data=STORED)]
            ).SerializeToString()
        ],
    )
    seed_action = Call(
        "seed",
        RE + "ActionCache/UpdateActionResult",
        "unary",
        [
            re_pb2.UpdateActionResultRequest(
                action_digest=STORED_ACTION, action_result=re_pb2.ActionResult(exit_code=0)
            ).SerializeToString()
        ],
    )
    assert seed_blob.invoke(channel, GOOD) is grpc.StatusCode.OK
    assert seed_action.invoke(channel, GOOD) is grpc.StatusCode.OK
    yield server
    server.stop()


@pytest.mark.parametrize("variant", sorted(BAD_METADATA))
def test_every_rpc_rejects_a_missing_or_misplaced_token(token_server: ServerProcess, variant: str) -> None:
    channel = token_server.channel()
    answers = {call.name: call.invoke(channel, BAD_METADATA[variant]) for call in calls()}
    assert answers == {name: grpc.StatusCode.UNAUTHENTICATED for name in CALL_NAMES}
    assert token_server.is_running(), "an unauthenticated Shutdown stopped the server"


def test_rejected_calls_change_nothing(token_server: ServerProcess) -> None:
    channel = token_server.channel()
    every = calls()
    for call in every:
        assert call.invoke(channel, ()) is grpc.StatusCode.UNAUTHENTICATED
    by_name = {c.name: c for c in every}
    new_blob = re_pb2.BatchUpdateBlobsRequest.FromString(by_name["BatchUpdateBlobs"].requests[0]).requests[0].digest
    streamed = bytestream_pb2.WriteRequest.FromString(by_name["Write"].requests[0]).resource_name.split("/")
    streamed_digest = re_pb2.Digest(hash=streamed[-2], size_bytes=int(streamed[-1]))
    missing = re_pb2.FindMissingBlobsResponse.FromString(
        channel.unary_unary(RE + "ContentAddressableStorage/FindMissingBlobs")(
            re_pb2.FindMissingBlobsRequest(blob_digests=[new_blob, streamed_digest]).SerializeToString(), metadata=GOOD
        )
    ).missing_blob_digests
    assert {d.hash for d in missing} == {new_blob.hash, streamed_digest.hash}
    action = re_pb2.UpdateActionResultRequest.FromString(by_name["UpdateActionResult"].requests[0]).action_digest
    get = Call(
        "get",
        RE + "ActionCache/GetActionResult",
        "unary",
        [re_pb2.GetActionResultRequest(action_digest=action).SerializeToString()],
    )
    assert get.invoke(channel, GOOD) is grpc.StatusCode.NOT_FOUND
    assert token_server.is_running()


def test_garbage_without_a_token_is_unauthenticated_not_parsed(token_server: ServerProcess) -> None:
    channel = token_server.channel()
    for method in (RE + "ActionCache/GetActionResult", "/google.bytestream.ByteStream/QueryWriteStatus"):
        with pytest.raises(grpc.RpcError) as error:
            channel.unary_unary(method)(b"\x0a\xff\xff\xff\xff\x0f garbage", timeout=10)
        assert error.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_the_right_token_opens_every_rpc(token_server: ServerProcess) -> None:
    channel = token_server.channel()
    answers = {call.name: call.invoke(channel, GOOD) for call in calls() if call.name != "Control.Shutdown"}
    expected = {name: grpc.StatusCode.OK for name in CALL_NAMES if name != "Control.Shutdown"}
    # Export may be refused without anywhere to export to; it must not be UNAUTHENTICATED.
    if answers.get("Control.Export") is not grpc.StatusCode.OK:
        assert answers["Control.Export"] in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE), answers
        expected["Control.Export"] = answers["Control.Export"]
    assert answers == expected


def _http(url: str, method: str, headers: Optional[dict] = None, body: Optional[bytes] = None) -> int:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.skipif(not CONTROL_HTTP, reason="this `serve` has no --control-http")
def test_http_control_endpoint_requires_the_token(token_server: ServerProcess) -> None:
    control_url = json.loads((token_server.state_dir / "daemon.json").read_text())["control_url"]
    assert control_url.startswith("http://127.0.0.1:")
    status = control_url + "/v1/status"
    for variant, metadata in BAD_METADATA.items():
        headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in metadata if k != "authorization-bin"}
        if variant == "wrong-then-right":
            continue  # urllib cannot send one header twice
        assert _http(status, "GET", headers) == 401, variant
    assert (
        _http(control_url + "/v1/shutdown", "POST", {"content-type": "application/json"}, b'{"skip_export": true}')
        == 401
    )
    assert _http(control_url + "/v1/export", "POST", {"content-type": "application/json"}, b"{}") == 401
    assert token_server.is_running()
    assert _http(status, "GET", {"authorization": f"Bearer {TOKEN}"}) == 200


def test_the_token_appears_in_no_state_file_and_no_log(token_server: ServerProcess) -> None:
    channel = token_server.channel()
    for metadata in BAD_METADATA.values():
        calls()[0].invoke(channel, metadata)
    for path in token_server.state_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < (1 << 20):
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in token_server.log_text()
    state = json.loads((token_server.state_dir / "daemon.json").read_text())
    assert TOKEN not in json.dumps(state)


# --- what `serve` creates on disk -----------------------------------------------------------


def _populate(server: ServerProcess) -> None:
    """A blob, a streamed blob and an action result, so that the store has files."""
    channel = server.channel()
    blob = b"permissions " + uuid.uuid4().bytes
    big = os.urandom(200_000)
    assert (
        Call(
            "put",
            RE + "ContentAddressableStorage/BatchUpdateBlobs",
            "unary",
            [
                re_pb2.BatchUpdateBlobsRequest(
                    requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=_digest(blob), data=blob)]
                ).SerializeToString()
            ],
        ).invoke(channel, ())
        is grpc.StatusCode.OK
    )
    name = f"uploads/{uuid.uuid4()}/blobs/{_digest(big).hash}/{len(big)}"
    assert (
        Call(
            "write",
            "/google.bytestream.ByteStream/Write",
            "client_stream",
            [bytestream_pb2.WriteRequest(resource_name=name, data=big, finish_write=True).SerializeToString()],
        ).invoke(channel, ())
        is grpc.StatusCode.OK
    )
    assert (
        Call(
            "ac",
            RE + "ActionCache/UpdateActionResult",
            "unary",
            [
                re_pb2.UpdateActionResultRequest(
                    action_digest=_digest(blob + b"!"), action_result=re_pb2.ActionResult(stdout_digest=_digest(blob))
                ).SerializeToString()
            ],
        ).invoke(channel, ())
        is grpc.StatusCode.OK
    )


def _open_to_others(root: Path) -> List[str]:
    """Entries under (and including) root with any group/other permission bit, as 'mode path'."""
    found = []
    for path in [root, *sorted(root.rglob("*"))]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077 and not path.is_symlink():
            found.append(f"{mode:04o} {path.relative_to(root.parent)}")
    return found


def _writable_by_others(root: Path) -> List[str]:
    return [entry for entry in _open_to_others(root) if int(entry.split()[0], 8) & 0o022]


class _Umask:
    def __init__(self, mask: int) -> None:
        self.mask = mask
        self.previous = 0

    def __enter__(self) -> None:
        self.previous = os.umask(self.mask)

    def __exit__(self, *exc: object) -> None:
        os.umask(self.previous)


def _serve_creates(state_dir: Path, umask: int) -> ServerProcess:
    with _Umask(umask):  # inherited by the server process
        server = start_server(state_dir)
    _populate(server)
    return server


def test_daemon_files_are_private(tmp_path: Path) -> None:
    server = _serve_creates(tmp_path / "state", 0o022)
    try:
        for name in ("daemon.json", "daemon.lock"):
            mode = stat.S_IMODE((server.state_dir / name).stat().st_mode)
            assert mode == 0o600, f"{name} has mode {mode:04o}"
    finally:
        server.stop()


def test_a_private_state_dir_stays_private(tmp_path: Path) -> None:
    """The plugin's layout: it creates the daemon directory 0700 (DaemonDir.create), then
    starts serve in it. serve must not loosen it, and nothing below it may be writable by
    others (with the common umask 022)."""
    state_dir = tmp_path / "daemon-dir"
    state_dir.mkdir(mode=0o700)
    state_dir.chmod(0o700)
    server = _serve_creates(state_dir, 0o022)
    try:
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        assert _writable_by_others(state_dir) == []
    finally:
        server.stop()
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def test_a_state_dir_created_by_serve_is_private(tmp_path: Path) -> None:
    server = _serve_creates(tmp_path / "fresh" / "state", 0o022)
    try:
        assert _open_to_others(server.state_dir) == []
    finally:
        server.stop()


def test_nothing_in_the_state_dir_is_group_writable_under_umask_002(tmp_path: Path) -> None:
    server = _serve_creates(tmp_path / "loose" / "state", 0o002)
    try:
        assert _writable_by_others(server.state_dir) == []
    finally:
        server.stop()


def test_serve_leaves_its_token_file_alone(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    before = token_file.stat()
    server = start_server(tmp_path / "state", "--token-file", str(token_file))
    try:
        assert (
            Call("caps", RE + "Capabilities/GetCapabilities", "unary", [b""]).invoke(server.channel(), GOOD)
            is grpc.StatusCode.OK
        )
    finally:
        server.stop()
    after = token_file.stat()
    assert (stat.S_IMODE(after.st_mode), after.st_size, after.st_mtime_ns) == (
        0o600,
        before.st_size,
        before.st_mtime_ns,
    )
    assert token_file.read_text() == TOKEN + "\n"
    assert not (tmp_path / "state" / "token").exists(), "serve copied the token into its state dir"


def test_serve_refuses_an_empty_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  \n")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "oci_cache.cli.main",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(tmp_path / "state"),
            "--token-file",
            str(token_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "empty" in completed.stderr
    assert "listening on" not in completed.stdout
