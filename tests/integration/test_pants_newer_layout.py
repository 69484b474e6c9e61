"""The plugin on a real Pants engine with the module layout of Pants 2.29 and later: the
installed Pants 2.17.1 with its plugin-facing modules rewritten as 2.20 (the `provider`
field), 2.25 (no default user-agent header, no Python options-parser API) and 2.29
(AuthPluginResult/AuthPluginState only in pants.option.bootstrap_options) changed them
(tests/pants_newer_layout.py). Newer Pants cannot be installed here; this is the layout
that made the plugin's backend fail to load, and so Pants fail to start, on 2.29-2.33.

Two Pants runs of examples/basic through the plugin (in-repo `pythonpath` install):

1. cold: every process runs, is written to the daemon, and the end of the run exports
   to `type=local,dest=<image>`;
2. a fresh machine: a new state dir with only that image as `cache_from`, a new local
   store, `--no-local-cache`: every process is served from the cache.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

from pants_newer_layout import build_newer_layout
from pants_runs import (
    CACHEABLE_PROCESSES,
    EXAMPLE_REPO,
    HDRHISTOGRAM_HINT,
    UNAVAILABLE_WARNING,
    PantsRun,
    daemon_logs,
    kill,
    live_daemon_pids,
    require_pants,
    run_pants_command,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOT = REPO_ROOT / "src" / "python"
pytestmark = pytest.mark.pants

LAYOUT_CHECK = """
import dataclasses, sys
sys.path.insert(0, sys.argv[1])
import pants.option.global_options as global_options
from pants.option.bootstrap_options import AuthPluginResult, RemoteProvider
assert not hasattr(global_options, "AuthPluginResult") and not hasattr(global_options, "AuthPluginState")
assert [f.name for f in dataclasses.fields(AuthPluginResult)][:4] == [
    "state", "store_headers", "execution_headers", "provider"]
assert global_options.DEFAULT_EXECUTION_OPTIONS.remote_store_headers == {}
print(global_options.__file__)
"""


@pytest.fixture(scope="module")
def newer_pants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pants = require_pants()
    launcher = build_newer_layout(pants, tmp_path_factory.mktemp("pants-2.29-layout"))
    # The layout is what 2.29 has: the old import location is gone (the import the plugin had
    # before fails), the provider field is there, and the default headers are empty.
    checked = subprocess.run(
        [str(pants.parent / "python"), "-c", LAYOUT_CHECK, str(launcher.parent.parent / "site")],
        capture_output=True, text=True, timeout=120,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().startswith(str(launcher.parent.parent / "site")), checked.stdout
    return launcher


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for state_dir in tmp_path.glob("state-*"):
        for pid in live_daemon_pids(state_dir):
            kill(pid)


def write_config(path: Path, state_dir: Path, oci_cache_lines: List[str]) -> Path:
    path.write_text(
        "[GLOBAL]\n"
        f'pythonpath = ["{SOURCE_ROOT}"]\n'
        'backend_packages.add = ["pants_oci_cache"]\n'
        "remote_cache_read = true\n"
        "remote_cache_write = true\n"
        "\n[oci-cache]\n"
        f'state_dir = "{state_dir}"\n'
        f'python = "{sys.executable}"\n' + "".join(line + "\n" for line in oci_cache_lines),
        encoding="utf-8",
    )
    return path


def run(pants: Path, buildroot: Path, scratch: Path, name: str, config: Path, *extra: str) -> PantsRun:
    run_dir = scratch / name
    (run_dir / "sandboxes").mkdir(parents=True)
    argv = [
        str(pants),
        "--no-pantsd",
        "--no-watch-filesystem",
        "--no-pantsrc",
        f"--pants-config-files=+['{config}']",
        f"--pants-workdir={run_dir / 'workdir'}",
        f"--pants-distdir={buildroot / ('dist-' + name)}",
        f"--pants-subprocessdir={scratch / 'pids'}",
        f"--local-store-dir={run_dir / 'local-store'}",
        f"--named-caches-dir={run_dir / 'named-caches'}",
        f"--local-execution-root-dir={run_dir / 'sandboxes'}",
        "--stats-log",
        f"--ignore-warnings=['{HDRHISTOGRAM_HINT}']",
        *extra,
        "export-codegen",
        "test",
        "::",
    ]
    return run_pants_command(argv, buildroot, scratch, name)


def test_a_pants_with_the_2_29_layout_exports_and_serves_a_fresh_machine(newer_pants: Path, base: Path) -> None:
    buildroot = base / "repo"
    shutil.copytree(EXAMPLE_REPO, buildroot)
    scratch = base / "runs"
    image = base / "exported-image"
    report = lambda run, state: f"{run.describe()}\ndaemon log:\n{daemon_logs(state)}"  # noqa: E731

    cold_state = base / "state-cold"
    cold_config = write_config(base / "cold.toml", cold_state, [f'cache_to = ["type=local,dest={image}"]'])
    cold = run(newer_pants, buildroot, scratch, "cold", cold_config)
    assert cold.returncode == 0, report(cold, cold_state)
    assert "BackendConfigurationError" not in cold.output and UNAVAILABLE_WARNING not in cold.output, cold.describe()
    assert cold.counters["remote_cache_requests"] == CACHEABLE_PROCESSES, report(cold, cold_state)
    assert cold.counters["remote_cache_write_successes"] == CACHEABLE_PROCESSES, report(cold, cold_state)
    assert cold.summary is not None, report(cold, cold_state)
    hits, misses, _, _, export = cold.summary.groups()
    assert (int(hits), int(misses)) == (0, CACHEABLE_PROCESSES), report(cold, cold_state)
    assert f"exported {CACHEABLE_PROCESSES} entries" in export and f"type=local,dest={image}" in export, export
    for pid in live_daemon_pids(cold_state):  # the first machine is gone
        kill(pid)

    # A fresh machine: a new state dir whose only cache is the exported image, a new local
    # store, no local process cache.
    fresh_state = base / "state-fresh"
    fresh_config = write_config(base / "fresh.toml", fresh_state, [f'cache_from = ["type=local,src={image}"]'])
    fresh = run(newer_pants, buildroot, scratch, "fresh", fresh_config, "--no-local-cache")
    assert fresh.returncode == 0, report(fresh, fresh_state)
    assert fresh.counters["remote_cache_requests"] == CACHEABLE_PROCESSES, report(fresh, fresh_state)
    assert fresh.counters["remote_cache_requests_cached"] == CACHEABLE_PROCESSES, report(fresh, fresh_state)
    for name in ("remote_cache_requests_uncached", "remote_cache_read_errors", "remote_cache_request_timeouts",
                 "remote_store_missing_digest", "remote_cache_write_attempts"):
        assert fresh.counters.get(name, 0) == 0, f"{name}\n{report(fresh, fresh_state)}"
    assert fresh.summary is not None, report(fresh, fresh_state)
    hits, misses, read, written, _ = fresh.summary.groups()
    assert (int(hits), int(misses), written) == (CACHEABLE_PROCESSES, 0, "0B"), report(fresh, fresh_state)
    assert read.endswith("MiB"), report(fresh, fresh_state)
    assert sorted(p.name for p in (buildroot / "dist-fresh" / "codegen" / "gen").iterdir()) == sorted(
        p.name for p in (buildroot / "dist-cold" / "codegen" / "gen").iterdir()
    )
