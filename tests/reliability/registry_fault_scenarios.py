"""Helpers of the registry-fault tests: cache entries with known bytes, state
directories holding them, `oci-cache` commands as subprocesses, and the check that a
registry ref names a complete image whose every entry is served byte-exact by a fresh
`oci-cache serve --cache-from` (through the registry directly, not the proxy)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence

import grpc

from oci_cache.cache_entries import parse_cache_from
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.digests import Digest
from oci_cache.reapi import bytestream_pb2
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from reapi_client import ReapiClient
from server_fixtures import ServerProcess, start_server

CLI_TIMEOUT_SECONDS = 180
READ_TIMEOUT_SECONDS = "2"  # OCI_CACHE_REGISTRY_READ_TIMEOUT for commands under faults


@dataclass(frozen=True)
class Entry:
    """One action-cache entry: its ActionResult and the output blobs it references."""

    action: Digest
    result: bytes
    outputs: Mapping[Digest, bytes]


def make_entries(count: int, seed: int, min_size: int = 200, max_size: int = 40_000) -> List[Entry]:
    rng = random.Random(seed)
    entries = []
    for number in range(count):
        outputs: Dict[Digest, bytes] = {}
        result = re_pb2.ActionResult(exit_code=0)
        for index in range(2):
            size = rng.randint(min_size, max_size)
            data = rng.getrandbits(8 * size).to_bytes(size, "little")
            outputs[Digest.of(data)] = data
            result.output_files.add(path=f"out/{seed}/{number}/{index}", digest=Digest.of(data).to_proto())
        action = Digest.of(b"action %d %d " % (seed, number) + rng.getrandbits(64).to_bytes(8, "little"))
        entries.append(Entry(action, result.SerializeToString(deterministic=True), outputs))
    return entries


def write_entries(server: ServerProcess, entries: Iterable[Entry]) -> None:
    channel = server.channel()
    client = ReapiClient(channel)
    stub = re_grpc.ActionCacheStub(channel)
    for entry in entries:
        client.upload_blobs({(d.hash, d.size_bytes): data for d, data in entry.outputs.items()})
        stub.UpdateActionResult(
            re_pb2.UpdateActionResultRequest(
                action_digest=entry.action.to_proto(), action_result=re_pb2.ActionResult.FromString(entry.result)
            ),
            timeout=30,
        )


def fill_state_dir(state_dir: Path, entries: Sequence[Entry]) -> None:
    """A stopped daemon's state directory holding `entries` (no cache-to: nothing exported)."""
    server = start_server(state_dir)
    try:
        write_entries(server, entries)
    finally:
        assert server.stop() == 0, server.log_text()[-3000:]


def oci_cache(docker_config: Path, *args: str, read_timeout: Optional[str] = READ_TIMEOUT_SECONDS) -> "subprocess.CompletedProcess[str]":
    """Runs `oci-cache ARGS` (close_fds=False: see tests/integration/test_cli_image_commands.py)."""
    env = dict(os.environ, DOCKER_CONFIG=str(docker_config))
    if read_timeout:
        env["OCI_CACHE_REGISTRY_READ_TIMEOUT"] = read_timeout
    return subprocess.run(
        [sys.executable, "-m", "oci_cache.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        close_fds=False,
    )


def assert_clean_outcome(result: "subprocess.CompletedProcess[str]", what: str) -> None:
    """Succeeded, or failed with exit status 1 and a message — never a traceback."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, f"{what}: a traceback\n{output[-4000:]}"
    assert result.returncode in (0, 1), f"{what}: exit status {result.returncode}\n{output[-4000:]}"
    if result.returncode == 1:
        assert output.strip(), f"{what}: failed without a message"


def image_actions(ref: str) -> FrozenSet[str]:
    """The action digests (hash/size) the image at `ref` lists (read without faults)."""
    target = open_entry_target(parse_cache_from(f"type=registry,ref={ref}"))
    try:
        image = load_cache_image(target)
        return frozenset(str(entry.action) for entry in image.index.iter_actions())
    finally:
        target.close()


def served_entries(
    tmp_dir: Path, ref: str, entries: Sequence[Entry], extra_args: Sequence[str] = ()
) -> Dict[str, str]:
    """Starts `oci-cache serve --cache-from ref` on a fresh state dir and reads every entry:
    {action: "ok" | "miss"}. Wrong bytes fail the test at once."""
    server = start_server(tmp_dir, "--cache-from", f"type=registry,ref={ref}", *extra_args)
    try:
        return {str(entry.action): read_entry(server, entry) for entry in entries}
    finally:
        server.stop()


def read_entry(server: ServerProcess, entry: Entry) -> str:
    """ "ok" when the result and every output are served byte-exact, "miss" when any is not
    found or unavailable; an assertion error if any byte served is wrong."""
    channel = server.channel()
    try:
        got = re_grpc.ActionCacheStub(channel).GetActionResult(
            re_pb2.GetActionResultRequest(action_digest=entry.action.to_proto()), timeout=60
        )
    except grpc.RpcError as error:
        assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE), error
        return "miss"
    expected = re_pb2.ActionResult.FromString(entry.result)
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True), (
        f"GetActionResult({entry.action}) served a wrong ActionResult"
    )
    client = ReapiClient(channel)
    for digest, data in entry.outputs.items():
        name = f"blobs/{digest.hash}/{digest.size_bytes}"
        try:
            request = bytestream_pb2.ReadRequest(resource_name=name)
            served = b"".join(r.data for r in client.bytestream.Read(request, timeout=60))
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE), error
            return "miss"
        assert served == data, f"Read({name}) served {len(served)} wrong bytes"
    return "ok"


def check_ref_is_whole(tmp_dir: Path, ref: str, entries: Sequence[Entry], allowed: Sequence[FrozenSet[str]]) -> FrozenSet[str]:
    """The image at `ref` lists exactly one of the `allowed` action sets, and a fresh server
    importing it serves every one of those entries byte-exact. Returns the set found."""
    listed = image_actions(ref)
    assert listed in allowed, f"{ref} lists {len(listed)} actions, none of the allowed sets {[len(a) for a in allowed]}"
    by_action = {str(entry.action): entry for entry in entries}
    outcome = served_entries(tmp_dir, ref, [by_action[action] for action in sorted(listed)])
    misses = [action for action, state in outcome.items() if state != "ok"]
    assert not misses, f"{ref}: {len(misses)} of {len(listed)} listed entries not served: {misses[:3]}"
    return listed


def action_set(entries: Iterable[Entry]) -> FrozenSet[str]:
    return frozenset(str(entry.action) for entry in entries)
