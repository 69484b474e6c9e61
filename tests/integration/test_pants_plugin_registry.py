"""Real Pants 2.17.1 with the plugin and a real `docker-registry` on 127.0.0.1: the cache
travels between two machines (two state directories, two Pants local stores) as an OCI
image in the registry, and a registry that is gone never fails the build.

Reuses the Pants helpers of test_pants_plugin.py and `start_registry` of
tests/registry_fixtures.py; every daemon and the registry are stopped by pid at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, List

import pytest

from pants_runs import alive, kill, require_pants
from registry_fixtures import RegistryServer, start_registry
from test_pants_plugin import (
    CACHEABLE_PROCESSES,
    EXAMPLE_REPO,
    UNAVAILABLE_WARNING,
    PantsRun,
    PluginRepo,
    write_plugin_config,
)

pytestmark = [pytest.mark.pants, pytest.mark.registry]

CACHE_REPOSITORY = "cache/basic"
CACHE_TAG = "main"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


class RegistryPluginRepo(PluginRepo):
    """A PluginRepo whose runs each get their own config file (and so their own state dir)."""

    def config_for(self, name: str, state_dir: Path, oci_cache_lines: List[str]) -> Path:
        path = self.buildroot / f"oci-cache-{name}.toml"
        write_plugin_config(path, state_dir)
        with path.open("a", encoding="utf-8") as config:
            config.write("".join(line + "\n" for line in oci_cache_lines))
        return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("pants-registry"))
    yield server
    server.stop()


@contextlib.contextmanager
def example_registry_repo(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[RegistryPluginRepo]:
    """A copy of examples/basic whose runs each get their own config (config_for); the
    daemons of every state dir under it are stopped by pid at the end."""
    require_pants()
    base = tmp_path_factory.mktemp(name)
    buildroot = base / "repo"
    shutil.copytree(EXAMPLE_REPO, buildroot)
    plugin_repo = RegistryPluginRepo(buildroot, base / "runs", base / "state-unused", buildroot / "unused.toml")
    try:
        yield plugin_repo
    finally:
        for directory in [*base.glob("state-*"), *base.glob("runs/state-*")]:
            for pid in plugin_repo.daemon_pids(directory):
                kill(pid)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryPluginRepo]:
    with example_registry_repo(tmp_path_factory, "pants-plugin-registry") as plugin_repo:
        yield plugin_repo


def _manifest_status(registry: RegistryServer, repository: str, tag: str) -> int:
    request = urllib.request.Request(
        registry.url(f"/v2/{repository}/manifests/{tag}"), method="HEAD", headers={"Accept": MANIFEST_TYPES}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _report(run: PantsRun, repo: PluginRepo, state_dir: Path) -> str:
    logs = "\n".join(
        (d / "daemon.log").read_text(errors="replace")[-3000:]
        for d in state_dir.glob("*") if (d / "daemon.log").is_file()
    )
    return f"{run.describe()}\ndaemon log:\n{logs}"


def test_the_cache_travels_through_the_registry_and_a_dead_registry_only_warns(
    repo: RegistryPluginRepo, registry: RegistryServer
) -> None:
    ref = f"type=registry,ref={registry.host}/{CACHE_REPOSITORY}:{CACHE_TAG}"
    scratch = repo.scratch.parent

    # (a) Machine A: an empty cache; the end of the run exports to the registry.
    assert _manifest_status(registry, CACHE_REPOSITORY, CACHE_TAG) == 404
    state_a = scratch / "state-a"
    config_a = repo.config_for("a", state_a, [f'cache_to = ["{ref}"]'])
    run_a = repo.run("a", config_file=config_a)
    assert run_a.returncode == 0, _report(run_a, repo, state_a)
    assert run_a.counters["remote_cache_write_successes"] == CACHEABLE_PROCESSES, _report(run_a, repo, state_a)
    assert run_a.summary is not None, _report(run_a, repo, state_a)
    hits, misses, _, written, export = run_a.summary.groups()
    assert (int(hits), int(misses)) == (0, CACHEABLE_PROCESSES) and written != "0B", _report(run_a, repo, state_a)
    assert export.startswith(f"exported {CACHEABLE_PROCESSES} entries ("), _report(run_a, repo, state_a)
    assert f"to {ref} in " in export, _report(run_a, repo, state_a)
    assert _manifest_status(registry, CACHE_REPOSITORY, CACHE_TAG) == 200, registry.log_tail()

    # (b) Machine B: a fresh state dir, a fresh local store, no local process cache; the
    # daemon imports the registry image and serves every remote-cacheable process.
    state_b = scratch / "state-b"
    config_b = repo.config_for("b", state_b, [f'cache_from = ["{ref}"]'])
    run_b = repo.run("b", "--no-local-cache", config_file=config_b)
    assert run_b.returncode == 0, _report(run_b, repo, state_b)
    requests = run_b.counters.get("remote_cache_requests", 0)
    assert requests > 0, _report(run_b, repo, state_b)
    assert run_b.counters.get("remote_cache_requests_cached", 0) == requests, _report(run_b, repo, state_b)
    for name in ("remote_cache_requests_uncached", "remote_cache_read_errors", "remote_store_missing_digest"):
        assert run_b.counters.get(name, 0) == 0, f"{name}\n{_report(run_b, repo, state_b)}"
    assert run_b.summary is not None, _report(run_b, repo, state_b)
    hits, misses, _, _, export_b = run_b.summary.groups()
    assert (int(hits), int(misses)) == (requests, 0), _report(run_b, repo, state_b)
    assert export_b.startswith("nothing to export to"), _report(run_b, repo, state_b)

    # (c) The registry is gone: the build still succeeds, with a warning.
    registry.stop()
    assert not alive(registry.process.pid)
    state_c = scratch / "state-c"
    config_c = repo.config_for("c", state_c, [f'cache_from = ["{ref}"]', f'cache_to = ["{ref}"]'])
    run_c = repo.run("c", "--no-local-cache", config_file=config_c)
    assert run_c.returncode == 0, _report(run_c, repo, state_c)
    assert "[WARN]" in run_c.output, _report(run_c, repo, state_c)
    assert f"export to {ref} FAILED: cannot reach {registry.host}" in run_c.output, _report(run_c, repo, state_c)
    assert run_c.counters["remote_cache_write_successes"] == CACHEABLE_PROCESSES, _report(run_c, repo, state_c)
    # The failed import reaches the console too (the summary line), not only daemon.log.
    assert f"cache-from {ref} FAILED to import: cannot reach" in run_c.output, _report(run_c, repo, state_c)
    daemon_log = "\n".join(p.read_text(errors="replace") for p in state_c.glob("*/daemon.log"))
    assert f"cache-from {ref}: cannot import it: cannot reach {registry.host}" in daemon_log, daemon_log[-3000:]
    assert UNAVAILABLE_WARNING not in run_c.output, _report(run_c, repo, state_c)
