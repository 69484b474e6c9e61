"""No secret leaves the machine in a cache image (issue 14), with the real Pants 2.17.1.

One cold build of a `secrets/` package added to examples/basic (only its targets are
built): a `shell_command` that gets DEMO_SHELL_SECRET through `extra_env_vars`, and a
`pex_binary` whose pex processes get DEMO_API_TOKEN through `[subprocess-environment]
env_vars` (the Python backend is the one that reads that option). The shell_command also
gets DEMO_DSN, whose name looks innocent but is listed in `[oci-cache] secret_env_names =
["*_DSN"]`. The run exports at once to four cache_to entries: mode=max and mode=min, each
to a layout and to a real `docker-registry`. Then:

- no file of either layout and no file of the registry's storage holds any of the
  values, in any form a blob takes there (as stored, zstd frames, gzip members, tar
  members), and neither does any blob of the four images read back;
- each mode=max image holds, for every exported action, its Action and, in place of its
  Command, a record naming the variables with their values masked with the state dir's
  key, so each mask equals mask_value(value, key) (masks compare across runs);
- the mode=min images hold no Action, no Command and no record;
- the Pants output, the daemon's log and state files (all but its local store, which
  holds what Pants sent), `oci-cache status --json` and `oci-cache inspect --json` of
  every image hold none of the values.

Costs one Pants run (~30-45 s here: the pex processes dominate).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from image_secret_scan import files_holding, image_blobs
from oci_cache.cache_entries import parse_cache_from
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.digests import Digest
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.secret_masking import MASKING_KEY_FILE, load_or_create_masking_key, mask_value, parse_command_record
from pants_runs import EXAMPLE_REPO, kill, require_pants, skip_or_fail
from registry_fixtures import RegistryServer, start_registry
from test_pants_plugin import PluginRepo, write_plugin_config

pytestmark = [pytest.mark.pants, pytest.mark.registry]

REPO_ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = REPO_ROOT / ".cache" / "pants-plugin-wheelhouse"
PEX_VERSION = "2.1.137"
API_TOKEN = "tok-api-7c1e2f90ab"
SHELL_SECRET = "tok-shell-9d4b3a61cd"
LISTED_VALUE = "dsn-value-5e6f7a8b"  # DEMO_DSN: an innocent name, listed in secret_env_names
TOKENS = (API_TOKEN.encode(), SHELL_SECRET.encode(), LISTED_VALUE.encode())
ENVIRONMENT = {"DEMO_API_TOKEN": API_TOKEN, "DEMO_SHELL_SECRET": SHELL_SECRET, "DEMO_DSN": LISTED_VALUE}

SECRETS_BUILD = '''
shell_command(
    name="uses_token",
    command="sleep 0.5; test -n \\"$DEMO_SHELL_SECRET\\" && echo 'the token was set' > token-used.txt",
    tools=["sleep", "test"],
    extra_env_vars=["DEMO_SHELL_SECRET", "DEMO_DSN"],
    output_files=["token-used.txt"],
)

python_sources(name="lib")

pex_binary(name="app", entry_point="app.py")
'''


def _extra_config(layouts: Dict[str, Path], refs: Dict[str, str]) -> str:
    pex = WHEELHOUSE / "pex.pex"
    sha256 = hashlib.sha256(pex.read_bytes()).hexdigest()
    entries = [f"type=local,dest={layouts['max']},mode=max", f"type=local,dest={layouts['min']}"]
    entries += [f"type=registry,ref={refs['max']},mode=max", f"type=registry,ref={refs['min']}"]
    return (
        "cache_to = [" + ", ".join(f'"{entry}"' for entry in entries) + "]\n"
        'secret_env_names = ["*_DSN"]\n'
        "\n[pex-cli]\n"
        f'version = "v{PEX_VERSION}"\n'
        f'known_versions = ["v{PEX_VERSION}|linux_x86_64|{sha256}|{pex.stat().st_size}"]\n'
        f'url_template = "file://{pex}"\n'
        "\n[python-repos]\nindexes = []\n"
        "\n[python]\ninterpreter_constraints = [\"==3.9.*\"]\n"
        "\n[python-infer]\nuse_rust_parser = true\nimports = false\n"
        "\n[subprocess-environment]\n"
        "# PIP_CONFIG_FILE: this machine's site-wide pip configuration breaks pex (NOTES.md).\n"
        'env_vars = ["PIP_CONFIG_FILE=/dev/null", "DEMO_API_TOKEN"]\n'
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("secret-registry"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer) -> Iterator[Dict[str, object]]:
    require_pants()
    if not (WHEELHOUSE / "pex.pex").is_file():
        skip_or_fail(f"{WHEELHOUSE / 'pex.pex'} is missing; run `scripts/bootstrap.sh --pants`")
    base = tmp_path_factory.mktemp("pants-secrets")
    buildroot = base / "repo"
    shutil.copytree(EXAMPLE_REPO, buildroot)
    (buildroot / "secrets").mkdir()
    (buildroot / "secrets" / "BUILD").write_text(SECRETS_BUILD, encoding="utf-8")
    (buildroot / "secrets" / "app.py").write_text('print("hello")\n', encoding="utf-8")
    state_dir = base / "state"
    layouts = {"max": base / "layout-max", "min": base / "layout-min"}
    refs = {mode: f"{registry.host}/secrets/cache:{mode}" for mode in ("max", "min")}
    config = buildroot / "oci-cache.toml"
    write_plugin_config(config, state_dir)
    text = config.read_text(encoding="utf-8").replace(
        'backend_packages.add = ["pants_oci_cache"]', 'backend_packages.add = ["pants_oci_cache", "pants.backend.python"]'
    )
    assert "pants.backend.python" in text
    config.write_text(text + _extra_config(layouts, refs), encoding="utf-8")
    repo = PluginRepo(buildroot, base / "runs", state_dir, config)
    saved = {name: os.environ.get(name) for name in ENVIRONMENT}
    os.environ.update(ENVIRONMENT)
    try:
        run = repo.run("cold", goals=["export-codegen", "secrets:uses_token", "package", "secrets:app"])
        yield {"repo": repo, "run": run, "layouts": layouts, "refs": refs, "state_dir": state_dir}
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for pid in repo.daemon_pids():
            kill(pid)


def _targets(scene: Dict[str, object], mode: str) -> List[object]:
    layouts: Dict[str, Path] = scene["layouts"]  # type: ignore[assignment]
    refs: Dict[str, str] = scene["refs"]  # type: ignore[assignment]
    return [
        open_entry_target(parse_cache_from(f"type=local,src={layouts[mode]}")),
        open_entry_target(parse_cache_from(f"type=registry,ref={refs[mode]}")),
    ]


def _report(scene: Dict[str, object]) -> str:
    repo: PluginRepo = scene["repo"]  # type: ignore[assignment]
    return f"{scene['run'].describe()}\ndaemon log:\n{repo.daemon_log()}"  # type: ignore[attr-defined]


def test_the_build_exports_to_all_four_entries(scene: Dict[str, object]) -> None:
    run = scene["run"]
    assert run.returncode == 0, _report(scene)  # type: ignore[attr-defined]
    assert run.counters.get("remote_cache_write_successes", 0) >= 3, _report(scene)  # type: ignore[attr-defined]
    export = run.summary.group(5) if run.summary else ""  # type: ignore[attr-defined]
    assert export.count("exported ") == 4 and "failed" not in export, _report(scene)


def test_no_token_is_in_any_exported_blob_decompressed(scene: Dict[str, object], registry: RegistryServer) -> None:
    layouts: Dict[str, Path] = scene["layouts"]  # type: ignore[assignment]
    assert list(registry.root.rglob("data")), "the registry holds no blob at all"
    for token in TOKENS:
        assert files_holding([layouts["max"], layouts["min"], registry.root], token) == []
    for mode in ("max", "min"):
        for target in _targets(scene, mode):
            blobs = image_blobs(target)
            assert blobs and not any(token in data for data in blobs.values() for token in TOKENS)


def test_a_mode_max_image_holds_a_record_per_command_with_the_secret_name_and_a_comparable_mask(
    scene: Dict[str, object],
) -> None:
    state_dir: Path = scene["state_dir"]  # type: ignore[assignment]
    key = load_or_create_masking_key(state_dir / MASKING_KEY_FILE)
    for target in _targets(scene, "max"):
        index = load_cache_image(target).index  # type: ignore[arg-type]
        blobs = image_blobs(target)
        masked: Dict[str, str] = {}
        assert index.action_count >= 3
        for action_entry in index.iter_actions():
            action = re_pb2.Action.FromString(blobs[action_entry.action])  # the Action is exported
            command = Digest.from_proto(action.command_digest)
            assert command not in blobs, "a Command holding a secret was exported as it is"
            record_digest = index.find_command_record(command)
            assert record_digest is not None and record_digest in blobs
            record = parse_command_record(blobs[record_digest])
            assert record.command == command and record.masked_with == key.key_id
            for entry in record.environment:
                if entry.name.startswith("DEMO_"):
                    assert entry.masked
                    masked[entry.name] = entry.value
            assert record.output_paths or record.output_files or record.output_directories
            # Nothing but the secrets is masked: the arguments (no credential in them) and
            # Pants' PANTS_CACHE_KEY_* variables stay readable, for explaining misses.
            assert record.masked_arguments == () and record.masked_count == sum(e.masked for e in record.environment)
            assert not any(e.masked for e in record.environment if e.name.startswith("PANTS_CACHE_KEY_"))
        assert masked == {name: mask_value(value, key) for name, value in ENVIRONMENT.items()}
        assert index.command_record_count == index.action_count


def test_a_mode_min_image_holds_no_action_definition_and_no_record(scene: Dict[str, object]) -> None:
    for target in _targets(scene, "min"):
        index = load_cache_image(target).index  # type: ignore[arg-type]
        blobs = image_blobs(target)
        assert index.action_count >= 3 and index.command_record_count == 0
        assert not any(action.action in blobs for action in index.iter_actions())


def test_logs_state_files_status_and_inspect_never_show_a_token(scene: Dict[str, object]) -> None:
    state_dir: Path = scene["state_dir"]  # type: ignore[assignment]
    repo: PluginRepo = scene["repo"]  # type: ignore[assignment]
    run = scene["run"]
    state_files = [path for path in state_dir.rglob("*") if path.is_file() and "store" not in path.relative_to(state_dir).parts]
    assert any(path.name == "daemon.log" for path in state_files)
    (settings_file,) = [path for path in state_files if path.name == "secret-masking.json"]
    recorded = json.loads(settings_file.read_text(encoding="utf-8"))  # for a direct `oci-cache export`
    assert recorded == {"maskingKeyFile": str(state_dir / MASKING_KEY_FILE), "secretEnvNames": ["*_DSN"]}
    for token in TOKENS:
        assert token.decode() not in run.output  # type: ignore[attr-defined]
        assert [str(path) for path in state_files if token in path.read_bytes()] == []
    layouts: Dict[str, Path] = scene["layouts"]  # type: ignore[assignment]
    refs: Dict[str, str] = scene["refs"]  # type: ignore[assignment]
    commands = [["status", "--state-dir", str(state_dir), "--json"]]
    commands += [["inspect", f"type=local,src={layouts[mode]}", "--json"] for mode in ("max", "min")]
    commands += [["inspect", refs[mode], "--json"] for mode in ("max", "min")]
    for arguments in commands:
        completed = subprocess.run(
            [sys.executable, "-m", "oci_cache.cli.main", *arguments],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, close_fds=False,
        )
        assert completed.returncode == 0, (arguments, completed.stderr)
        for token in TOKENS:
            assert token.decode() not in completed.stdout + completed.stderr, arguments
    assert repo.daemon_pids(), "the daemon should still be running for `status`"
