"""Through real `oci-cache serve` processes and the independent REAPI client in
tests/reapi_client.py: a server exports at shutdown, a fresh server on another
state directory imports and serves byte-exact; acknowledged writes of a killed
server reach the next export; bad entries fail at start; a dead cache-from does not
stop the server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from action_scenario import RecordedAction, make_action
from oci_cache.cache_entries import parse_cache_from
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from reapi_client import ReapiClient
from server_fixtures import free_port, serve_command


def _upload(server, recorded: RecordedAction) -> None:  # type: ignore[no-untyped-def]
    channel = server.channel()
    client = ReapiClient(channel)
    blobs = {(d.hash, d.size_bytes): data for d, data in {**recorded.outputs, **recorded.definitions}.items()}
    client.upload_blobs(blobs)
    re_grpc.ActionCacheStub(channel).UpdateActionResult(
        re_pb2.UpdateActionResultRequest(
            action_digest=recorded.action.to_proto(), action_result=re_pb2.ActionResult.FromString(recorded.result)
        )
    )


def _get_result(server, recorded: RecordedAction):  # type: ignore[no-untyped-def]
    stub = re_grpc.ActionCacheStub(server.channel())
    try:
        return stub.GetActionResult(re_pb2.GetActionResultRequest(action_digest=recorded.action.to_proto()), timeout=10)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def _served_byte_exact(server, recorded: RecordedAction) -> bool:  # type: ignore[no-untyped-def]
    result = _get_result(server, recorded)
    if result is None:
        return False
    assert result.SerializeToString(deterministic=True) == re_pb2.ActionResult.FromString(
        recorded.result
    ).SerializeToString(deterministic=True)
    client = ReapiClient(server.channel())
    for digest, data in recorded.outputs.items():
        assert client.read_blob(digest.to_proto()) == data
    return True


def test_export_at_shutdown_then_a_fresh_server_serves_it(server_factory, registry_plain, unique_repo: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref = f"{registry_plain.host}/{unique_repo}:cache"
    actions = [make_action(seed) for seed in (1, 2)] + [make_action(3, exit_code=2)]
    writer = server_factory(tmp_path / "writer", "--cache-to", f"type=registry,ref={ref},mode=min,compression=gzip")
    for recorded in actions:
        _upload(writer, recorded)
    assert writer.stop() == 0  # SIGTERM: stop accepting, export, exit
    image = load_cache_image(open_entry_target(parse_cache_from(ref)))
    assert image.index.action_count == 2  # mode=min: the failed action stays out

    reader = server_factory(tmp_path / "reader", "--cache-from", ref)
    cas = re_grpc.ContentAddressableStorageStub(reader.channel())
    digests = [d.to_proto() for d in actions[0].outputs]
    missing = cas.FindMissingBlobs(
        re_pb2.FindMissingBlobsRequest(blob_digests=digests), timeout=10
    ).missing_blob_digests
    assert list(missing) == []  # counted present: they are in the imported image
    assert _served_byte_exact(reader, actions[0]) and _served_byte_exact(reader, actions[1])
    assert not _served_byte_exact(reader, actions[2])


def test_writes_of_a_killed_server_reach_the_next_export(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    layout = tmp_path / "layout"
    cache_to = f"type=local,dest={layout},tag=cache"
    state = tmp_path / "state"
    first = server_factory(state, "--cache-to", cache_to)
    recorded = make_action(11)
    _upload(first, recorded)
    first.kill()  # SIGKILL: no export happened
    assert not (layout / "index.json").exists()
    second = server_factory(state, "--cache-to", cache_to)
    assert second.stop() == 0
    image = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout},tag=cache")))
    assert image.index.find_action(recorded.action) is not None
    reader = server_factory(tmp_path / "reader", "--cache-from", f"type=local,src={layout},tag=cache")
    assert _served_byte_exact(reader, recorded)


@pytest.mark.parametrize(
    "flag,entry,message",
    [
        ("--cache-from", "type=registry,ref=example.com/a:b,colour=blue", "unknown key 'colour'"),
        ("--cache-to", "type=registry,ref=example.com/a:b,mode=all", "mode must be one of min, max"),
        ("--cache-to", "type=local", "dest is required"),
    ],
)
def test_a_malformed_entry_fails_at_start_with_exit_2(tmp_path: Path, flag: str, entry: str, message: str) -> None:
    completed = subprocess.run(
        serve_command(tmp_path / "state", flag, entry),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 2
    assert message in completed.stderr and completed.stdout == ""


def test_an_unreachable_cache_from_still_serves(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(tmp_path / "state", "--cache-from", f"127.0.0.1:{free_port()}/gone/away:cache")
    recorded = make_action(21)
    assert _get_result(server, recorded) is None
    _upload(server, recorded)
    assert _served_byte_exact(server, recorded)
    assert server.stop() == 0
    assert "gone/away" in server.log_text() and "continuing without it" in server.log_text()
