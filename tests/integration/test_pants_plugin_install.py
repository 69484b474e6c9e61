"""Real Pants 2.17.1 installing pants-oci-cache the standard way, as a wheel in
`[GLOBAL].plugins`, with the embedded default (no registry) and nothing else:

    [GLOBAL]
    plugins = ["pants-oci-cache==<version>"]
    backend_packages.add = ["pants_oci_cache"]

    [oci-cache]
    state_dir = "<tmp>/state"

Pants resolves plugins together with its own pinned requirements (typing-extensions
4.3.0 among them), so this proves the dependency floors in pyproject.toml admit a
resolve, and that the daemon runs on Pants' own interpreter with what it resolved.

Offline: the wheel is built from this checkout; its dependencies come from the
wheelhouse `scripts/bootstrap.sh --pants` downloads (.cache/pants-plugin-wheelhouse:
the wheels a resolve needs, plus the newest grpcio, which needs a newer
typing-extensions, as on PyPI), and the `[pex-cli]` tool Pants would fetch from
GitHub is the pex.pex built there. Without the wheelhouse or Pants these tests are
skipped (they fail when OCI_CACHE_REQUIRE_PANTS is set, as in CI). Daemons started
by the plugin are stopped by pid at the end.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Set

import pytest

from pants_runs import (
    daemon_logs,
    kill,
    live_daemon_pids,
    CACHEABLE_PROCESSES,
    EXAMPLE_REPO,
    HDRHISTOGRAM_HINT,
    PantsRun,
    PANTS,
    UNAVAILABLE_WARNING,
    require_pants,
    run_pants_command,
    skip_or_fail,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PANTS_VENV = REPO_ROOT / ".venv-pants"
WHEELHOUSE = REPO_ROOT / ".cache" / "pants-plugin-wheelhouse"
PEX_VERSION = "2.1.137"  # Pants 2.17.1's `[pex-cli]` default; scripts/bootstrap.sh builds it
GOALS = ["export-codegen", "test", "::"]
DIST_INFO = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)\.dist-info$")
GRPCIO_WHEEL = re.compile(r"^grpcio-(?P<version>[0-9.]+)-")

pytestmark = pytest.mark.pants


@dataclass(frozen=True)
class PluginInstall:
    buildroot: Path
    scratch: Path
    state_dir: Path
    config_file: Path
    wheel: Path

    def run(self, name: str, *extra_args: str) -> PantsRun:
        """A Pants run with its own local store and workdir; the named caches (where the
        plugin resolve lives) are shared, as on one machine.

        Pants 2.17 itself sometimes fails to exec a freshly written sandbox script on a
        loaded machine ("Error launching process after 1 retry for ETXTBSY"), before any
        cache call: such a run is repeated once, in fresh directories."""
        run = self._run_once(name, *extra_args)
        if run.returncode != 0 and "ETXTBSY" in run.output:
            run = self._run_once(name + "-again", *extra_args)
        return run

    def _run_once(self, name: str, *extra_args: str) -> PantsRun:
        run_dir = self.scratch / name
        (run_dir / "sandboxes").mkdir(parents=True, exist_ok=True)
        argv = [
            str(PANTS),
            "--no-pantsd",
            "--no-watch-filesystem",
            "--no-pantsrc",
            f"--pants-config-files=+['{self.config_file}']",
            f"--pants-workdir={run_dir / 'workdir'}",
            f"--pants-distdir={self.buildroot / ('dist-' + name)}",
            f"--pants-subprocessdir={self.scratch / 'pids'}",
            f"--local-store-dir={run_dir / 'local-store'}",
            f"--named-caches-dir={self.scratch / 'named-caches'}",
            f"--local-execution-root-dir={run_dir / 'sandboxes'}",
            "--remote-cache-read",
            "--remote-cache-write",
            "--stats-log",
            f"--ignore-warnings=['{HDRHISTOGRAM_HINT}']",
            *extra_args,
            *GOALS,
        ]
        return run_pants_command(argv, self.buildroot, self.scratch, name)

    def daemon_pids(self) -> Set[int]:
        return live_daemon_pids(self.state_dir)

    def daemon_log(self) -> str:
        return daemon_logs(self.state_dir)


def build_wheel(destination: Path, scratch: Path) -> Path:
    """This checkout's wheel, built from a copy (building writes build/ next to pyproject.toml)."""
    source = scratch / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "src" / "python",
        source / "src" / "python",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", ".mypy_cache"),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(destination),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = destination.glob("pants_oci_cache-*.whl")
    return wheel


def plugin_config(wheel: Path, own_wheels: Path, state_dir: Path) -> str:
    """What a user writes (the first and last sections) plus what makes it offline here."""
    version = wheel.name.split("-")[1]
    pex = WHEELHOUSE / "pex.pex"
    pex_sha256 = hashlib.sha256(pex.read_bytes()).hexdigest()
    return (
        "[GLOBAL]\n"
        f'plugins = ["pants-oci-cache=={version}"]\n'
        'backend_packages.add = ["pants_oci_cache"]\n'
        "\n"
        "[python-repos]\n"
        "indexes = []\n"
        f'find_links = ["file://{own_wheels}", "file://{WHEELHOUSE / "wheels"}"]\n'
        "\n"
        "[pex-cli]\n"
        f'version = "v{PEX_VERSION}"\n'
        f'known_versions = ["v{PEX_VERSION}|linux_x86_64|{pex_sha256}|{pex.stat().st_size}"]\n'
        f'url_template = "file://{pex}"\n'
        "\n"
        "[subprocess-environment]\n"
        "# This machine's site-wide pip configuration breaks pex's resolves (NOTES.md). HOME\n"
        "# passes the run's private home on (tests/pants_runs.py), where pex keeps the pip it\n"
        "# bootstraps (~/.pex): without it pex falls back to the user's home directory.\n"
        'env_vars = ["PIP_CONFIG_FILE=/dev/null", "HOME"]\n'
        "\n"
        "[oci-cache]\n"
        f'state_dir = "{state_dir}"\n'
    )


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginInstall]:
    require_pants()
    if not ((WHEELHOUSE / ".bootstrap-stamp").is_file() and (WHEELHOUSE / "pex.pex").is_file()):
        skip_or_fail(f"the plugin wheelhouse {WHEELHOUSE} is missing; run `scripts/bootstrap.sh --pants`")
    base = tmp_path_factory.mktemp("pants-plugin-install")
    buildroot = base / "repo"
    shutil.copytree(EXAMPLE_REPO, buildroot)
    own_wheels = base / "own-wheels"
    wheel = build_wheel(own_wheels, base)
    state_dir = base / "state"
    config_file = buildroot / "plugin-install.toml"
    config_file.write_text(plugin_config(wheel, own_wheels, state_dir), encoding="utf-8")
    plugin_install = PluginInstall(buildroot, base / "runs", state_dir, config_file, wheel)
    yield plugin_install
    for pid in plugin_install.daemon_pids():
        kill(pid)


def _daemon_environ(pid: int) -> Dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_text(errors="replace")
    return dict(entry.split("=", 1) for entry in raw.split("\0") if "=" in entry)


def _distributions(directories: List[str]) -> Dict[str, str]:
    """{normalised name: version} of the distributions installed in directories."""
    found: Dict[str, str] = {}
    for directory in directories:
        for entry in Path(directory).glob("*.dist-info"):
            match = DIST_INFO.match(entry.name)
            if match:
                found[match.group("name").lower().replace("_", "-")] = match.group("version")
    return found


def _version_key(version: str) -> List[int]:
    return [int(part) for part in version.split(".") if part.isdigit()]


def test_plugins_install_resolves_against_pants_pins_and_serves_the_build(install: PluginInstall) -> None:
    report = lambda run: f"{run.describe()}\ndaemon log:\n{install.daemon_log()}"  # noqa: E731
    cold = install.run("cold")
    assert cold.returncode == 0, report(cold)
    assert f"Resolving plugins: pants-oci-cache=={install.wheel.name.split('-')[1]}" in cold.output, report(cold)
    assert UNAVAILABLE_WARNING not in cold.output, report(cold)
    assert cold.counters["remote_cache_requests"] == CACHEABLE_PROCESSES, report(cold)
    assert cold.counters.get("remote_cache_write_errors", 0) == 0, report(cold)
    assert cold.summary is not None, report(cold)
    hits, misses, _, _, export = cold.summary.groups()
    # (A repeated run, see PluginInstall.run, finds part of the first attempt's writes.)
    assert int(hits) + int(misses) == CACHEABLE_PROCESSES, report(cold)
    assert "type=local,dest=" in export, report(cold)  # the embedded default

    # The daemon runs on Pants' own interpreter, with only what the plugin resolve installed.
    (pid,) = install.daemon_pids()
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(PANTS_VENV / "bin" / "python")
    pythonpath = _daemon_environ(pid)["PYTHONPATH"].split(os.pathsep)
    named_caches = str(install.scratch / "named-caches")
    assert pythonpath and all(entry.startswith(named_caches) for entry in pythonpath), pythonpath
    resolved = _distributions(pythonpath)
    assert resolved.get("pants-oci-cache") == install.wheel.name.split("-")[1], resolved
    # The newest grpcio (in the wheelhouse, as on PyPI) needs typing-extensions>=4.12, which
    # Pants pins to 4.3.0: the resolve must have passed it over for an older one.
    offered = sorted(
        (match.group("version") for match in map(GRPCIO_WHEEL.match, os.listdir(WHEELHOUSE / "wheels")) if match),
        key=_version_key,
    )
    assert len(offered) >= 2, offered
    assert resolved.get("grpcio") in offered[:-1], (resolved, offered)
    assert "typing-extensions" not in resolved, resolved

    # A fresh local store without Pants' own cache: every process comes from that daemon.
    warm = install.run("warm", "--no-local-cache")
    assert warm.returncode == 0, report(warm)
    assert warm.counters["remote_cache_requests_cached"] == CACHEABLE_PROCESSES, report(warm)
    assert warm.summary is not None, report(warm)
    hits, misses, _, _, _ = warm.summary.groups()
    assert (int(hits), int(misses)) == (CACHEABLE_PROCESSES, 0), report(warm)
    assert install.daemon_pids() == {pid}
