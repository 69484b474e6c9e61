"""`oci-cache serve` records every miss of a run and what the client uploads after it;
`oci-cache explain` names the nearest cached action and what differs, from the running
daemon and from the record it leaves — with secret values masked everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import grpc
import pytest

from oci_cache.daemon.control_client import ControlClient
from oci_cache.daemon_state import read_daemon_state
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from reapi_client import ReapiClient, digest_of
from server_fixtures import start_server

SECRET_OLD = "tok-old-value-123"
SECRET_NEW = "tok-new-value-456"


def _action(arguments: List[str], env: Dict[str, str], input_root: bytes) -> Tuple[bytes, bytes]:
    command = re_pb2.Command(arguments=arguments, output_files=["out.txt"])
    for name, value in sorted(env.items()):
        command.environment_variables.add(name=name, value=value)
    command_bytes = command.SerializeToString()
    action = re_pb2.Action(command_digest=digest_of(command_bytes), input_root_digest=digest_of(input_root))
    return action.SerializeToString(), command_bytes


def _run_process(client: ReapiClient, action: bytes, command: bytes) -> str:
    """What Pants does for one process that misses: lookup, upload Action+Command, write the result."""
    digest = digest_of(action)
    with pytest.raises(grpc.RpcError) as missed:
        client.action_cache.GetActionResult(re_pb2.GetActionResultRequest(action_digest=digest))
    assert missed.value.code() == grpc.StatusCode.NOT_FOUND
    client.upload_blobs({(digest.hash, digest.size_bytes): action, (digest_of(command).hash, len(command)): command})
    client.action_cache.UpdateActionResult(
        re_pb2.UpdateActionResultRequest(action_digest=digest, action_result=re_pb2.ActionResult(exit_code=0))
    )
    return f"{digest.hash}/{digest.size_bytes}"


def _explain_cli(state_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "oci_cache.cli.main", "explain", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_explain_names_the_changed_argument_and_variables_of_a_rerun_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    server = start_server(state_dir, "--control-http")
    try:
        client = ReapiClient(server.channel())
        control = ControlClient(read_daemon_state(state_dir).control_url, None)
        first = _run_process(
            client, *_action(["sh", "-c", "echo a > out.txt"], {"PATH": "/bin", "API_TOKEN": SECRET_OLD}, b"r1")
        )
        assert control.finish_explain() == "1 miss: 1 new process"

        second = _run_process(
            client, *_action(["sh", "-c", "echo b > out.txt"], {"PATH": "/usr/bin", "API_TOKEN": SECRET_NEW}, b"r1")
        )
        assert control.send_descriptions({second: "Run shell_command - gen:out", first: "not this run"}) == 1
        live = json.loads(_explain_cli(state_dir, "--json"))
        assert control.finish_explain() == "1 miss: 1 arguments changed"
        assert control.finish_explain() == "0 misses"  # nothing new: the saved run stays
    finally:
        server.stop()

    [miss] = live["misses"]
    assert miss["action"] == second and miss["description"] == "Run shell_command - gen:out"
    assert miss["nearest"] == {"action": first, "source": "local"}
    by_name = {d["name"]: d for d in miss["differences"]}
    assert by_name["argv[2]"] == {"kind": "argv", "name": "argv[2]", "before": "echo a > out.txt", "after": "echo b > out.txt"}
    assert (by_name["PATH"]["before"], by_name["PATH"]["after"]) == ("/bin", "/usr/bin")
    assert by_name["API_TOKEN"]["kind"] == "env" and by_name["API_TOKEN"]["after"].startswith("<masked:hmac:")

    saved = json.loads(_explain_cli(state_dir, "--json"))  # the daemon is gone: the record it saved
    assert saved == live
    table = _explain_cli(state_dir)
    assert table.startswith("1 miss: 1 arguments changed") and "Run shell_command - gen:out" in table
    every_file = b"".join(p.read_bytes() for p in state_dir.rglob("*") if p.is_file() and "store" not in p.parts)
    for text in (json.dumps(live), table, every_file.decode("utf-8", "replace")):
        assert SECRET_OLD not in text and SECRET_NEW not in text
