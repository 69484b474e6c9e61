"""Real Pants 2.17.1 with the `pants_oci_cache` plugin installed in-repo: no address, no
server started by hand — only `[GLOBAL] pythonpath`, `backend_packages` and `[oci-cache]`.

The bundled example repository (examples/basic) is copied to tmp with an extra config file:

    [GLOBAL]
    pythonpath = ["<this repository>/src/python"]
    backend_packages.add = ["pants_oci_cache"]
    remote_cache_read = true
    remote_cache_write = true

    [oci-cache]
    state_dir = "<tmp>/oci-cache"
    python = "<the test interpreter, which has the daemon's dependencies>"

Pants comes from .venv-pants (`scripts/bootstrap.sh --pants`); without it these tests are
skipped (or fail, with OCI_CACHE_REQUIRE_PANTS set). Daemons started by the plugin are
stopped by pid at the end of the module.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import pytest

from oci_cache.cache_entries import parse_cache_to
from pants_runs import (
    alive,
    daemon_logs,
    kill,
    live_daemon_pids,
    CACHEABLE_PROCESSES,
    EXAMPLE_REPO,
    HDRHISTOGRAM_HINT,
    PANTS_TIMEOUT_SECONDS,
    PantsRun,
    PANTS,
    UNAVAILABLE_WARNING,
    require_pants,
    run_pants_command,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOT = REPO_ROOT / "src" / "python"
GOALS = ["export-codegen", "test", "::"]
pytestmark = pytest.mark.pants


@dataclass
class PluginRepo:
    buildroot: Path
    scratch: Path
    state_dir: Path
    config_file: Path

    def run(
        self,
        name: str,
        *extra_args: str,
        goals: List[str] = GOALS,
        pantsd: bool = False,
        dirs: str = "",
        config_file: Optional[Path] = None,
        path: Optional[str] = None,
    ) -> PantsRun:
        """One Pants run with its own local store, workdir and caches under scratch/(dirs or name)."""
        dirs = dirs or name
        run_dir = self.scratch / dirs
        (run_dir / "sandboxes").mkdir(parents=True, exist_ok=True)
        argv = [
            str(PANTS),
            *(["--pantsd"] if pantsd else ["--no-pantsd", "--no-watch-filesystem"]),
            "--no-pantsrc",
            f"--pants-config-files=+['{config_file or self.config_file}']",
            f"--pants-workdir={run_dir / 'workdir'}",
            f"--pants-distdir={self.buildroot / ('dist-' + dirs)}",
            f"--pants-subprocessdir={self.scratch / 'pids'}",
            f"--local-store-dir={run_dir / 'local-store'}",
            f"--named-caches-dir={run_dir / 'named-caches'}",
            f"--local-execution-root-dir={run_dir / 'sandboxes'}",
            "--stats-log",
            f"--ignore-warnings=['{HDRHISTOGRAM_HINT}']",
            *extra_args,
            *goals,
        ]
        return run_pants_command(argv, self.buildroot, self.scratch, name, path)

    def daemon_pids(self, state_dir: Optional[Path] = None) -> Set[int]:
        return live_daemon_pids(state_dir or self.state_dir)

    def daemon_log(self) -> str:
        return daemon_logs(self.state_dir)


def write_plugin_config(path: Path, state_dir: Path) -> None:
    path.write_text(
        "[GLOBAL]\n"
        f'pythonpath = ["{SOURCE_ROOT}"]\n'
        'backend_packages.add = ["pants_oci_cache"]\n'
        "remote_cache_read = true\n"
        "remote_cache_write = true\n"
        "\n"
        "[oci-cache]\n"
        f'state_dir = "{state_dir}"\n'
        f'python = "{sys.executable}"\n',
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginRepo]:
    require_pants()
    base = tmp_path_factory.mktemp("pants-plugin")
    buildroot = base / "repo"
    shutil.copytree(EXAMPLE_REPO, buildroot)
    state_dir = base / "oci-cache"
    config_file = buildroot / "oci-cache.toml"
    write_plugin_config(config_file, state_dir)
    plugin_repo = PluginRepo(buildroot, base / "runs", state_dir, config_file)
    yield plugin_repo
    for pid_file in (base / "runs" / "pids").glob("*/pantsd/pid"):
        try:
            kill(int(pid_file.read_text().strip()))
        except ValueError:
            pass
    for directory in [base / "oci-cache", *base.glob("state-*")]:
        for pid in plugin_repo.daemon_pids(directory):
            kill(pid)


@pytest.fixture(scope="module")
def cold_build(repo: PluginRepo) -> PantsRun:
    """The first build: an empty cache, so every process runs and is written to the daemon."""
    return repo.run("cold")


def test_a_fresh_machine_is_served_from_the_cache_through_the_plugin(repo: PluginRepo, cold_build: PantsRun) -> None:
    first = cold_build
    report = lambda run: f"{run.describe()}\ndaemon log:\n{repo.daemon_log()}"  # noqa: E731
    assert first.returncode == 0, report(first)
    assert first.counters["remote_cache_requests"] == CACHEABLE_PROCESSES, report(first)
    assert first.counters["remote_cache_write_successes"] == CACHEABLE_PROCESSES, report(first)
    assert first.counters.get("remote_cache_write_errors", 0) == 0, report(first)
    assert first.summary is not None, report(first)
    hits, misses, _, written, _ = first.summary.groups()
    assert (int(hits), int(misses)) == (0, CACHEABLE_PROCESSES) and written != "0B", report(first)
    assert UNAVAILABLE_WARNING not in first.output
    assert len(repo.daemon_pids()) == 1

    # Another machine: an empty local store and no local process cache.
    second = repo.run("warm", "--no-local-cache")
    assert second.returncode == 0, report(second)
    assert second.counters["remote_cache_requests"] == CACHEABLE_PROCESSES, report(second)
    assert second.counters["remote_cache_requests_cached"] == CACHEABLE_PROCESSES, report(second)
    for name in ("remote_cache_requests_uncached", "remote_cache_read_errors", "remote_cache_request_timeouts",
                 "remote_store_missing_digest", "remote_cache_write_attempts"):
        assert second.counters.get(name, 0) == 0, f"{name}\n{report(second)}"
    assert second.summary is not None, report(second)
    hits, misses, read, written, export = second.summary.groups()
    assert (int(hits), int(misses), written) == (CACHEABLE_PROCESSES, 0, "0B"), report(second)
    assert read.endswith("MiB"), report(second)  # the 6.2 MB and 1.6 MB outputs came from the daemon
    # No cache_from / cache_to: the embedded default, an OCI image layout in the daemon's
    # directory (exported in mode=max); everything was served from it, so the export finds
    # it up to date.
    assert export.startswith("type=local,dest=") and (
        f" is up to date ({CACHEABLE_PROCESSES} entries, nothing new) in " in export
    ), report(second)
    embedded = parse_cache_to(export.split(" is up to date", 1)[0])
    assert embedded.mode == "max", report(second)
    layout = Path(embedded.location)
    assert layout.parent.parent == repo.state_dir and (layout / "index.json").is_file(), report(second)
    assert sorted(p.name for p in (repo.buildroot / "dist-warm" / "codegen" / "gen").iterdir()) == sorted(
        p.name for p in (repo.buildroot / "dist-cold" / "codegen" / "gen").iterdir()
    )


def test_a_killed_daemon_is_restarted_and_concurrent_runs_share_one(repo: PluginRepo, cold_build: PantsRun) -> None:
    assert cold_build.returncode == 0, cold_build.describe()
    (killed,) = repo.daemon_pids()
    kill(killed, signal.SIGKILL)
    assert not alive(killed)

    # Two fresh machines at once, after the crash: one of them starts the daemon, both use it.
    runs: Dict[str, PantsRun] = {}
    threads = [
        threading.Thread(target=lambda name=name: runs.__setitem__(name, repo.run(name, "--no-local-cache")))
        for name in ("concurrent-a", "concurrent-b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PANTS_TIMEOUT_SECONDS)
    assert set(runs) == {"concurrent-a", "concurrent-b"}
    for name, run in list(runs.items()):
        if run.returncode != 0 and "ETXTBSY" in run.output:
            # Pants 2.17 itself sometimes fails to exec a freshly written sandbox script when
            # two runs start at once ("Error launching process after 1 retry for ETXTBSY"),
            # before any cache call; that run is repeated once, against the same daemon.
            runs[name] = run = repo.run(name + "-again", "--no-local-cache")
        assert run.returncode == 0, f"{run.describe()}\ndaemon log:\n{repo.daemon_log()}"
        assert run.summary is not None, run.describe()
        # Everything written before the crash was durable: both are served from the cache.
        assert run.counters["remote_cache_requests_cached"] == CACHEABLE_PROCESSES, run.describe()
    daemons = repo.daemon_pids()
    assert len(daemons) == 1 and killed not in daemons
    log = daemon_logs(repo.state_dir, tail_chars=None)
    assert log.count("serving on") == 2, log  # the killed daemon, and one new one for both runs


def test_a_broken_state_dir_warns_and_the_build_goes_on(repo: PluginRepo, cold_build: PantsRun, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    # (With the cold build's local store: the processes come from Pants' own cache, quickly.)
    run = repo.run("broken", f"--oci-cache-state-dir={tmp_path / 'a-file' / 'state'}", dirs="cold")
    assert run.returncode == 0, run.describe()
    assert UNAVAILABLE_WARNING in run.output and "cannot use the state directory" in run.output, run.describe()
    assert run.counters.get("remote_cache_requests", 0) == 0, run.describe()
    assert run.summary is None


def test_pantsd_keeps_its_scheduler_from_run_to_run(repo: PluginRepo) -> None:
    # The same options every time (a changed bootstrap option alone would restart the scheduler).
    runs = [repo.run(f"pantsd-{n}", goals=["list", "::"], pantsd=True, dirs="pantsd") for n in range(3)]
    for run in runs:
        assert run.returncode == 0, run.describe()
        assert run.summary is not None, run.describe()
    # pantsd tells the client when it (re)initializes its scheduler: only the first run may say so.
    assert "Initializing scheduler" in runs[0].output, runs[0].describe()
    for run in runs[1:]:
        assert "nitializing scheduler" not in run.output, run.describe()
    pantsd_log = (repo.scratch / "pantsd" / "workdir" / "pants.log").read_text(errors="replace")
    assert "nitializing scheduler" not in pantsd_log, pantsd_log[-3000:]


def test_the_wheel_on_pythonpath_with_oci_cache_on_the_path(repo: PluginRepo, cold_build: PantsRun, tmp_path: Path) -> None:
    """The other installation: the built wheel unpacked without its dependencies onto Pants'
    `pythonpath`, and no `[oci-cache] python`: the daemon runs on the interpreter of the
    `oci-cache` script found on the PATH (as `pipx install pants-oci-cache` would provide)."""
    source = tmp_path / "source"  # build from a copy: building writes build/ next to pyproject.toml
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(SOURCE_ROOT, source / "src" / "python", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "wheels"),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheels").glob("pants_oci_cache-*.whl")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "plugins"), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "oci-cache"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom oci_cache.cli.main import main\nsys.exit(main())\n")
    script.chmod(0o755)
    state_dir = tmp_path / "state"
    config = tmp_path / "wheel.toml"
    config.write_text(
        "[GLOBAL]\n"
        f'pythonpath = ["{tmp_path / "plugins"}"]\n'
        'backend_packages.add = ["pants_oci_cache"]\n'
        "remote_cache_read = true\n"
        "remote_cache_write = true\n"
        "\n[oci-cache]\n"
        f'state_dir = "{state_dir}"\n',
        encoding="utf-8",
    )
    try:
        run = repo.run("wheel", dirs="cold", config_file=config, path=f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
        assert run.returncode == 0, run.describe()
        assert UNAVAILABLE_WARNING not in run.output, run.describe()
        assert run.summary is not None, run.describe()
        (pid,) = repo.daemon_pids(state_dir)
        environ = dict(
            entry.split("=", 1) for entry in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in entry
        )
        assert environ["PYTHONPATH"] == str(tmp_path / "plugins")  # the daemon runs the wheel's code
        assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(sys.executable)
    finally:
        for pid in repo.daemon_pids(state_dir):
            kill(pid)


def test_remote_caching_off_is_a_warning_and_starts_no_daemon(repo: PluginRepo, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    run = repo.run(
        "remote-off",
        "--no-remote-cache-read",
        "--no-remote-cache-write",
        f"--oci-cache-state-dir={state_dir}",
        goals=["list", "::"],
    )
    assert run.returncode == 0, run.describe()
    assert "`remote_cache_read` and `remote_cache_write` are both false" in run.output, run.describe()
    assert run.summary is None and not state_dir.exists()
