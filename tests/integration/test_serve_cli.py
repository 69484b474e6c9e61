"""`oci-cache serve` as a process: address printing, daemon.json, signals, durability."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import List, Tuple

import grpc
import pytest

from server_fixtures import free_port, serve_command, start_server
from oci_cache.reapi import bytestream_pb2, bytestream_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc


MiB = 1 << 20


def digest_of(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def capabilities(channel: grpc.Channel) -> re_pb2.ServerCapabilities:
    return re_grpc.CapabilitiesStub(channel).GetCapabilities(re_pb2.GetCapabilitiesRequest(), timeout=10)


def test_port_zero_prints_address_and_writes_daemon_json(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state_dir = tmp_path / "state"
    server = server_factory(state_dir)
    assert server.address.startswith("grpc://127.0.0.1:") and server.port > 0
    assert capabilities(server.channel()).cache_capabilities.action_cache_update_capabilities.update_enabled
    recorded = json.loads((state_dir / "daemon.json").read_text())
    assert recorded["address"] == server.address
    assert recorded["pid"] == server.pid
    assert recorded["version"] and recorded["started_at"] > 0
    # The store opens once the server listens; a cache call waits for it.
    lookup = re_pb2.GetActionResultRequest(action_digest=digest_of(b"no such action"))
    with pytest.raises(grpc.RpcError) as missing:
        re_grpc.ActionCacheStub(server.channel()).GetActionResult(lookup, timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert (state_dir / "store").is_dir()
    assert server.stop() == 0
    assert not (state_dir / "daemon.json").exists()


def test_sigint_also_stops_gracefully(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory()
    os.kill(server.pid, signal.SIGINT)
    assert server.process.wait(10) == 0
    assert not (server.state_dir / "daemon.json").exists()


def listening_addresses(pid: int) -> List[Tuple[str, int]]:
    """The (ip, port) of every listening TCP socket of process `pid` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(address_hex)
            # /proc prints the address as 32-bit little-endian words.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = socket.inet_ntop(family, raw)
            if ip.startswith("::ffff:") and "." in ip:  # an IPv4-mapped address on a v6 socket
                ip = ip[len("::ffff:") :]
            found.append((ip, int(port_hex, 16)))
    return found


def test_explicit_port_and_only_that_address(server_factory) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    server = server_factory(None, listen=f"127.0.0.1:{port}")
    assert server.address == f"grpc://127.0.0.1:{port}"
    assert capabilities(server.channel()).cache_capabilities.max_batch_total_size_bytes > 0
    assert listening_addresses(server.pid) == [("127.0.0.1", port)]


def test_port_zero_listens_on_loopback_only(running_server) -> None:  # type: ignore[no-untyped-def]
    assert listening_addresses(running_server.pid) == [("127.0.0.1", running_server.port)]


def test_busy_port_is_an_error_not_a_shared_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            serve_command(tmp_path / "state", listen=f"127.0.0.1:{port}"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stdout == b""
    assert f"127.0.0.1:{port}".encode() in result.stderr
    assert not (tmp_path / "state" / "daemon.json").exists()


@pytest.mark.parametrize("args", [["--max-size", "ten gigs"], ["--token-file", "/nonexistent/token"]])
def test_bad_flags_exit_2(tmp_path: Path, args) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        serve_command(tmp_path / "state", *args), stdin=subprocess.DEVNULL, capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert b"oci-cache serve:" in result.stderr


def test_acknowledged_writes_survive_kill_9(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state_dir = tmp_path / "state"
    first = server_factory(state_dir, "--max-size", "1GiB")
    channel = first.channel()
    cas = re_grpc.ContentAddressableStorageStub(channel)
    bytestream = bytestream_pb2_grpc.ByteStreamStub(channel)
    small = uuid.uuid4().bytes * 100
    large = os.urandom(2 * 1024 * 1024 + 1)
    response = cas.BatchUpdateBlobs(
        re_pb2.BatchUpdateBlobsRequest(requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(small), data=small)])
    )
    assert response.responses[0].status.code == 0
    name = f"uploads/{uuid.uuid4()}/blobs/{digest_of(large).hash}/{len(large)}"
    chunks = [large[i : i + MiB] for i in range(0, len(large), MiB)]
    requests = [
        bytestream_pb2.WriteRequest(
            resource_name=name if i == 0 else "",
            write_offset=sum(len(c) for c in chunks[:i]),
            data=chunk,
            finish_write=i == len(chunks) - 1,
        )
        for i, chunk in enumerate(chunks)
    ]
    assert bytestream.Write(iter(requests)).committed_size == len(large)
    action = digest_of(uuid.uuid4().bytes)
    result = re_pb2.ActionResult(
        exit_code=0,
        stdout_digest=digest_of(small),
        output_files=[re_pb2.OutputFile(path="big.bin", digest=digest_of(large))],
    )
    re_grpc.ActionCacheStub(channel).UpdateActionResult(
        re_pb2.UpdateActionResultRequest(action_digest=action, action_result=result)
    )
    first.kill()
    assert first.process.returncode == -signal.SIGKILL
    # The stale daemon.json names a dead pid; the new server replaces it.
    second = server_factory(state_dir)
    assert json.loads((state_dir / "daemon.json").read_text())["pid"] == second.pid
    channel = second.channel()
    assert re_grpc.ActionCacheStub(channel).GetActionResult(re_pb2.GetActionResultRequest(action_digest=action)) == result
    read = bytestream_pb2_grpc.ByteStreamStub(channel).Read(
        bytestream_pb2.ReadRequest(resource_name=f"blobs/{digest_of(large).hash}/{len(large)}")
    )
    assert b"".join(r.data for r in read) == large
    batch = re_grpc.ContentAddressableStorageStub(channel).BatchReadBlobs(
        re_pb2.BatchReadBlobsRequest(digests=[digest_of(small)])
    )
    assert batch.responses[0].data == small


def test_python_dash_m_and_console_script_agree(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oci_cache.cli.main", "serve", "--help"], capture_output=True, timeout=60
    )
    assert result.returncode == 0 and b"--listen" in result.stdout and b"--token-file" in result.stdout
    script = Path(sys.executable).parent / "oci-cache"
    if not script.exists():
        pytest.skip("the oci-cache console script is not installed in this environment")
    scripted = subprocess.run([str(script), "serve", "--help"], capture_output=True, timeout=60)
    assert scripted.returncode == 0 and scripted.stdout == result.stdout


def test_start_server_helper_reports_a_failed_start(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the state directory should be")
    with pytest.raises(RuntimeError, match="did not start") as raised:
        start_server(tmp_path / "not-a-dir")
    assert "oci-cache serve: cannot open the store" in str(raised.value)
    assert "Traceback" not in str(raised.value)
