"""Real Pants 2.17.1: why did a fresh machine miss the cache? A cold run exports
mode=max; then a data file, a command and a secret-looking environment variable change;
a fresh machine's run misses, and `oci-cache explain --json` names, for those misses,
Pants' description of the process, its previous version in the image, the changed
argument, the changed variable (its value masked) and the changed input.

Two Pants runs (~20 s each). The fresh machine is given the first machine's masking key
file, as docs/pants.md tells CI to do, so that masked values compare.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from oci_cache.secret_masking.masked_values import MASKING_KEY_FILE
from pants_runs import EXAMPLE_REPO, HDRHISTOGRAM_HINT, PANTS, kill, live_daemon_pids, require_pants, run_pants_command

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOT = REPO_ROOT / "src" / "python"
SECRET_BEFORE = "demo-token-before-4f1c9a"
SECRET_AFTER = "demo-token-after-8b27e0"
SECRET_TARGET = '''
shell_command(
    name="uses_token",
    command="sleep 0.5; mkdir -p token && echo ${#DEMO_API_TOKEN} > token/length.txt",
    tools=["sleep", "mkdir"],
    extra_env_vars=["DEMO_API_TOKEN"],
    output_files=["token/length.txt"],
)
'''
pytestmark = pytest.mark.pants


def _config(path: Path, state_dir: Path, line: str) -> None:
    path.write_text(
        "[GLOBAL]\n"
        f'pythonpath = ["{SOURCE_ROOT}"]\n'
        'backend_packages.add = ["pants_oci_cache"]\n'
        "remote_cache_read = true\nremote_cache_write = true\n\n"
        "[oci-cache]\n"
        f'state_dir = "{state_dir}"\npython = "{sys.executable}"\n{line}\n',
        encoding="utf-8",
    )


def _pants(buildroot: Path, scratch: Path, name: str, config: Path, token: str, *extra: str):
    run_dir = scratch / name
    (run_dir / "sandboxes").mkdir(parents=True, exist_ok=True)
    argv = [
        str(PANTS), "--no-pantsd", "--no-watch-filesystem", "--no-pantsrc",
        f"--pants-config-files=+['{config}']",
        f"--pants-workdir={run_dir / 'workdir'}", f"--pants-distdir={buildroot / ('dist-' + name)}",
        f"--pants-subprocessdir={scratch / 'pids'}", f"--local-store-dir={run_dir / 'local-store'}",
        f"--named-caches-dir={run_dir / 'named-caches'}", f"--local-execution-root-dir={run_dir / 'sandboxes'}",
        f"--ignore-warnings=['{HDRHISTOGRAM_HINT}']", *extra, "export-codegen", "::",
    ]
    previous = os.environ.get("DEMO_API_TOKEN")
    os.environ["DEMO_API_TOKEN"] = token
    try:
        return run_pants_command(argv, buildroot, scratch, name)
    finally:
        if previous is None:
            del os.environ["DEMO_API_TOKEN"]
        else:
            os.environ["DEMO_API_TOKEN"] = previous


def _explain(state_dir: Path) -> Dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "oci_cache.cli.main", "explain", "--json", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def fresh_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    require_pants()
    base = tmp_path_factory.mktemp("pants-explain")
    buildroot, scratch, image = base / "repo", base / "runs", base / "image"
    shutil.copytree(EXAMPLE_REPO, buildroot)
    with open(buildroot / "gen" / "BUILD", "a", encoding="utf-8") as build:
        build.write(SECRET_TARGET)
    state_a, state_b = base / "state-a", base / "state-b"
    cache_to = f"type=local,dest={image},mode=max"
    cache_from = f"type=local,src={image}"
    config_a, config_b = base / "a.toml", base / "b.toml"
    _config(config_a, state_a, f'cache_to = ["{cache_to}"]')
    _config(config_b, state_b, f'cache_from = ["{cache_from}"]')
    try:
        cold = _pants(buildroot, scratch, "cold", config_a, SECRET_BEFORE)
        assert cold.returncode == 0, cold.describe()
        # The changes: a data file, a command, the secret-looking variable's value.
        with open(buildroot / "data" / "words.txt", "a", encoding="utf-8") as words:
            words.write("zebra\n")
        gen_build = buildroot / "gen" / "BUILD"
        gen_build.write_text(gen_build.read_text().replace("printf a > tiny/a.txt", "printf A > tiny/a.txt"))
        # Another machine, given the first one's masking key (as CI would be).
        state_b.mkdir()
        shutil.copy(state_a / MASKING_KEY_FILE, state_b / MASKING_KEY_FILE)
        fresh = _pants(buildroot, scratch, "fresh", config_b, SECRET_AFTER, "--no-local-cache")
        assert fresh.returncode == 0, fresh.describe()
        explained = _explain(state_b)
        (base / "explained.json").write_text(json.dumps(explained, indent=1), encoding="utf-8")
        for pid in live_daemon_pids(state_b):
            kill(pid)  # SIGTERM: the daemon stops as it would, leaving its record
        after_stop = _explain(state_b)
        yield {"fresh": fresh, "explained": explained, "after_stop": after_stop, "image": image}
    finally:
        for state_dir in (state_a, state_b):
            for pid in live_daemon_pids(state_dir):
                kill(pid)


def _miss(explained: Dict[str, Any], text: str) -> Dict[str, Any]:
    found = [m for m in explained["misses"] if text in (m["description"] or "")]
    assert len(found) == 1, json.dumps(explained, indent=1)
    return found[0]


def test_explain_names_each_changed_process_its_previous_version_and_what_changed(fresh_machine) -> None:
    explained = fresh_machine["explained"]
    assert explained["schema"] == "pants-oci-cache/explain/v1"
    assert explained["misses"] and all(m["description"] for m in explained["misses"]), explained

    tiny = _miss(explained, "gen:tiny")
    assert tiny["nearest"] is not None and tiny["nearest"]["source"].startswith("type=local,src=")
    assert any(d["kind"] == "argv" and "printf A" in (d["after"] or "") and "printf a" in (d["before"] or "")
               for d in tiny["differences"]), tiny

    token = _miss(explained, "gen:uses_token")
    [variable] = [d for d in token["differences"] if d["kind"] == "env"]
    assert variable["name"] == "DEMO_API_TOKEN"
    assert variable["before"].startswith("<masked:hmac:") and variable["after"].startswith("<masked:hmac:")

    words = _miss(explained, "gen:sorted_words")
    changed = {(d["kind"], d["name"]) for d in words["differences"]}
    assert ("input_file", "data/words.txt") in changed or ("input_root", None) in changed, words

    assert fresh_machine["after_stop"] == explained  # the record the daemon left
    assert "oci-cache explain" in fresh_machine["fresh"].output  # the end-of-run line names the causes
    for text in (json.dumps(explained), fresh_machine["fresh"].output):
        assert SECRET_BEFORE not in text and SECRET_AFTER not in text


def test_the_secret_value_is_in_no_file_of_the_exported_image(fresh_machine) -> None:
    import io

    import zstandard

    for path in Path(fresh_machine["image"]).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET_BEFORE.encode() not in data, path
            try:  # a layer: one zstd frame per blob
                reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
                data = reader.read()
            except zstandard.ZstdError:
                continue
            assert SECRET_BEFORE.encode() not in data, path
