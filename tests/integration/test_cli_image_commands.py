"""`oci-cache export | inspect | prune` as subprocesses, against real registries
(Debian's docker-registry on 127.0.0.1), OCI layouts and real `oci-cache serve` daemons.

Cache images are written either by a real daemon's export or directly with
oci_cache.image_format (tests/cache_image_builder.py), so that the numbers `inspect`
prints can be checked against what was written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List, Sequence

import grpc
import pytest

from cache_image_builder import BuiltImage, SyntheticAction, push_cache_image, synthetic_actions
from registry_fixtures import (  # noqa: F401 - fixtures
    RegistryServer,
    free_port,
    registry_basic,
    registry_plain,
    unique_repo,
    write_docker_config,
)
from server_fixtures import ServerProcess, start_server

from oci_cache.digests import Digest
from oci_cache.image_format.compression import Compression
from oci_cache.oci.content import sha256_digest
from oci_cache.oci.credentials import Credentials, StaticCredentials
from oci_cache.oci.target_opener import open_target
from oci_cache.oci.target import ImageTarget
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc

DAY = 86400
CLI_TIMEOUT_SECONDS = 120


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """An empty Docker config, so no credentials of the machine are used."""
    return write_docker_config(tmp_path / "docker-config")


def oci_cache(docker_config: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    """Runs the command. close_fds=False lets subprocess use posix_spawn instead of fork:
    with gRPC channels open in this process (and grpcio's fork support on), a forked
    child that closes descriptors before exec can abort in gRPC's poller (SIGABRT,
    "epoll_wait error: Bad file descriptor"; grpc/grpc#43055). Our descriptors are
    close-on-exec anyway."""
    env = dict(os.environ, DOCKER_CONFIG=str(docker_config))
    return subprocess.run(
        [sys.executable, "-m", "oci_cache.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        close_fds=False,
    )


def registry_target(registry: RegistryServer, repo_and_tag: str) -> ImageTarget:
    credentials = None
    if registry.username:
        credentials = StaticCredentials({registry.host: Credentials(registry.username, registry.password or "")})
    return open_target(
        "registry", f"{registry.host}/{repo_and_tag}", ca_bundle=registry.ca_bundle, credentials=credentials
    )


def build(target: ImageTarget, tmp_path: Path, actions: Sequence[SyntheticAction], **options: Any) -> BuiltImage:
    try:
        return push_cache_image(target, target.tag, actions, workdir=tmp_path / "layers", **options)
    finally:
        target.close()


# --------------------------------------------------------------------------- inspect


def test_inspect_layout_reports_what_was_written(tmp_path: Path, docker_config: Path) -> None:
    now = int(time.time())
    actions = synthetic_actions(40, failed_every=8, age_spread_seconds=10 * DAY, now=now, seed=3)
    layout = tmp_path / "layout"
    built = build(
        open_target("local", str(layout), tag="main"), tmp_path, actions, layers=3, compression=Compression.GZIP
    )

    result = oci_cache(docker_config, "inspect", f"type=local,src={layout},tag=main", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "pants-oci-cache/inspect/v1"
    assert document["location"] == f"OCI layout {layout} (tag main)"
    assert document["manifest"]["digest"] == built.manifest_digest
    assert document["manifest"]["size"] == built.manifest_size
    assert document["manifest"]["image_manifest"] is True and document["manifest"]["oci_mediatypes"] is True
    assert document["format_version"] == "1.1" and document["mode"] == "max" and document["compression"] == "gzip"
    assert document["entries"] == {
        "actions": 40,
        "actions_failed": 5,
        "actions_min_eligible": 35,
        "blobs": built.blob_count,
        "blobs_min_eligible": 35 * 3,  # result + 2 outputs of each successful action
        "command_records": 0,
    }
    assert document["bytes"]["blobs"] == built.blob_bytes
    assert document["bytes"]["data_layers"] == sum(built.layer_sizes)
    assert document["bytes"]["index"] == built.index_size
    assert (
        document["bytes"]["stored"]
        == built.manifest_size + built.config_size + sum(built.layer_sizes) + built.index_size
    )
    assert document["layers"]["count"] == 3 and document["layers"]["compressions"] == {"gzip": 3}
    listed = document["layers"]["list"]
    assert [layer["role"] for layer in listed] == ["data", "data", "data", "index"]
    assert [layer["size"] for layer in listed[:3]] == list(built.layer_sizes)
    assert sum(layer["blobs"] for layer in listed) == built.blob_count
    oldest = min(action.last_used for action in actions)
    assert document["last_used"]["oldest"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(oldest))
    assert document["last_used"]["newest"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))

    text = oci_cache(docker_config, "inspect", f"type=local,src={layout},tag=main")
    assert text.returncode == 0, text.stderr
    assert f"manifest     {built.manifest_digest} (OCI image manifest" in text.stdout
    assert "40 actions (5 failed, 35 kept by mode=min)" in text.stdout
    assert "3 data layers (gzip ×3)" in text.stdout
    assert text.stderr == ""  # no progress noise off a terminal


def test_inspect_registry_bare_reference_docker_media_types_and_index_form(
    registry_plain: RegistryServer, unique_repo: str, tmp_path: Path, docker_config: Path
) -> None:
    built = build(
        registry_target(registry_plain, f"{unique_repo}:legacy"),
        tmp_path,
        synthetic_actions(10, seed=4),
        oci_mediatypes=False,
        image_manifest=False,
        compression=Compression.ZSTD,
    )
    result = oci_cache(docker_config, "inspect", f"{registry_plain.host}/{unique_repo}:legacy", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["manifest"]["digest"] == built.manifest_digest
    assert document["manifest"]["media_type"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert document["manifest"]["image_manifest"] is False and document["manifest"]["oci_mediatypes"] is False
    assert document["entries"]["actions"] == 10 and document["entries"]["blobs"] == 30
    assert document["location"] == f"registry {registry_plain.host}/{unique_repo}:legacy (http)"

    by_digest = oci_cache(
        docker_config, "inspect", f"{registry_plain.host}/{unique_repo}@{built.manifest_digest}", "--json"
    )
    assert by_digest.returncode == 0, by_digest.stderr
    assert json.loads(by_digest.stdout)["manifest"]["digest"] == built.manifest_digest


def test_inspect_with_basic_auth_never_prints_the_password(
    registry_basic: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    assert registry_basic.username and registry_basic.password
    build(registry_target(registry_basic, f"{unique_repo}:c"), tmp_path, synthetic_actions(3, seed=5))
    with_login = write_docker_config(
        tmp_path / "login", auths={registry_basic.host: (registry_basic.username, registry_basic.password)}
    )
    for extra in ([], ["--json"]):
        result = oci_cache(with_login, "inspect", f"type=registry,ref={registry_basic.host}/{unique_repo}:c", *extra)
        assert result.returncode == 0, result.stderr
        assert registry_basic.password not in result.stdout + result.stderr
    anonymous = oci_cache(tmp_path / "nobody", "inspect", f"{registry_basic.host}/{unique_repo}:c")
    assert anonymous.returncode == 1
    assert "docker login" in anonymous.stderr and registry_basic.password not in anonymous.stderr


def test_inspect_missing_images_exit_1_with_a_clear_message(
    registry_plain: RegistryServer, unique_repo: str, tmp_path: Path, docker_config: Path
) -> None:
    missing_tag = oci_cache(docker_config, "inspect", f"{registry_plain.host}/{unique_repo}:nope")
    assert missing_tag.returncode == 1
    assert "no cache image" in missing_tag.stderr and missing_tag.stdout == ""

    missing_layout = oci_cache(docker_config, "inspect", f"type=local,src={tmp_path / 'nowhere'}")
    assert missing_layout.returncode == 1 and "no cache image" in missing_layout.stderr

    unreachable = oci_cache(docker_config, "inspect", f"127.0.0.1:{free_port()}/x/y:z")
    assert unreachable.returncode == 1 and "cannot read" in unreachable.stderr

    malformed = oci_cache(docker_config, "inspect", "type=registry,src=/x")
    assert malformed.returncode == 2 and "cache-from entry" in malformed.stderr


def test_inspect_refuses_content_that_is_not_a_cache_image(
    registry_plain: RegistryServer, unique_repo: str, docker_config: Path
) -> None:
    target = registry_target(registry_plain, f"{unique_repo}:app")
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"not a cache layer"
    target.push_blob(sha256_digest(config), config)
    target.push_blob(sha256_digest(layer), layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(layer), "size": len(layer)}
        ],
    }
    target.put_manifest("app", "application/vnd.oci.image.manifest.v1+json", json.dumps(manifest).encode())
    target.close()
    result = oci_cache(docker_config, "inspect", f"{registry_plain.host}/{unique_repo}:app")
    assert result.returncode == 1
    assert "not a pants-oci-cache image" in result.stderr


# --------------------------------------------------------------------------- export


@pytest.fixture
def servers() -> Iterator[List[ServerProcess]]:
    started: List[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def test_export_without_a_daemon_says_so(tmp_path: Path, docker_config: Path) -> None:
    result = oci_cache(docker_config, "export", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1
    assert "no oci-cache daemon runs" in result.stderr and "--cache-to" in result.stderr


def test_export_asks_each_daemon_of_a_state_dir_with_its_token(
    tmp_path: Path, docker_config: Path, servers: List[ServerProcess]
) -> None:
    state = tmp_path / "state"
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-daemon-token\n")
    os.chmod(token_file, 0o600)
    # Two per-configuration daemons, as the Pants plugin lays them out; one needs a token.
    servers.append(start_server(state / "repo-aaaa", "--token-file", str(token_file)))
    servers.append(start_server(state / "repo-bbbb"))

    result = oci_cache(docker_config, "export", "--state-dir", str(state), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert [export["directory"] for export in document["exports"]] == [
        str(state / "repo-aaaa"),
        str(state / "repo-bbbb"),
    ]
    assert all(export["nothing_to_export_to"] and export["error"] == "" for export in document["exports"])

    token_file.write_text("the-wrong-token\n")
    refused = oci_cache(docker_config, "export", "--state-dir", str(state))
    assert refused.returncode == 1
    assert "refused our token" in refused.stdout
    assert "s3cret-daemon-token" not in refused.stdout + refused.stderr

    conflicting = oci_cache(
        docker_config, "export", "--state-dir", str(state), "--cache-to", f"type=local,dest={tmp_path}/x"
    )
    assert conflicting.returncode == 2 and "a daemon runs" in conflicting.stderr


def test_export_ignores_a_daemon_that_was_killed(
    tmp_path: Path, docker_config: Path, servers: List[ServerProcess]
) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    server.kill()
    assert (state / "daemon.json").exists()  # stale
    result = oci_cache(docker_config, "export", "--state-dir", str(state))
    assert result.returncode == 1 and "no oci-cache daemon runs" in result.stderr


def digest_of(data: bytes) -> re_pb2.Digest:
    return Digest.of(data).to_proto()


def write_actions(server: ServerProcess, count: int, outputs: int = 3) -> int:
    """Writes `count` action results, each with `outputs` new output blobs; the blob count."""
    channel = grpc.insecure_channel(server.target)
    cas = re_grpc.ContentAddressableStorageStub(channel)
    action_cache = re_grpc.ActionCacheStub(channel)
    for number in range(count):
        blobs = [os.urandom(512 + index) for index in range(outputs)]
        cas.BatchUpdateBlobs(
            re_pb2.BatchUpdateBlobsRequest(
                requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(b), data=b) for b in blobs]
            ),
            timeout=30,
        )
        result = re_pb2.ActionResult(
            output_files=[re_pb2.OutputFile(path=f"out/{i}", digest=digest_of(b)) for i, b in enumerate(blobs)]
        )
        action = digest_of(os.urandom(32))
        action_cache.UpdateActionResult(
            re_pb2.UpdateActionResultRequest(action_digest=action, action_result=result), timeout=30
        )
    channel.close()
    return count * outputs


def test_export_now_through_the_daemon_then_inspect(
    registry_plain: RegistryServer, unique_repo: str, tmp_path: Path, docker_config: Path, servers: List[ServerProcess]
) -> None:
    state = tmp_path / "state"
    ref = f"{registry_plain.host}/{unique_repo}:ci"
    layout = tmp_path / "layout"
    server = start_server(
        state,
        "--cache-to",
        f"type=registry,ref={ref},mode=max",
        "--cache-to",
        f"type=local,dest={layout},tag=c,compression=estargz",
    )
    servers.append(server)
    write_actions(server, 6)

    result = oci_cache(docker_config, "export", "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"daemon {server.address} ({state}): exported 2 targets in ")
    assert lines[1].startswith(f"  ok      type=registry,ref={ref},mode=max: 6 entries; 1 layer uploaded (")
    assert lines[2].startswith(f"  ok      type=local,dest={layout},tag=c,compression=estargz: 6 entries; ")
    digest = lines[1].rsplit("; ", 1)[1]

    inspected = json.loads(oci_cache(docker_config, "inspect", ref, "--json").stdout)
    assert inspected["manifest"]["digest"] == digest
    assert inspected["entries"]["actions"] == 6 and inspected["mode"] == "max"
    assert inspected["entries"]["blobs"] >= 6 * 4  # results and outputs (and what else mode=max keeps)
    local = json.loads(oci_cache(docker_config, "inspect", f"type=local,src={layout},tag=c", "--json").stdout)
    assert local["entries"]["actions"] == 6 and local["layers"]["compressions"] == {"estargz": 1}

    again = oci_cache(docker_config, "export", "--state-dir", str(state), "--json")
    assert again.returncode == 0, again.stderr
    (export,) = json.loads(again.stdout)["exports"]
    assert [target["layers_uploaded"] for target in export["targets"]] == [0, 0]  # nothing new


def test_export_failures_set_the_exit_status_unless_ignore_error(
    tmp_path: Path, docker_config: Path, servers: List[ServerProcess]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    state = tmp_path / "state"
    servers.append(start_server(state, "--cache-to", f"type=local,dest={blocker}/layout"))
    write_actions(servers[-1], 1)
    failed = oci_cache(docker_config, "export", "--state-dir", str(state))
    assert failed.returncode == 1
    assert "export FAILED for 1 of 1 target" in failed.stdout
    assert f"  FAILED  type=local,dest={blocker}/layout: " in failed.stdout

    ignored_state = tmp_path / "ignored"
    servers.append(start_server(ignored_state, "--cache-to", f"type=local,dest={blocker}/layout,ignore-error=true"))
    ignored = oci_cache(docker_config, "export", "--state-dir", str(ignored_state), "--json")
    assert ignored.returncode == 0, ignored.stdout
    (target,) = json.loads(ignored.stdout)["exports"][0]["targets"]
    assert target["ok"] is False and target["ignored_error"] is True and target["message"]


def test_export_a_stopped_daemons_state_dir_directly(
    tmp_path: Path, docker_config: Path, servers: List[ServerProcess]
) -> None:
    state = tmp_path / "plugin-state" / "repo-0123456789abcdef"
    server = start_server(state)  # no cache-to: nothing is exported at shutdown
    servers.append(server)
    write_actions(server, 4)
    assert server.stop() == 0

    layout = tmp_path / "layout"
    parent = oci_cache(
        docker_config, "export", "--state-dir", str(state.parent), "--cache-to", f"type=local,dest={layout}"
    )
    assert parent.returncode == 1
    assert f"no local store in {state.parent}" in parent.stdout and str(state) in parent.stdout

    result = oci_cache(
        docker_config, "export", "--state-dir", str(state), "--cache-to", f"type=local,dest={layout},mode=max", "--json"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (export,) = json.loads(result.stdout)["exports"]
    assert export["source"] == "state-dir" and export["directory"] == str(state)
    (target,) = export["targets"]
    assert target["ok"] and target["entries"] == 4
    inspected = json.loads(oci_cache(docker_config, "inspect", f"type=local,src={layout}", "--json").stdout)
    assert inspected["entries"]["actions"] == 4 and inspected["manifest"]["digest"] == target["manifest_digest"]

    # While a daemon runs on the directory, a direct export is refused.
    servers.append(start_server(state))
    busy = oci_cache(docker_config, "export", "--state-dir", str(state), "--cache-to", f"type=local,dest={layout}")
    assert busy.returncode == 2 and "a daemon runs" in busy.stderr


# --------------------------------------------------------------------------- prune


def test_prune_argument_checks(tmp_path: Path, docker_config: Path) -> None:
    layout = f"type=local,src={tmp_path / 'layout'},tag=main"
    no_limits = oci_cache(docker_config, "prune", layout)
    assert no_limits.returncode == 2 and "--keep-duration" in no_limits.stderr
    bad = oci_cache(docker_config, "prune", layout, "--keep-duration", "soon")
    assert bad.returncode == 2 and "--keep-duration" in bad.stderr
    pinned = oci_cache(docker_config, "prune", "127.0.0.1:5000/a/b@sha256:" + "c" * 64, "--keep-bytes", "1GB")
    assert pinned.returncode == 2 and "must name a tag" in pinned.stderr
    missing = oci_cache(docker_config, "prune", layout, "--keep-bytes", "1GB")
    assert missing.returncode == 1 and "nothing to prune" in missing.stderr


def test_prune_by_duration_drops_old_entries_and_keeps_the_image_options(
    registry_plain: RegistryServer, unique_repo: str, tmp_path: Path, docker_config: Path
) -> None:
    now = int(time.time())
    actions = synthetic_actions(60, age_spread_seconds=10 * DAY, now=now, seed=6)
    built = build(
        registry_target(registry_plain, f"{unique_repo}:main"),
        tmp_path,
        actions,
        layers=3,
        compression=Compression.GZIP,
        oci_mediatypes=False,
    )
    ref = f"{registry_plain.host}/{unique_repo}:main"
    keep_seconds = 4 * DAY + 2 * 3600  # between two actions' ages (they are 4 h apart)
    # Entries whose age is near the cut-off could go either way while the command runs.
    old = [a for a in actions if a.last_used < now - keep_seconds - 60]
    young = [a for a in actions if a.last_used > now - keep_seconds + 60]

    result = oci_cache(docker_config, "prune", ref, "--keep-duration", "98h", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "pants-oci-cache/prune/v1" and document["changed"] is True
    assert document["manifest_before"] == built.manifest_digest
    assert document["actions"]["before"] == 60
    assert len(old) <= document["actions"]["dropped"] <= 60 - len(young)
    assert document["actions"]["after"] == 60 - document["actions"]["dropped"]
    assert document["blobs"]["dropped"] == 3 * document["actions"]["dropped"]  # no blob is shared
    assert document["stored_bytes"]["after"] < document["stored_bytes"]["before"]

    after = json.loads(oci_cache(docker_config, "inspect", ref, "--json").stdout)
    assert after["manifest"]["digest"] == document["manifest_after"]
    assert after["entries"]["actions"] == document["actions"]["after"]
    assert after["compression"] == "gzip" and after["mode"] == "max"  # the image's own options,
    assert after["manifest"]["oci_mediatypes"] is False  # not a bare ref's defaults
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - keep_seconds - 60))
    assert after["last_used"]["oldest"] >= cutoff

    assert document["location"] == f"registry {ref} (http)"
    again = oci_cache(docker_config, "prune", ref, "--keep-duration", "98h")
    assert again.returncode == 0, again.stderr
    assert "nothing to drop" in again.stdout


def test_prune_by_bytes_with_limits_from_a_cache_to_entry(tmp_path: Path, docker_config: Path) -> None:
    layout = tmp_path / "layout"
    actions = synthetic_actions(50, age_spread_seconds=DAY, seed=8, min_size=1024, max_size=1024)
    built = build(open_target("local", str(layout), tag="c"), tmp_path, actions, layers=2)
    entry = f"type=local,dest={layout},tag=c,keep-bytes=20KiB,compression=uncompressed,force-compression=true"
    result = oci_cache(docker_config, "prune", entry)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OCI layout {layout} (tag c): dropped ")
    after = json.loads(oci_cache(docker_config, "inspect", f"type=local,src={layout},tag=c", "--json").stdout)
    assert after["bytes"]["blobs"] <= 20 * 1024 < built.blob_bytes
    assert after["entries"]["actions"] > 0
    assert after["layers"]["compressions"] == {
        "uncompressed": after["layers"]["count"]
    }  # the entry's compression, forced
    survivors = sorted(a.last_used for a in actions)[-after["entries"]["actions"] :]
    # Least recently used go first (the builder's actions were created when last used).
    assert after["actions_created"]["oldest"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(survivors[0]))
