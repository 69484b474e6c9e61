"""Real Pants 2.17.1 builds through the plugin, with cache_from/cache_to pointing at a
fault-injecting proxy (tests/fault_proxy.py) in front of a real docker-registry: the
build never fails because of the cache, nothing wrong is served (every test passes and
Pants reports no read error it could not recover from), and the ref is whole afterwards.

CI runs one scenario: a cold build exporting through 503s, resets, truncated and
altered answers, then a second machine importing through the same faults. `-m slow`
runs a build per fault kind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from fault_proxy import API_PATH, BLOB_PATH, FaultPlan, FaultRule, RegistryFaultProxy  # noqa: E402
from registry_fixtures import RegistryServer, start_registry  # noqa: E402
from pants_runs import kill  # noqa: E402
from test_pants_plugin import CACHEABLE_PROCESSES, PantsRun  # noqa: E402
from test_pants_plugin_registry import RegistryPluginRepo, _report, example_registry_repo  # noqa: E402

from oci_cache.cache_entries import parse_cache_from  # noqa: E402
from oci_cache.cache_image import load_cache_image, open_entry_target  # noqa: E402
from oci_cache.cache_image.errors import CacheImageNotFoundError  # noqa: E402

pytestmark = [pytest.mark.pants, pytest.mark.registry]

ANY_WRITE = frozenset({"POST", "PUT", "PATCH"})
GET = frozenset({"GET"})


def _mixed(rate: float) -> Tuple[FaultRule, ...]:
    return (
        FaultRule("503", rate / 5, path=API_PATH),
        FaultRule("reset_request", rate / 5, methods=ANY_WRITE),
        FaultRule("reset_body", rate / 5, path=API_PATH),
        FaultRule("truncate", rate / 5, methods=GET, path=BLOB_PATH),
        FaultRule("corrupt", rate / 5, methods=GET, path=BLOB_PATH),
    )


SLOW_PLANS = {
    "5xx": (FaultRule("500", 0.2, path=API_PATH), FaultRule("503", 0.2, path=API_PATH)),
    "429": (FaultRule("429", 0.3, retry_after="1", limit=5),),
    "stall": (FaultRule("stall", 0.2, path=API_PATH, stall_seconds=4.0, limit=3),),
    "reset": (FaultRule("reset_request", 0.2, methods=ANY_WRITE), FaultRule("reset_body", 0.2, path=API_PATH)),
    "truncate": (FaultRule("truncate", 0.4, path=API_PATH),),
    "corrupt": (FaultRule("corrupt", 0.4, path=API_PATH),),
    "corrupt-always": (FaultRule("corrupt", 1.0, methods=GET, path=BLOB_PATH),),
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("faults-registry"))
    yield server
    server.stop()


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[RegistryFaultProxy]:
    proxy = RegistryFaultProxy(registry.host)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryPluginRepo]:
    previous = os.environ.get("OCI_CACHE_REGISTRY_READ_TIMEOUT")
    os.environ["OCI_CACHE_REGISTRY_READ_TIMEOUT"] = "2"  # the daemons inherit it: stalls end in 2 s
    try:
        with example_registry_repo(tmp_path_factory, "pants-registry-faults") as plugin_repo:
            yield plugin_repo
    finally:
        if previous is None:
            os.environ.pop("OCI_CACHE_REGISTRY_READ_TIMEOUT", None)
        else:
            os.environ["OCI_CACHE_REGISTRY_READ_TIMEOUT"] = previous


def _ref_entries(registry: RegistryServer, repository: str) -> int:
    """How many actions the image at the ref lists, read without faults (-1: none there).
    Loading it checks the manifest, config and index by digest."""
    target = open_entry_target(parse_cache_from(f"type=registry,ref={registry.host}/{repository}:main"))
    try:
        return load_cache_image(target).index.action_count
    except CacheImageNotFoundError:
        return -1
    finally:
        target.close()


def _build(
    repo: RegistryPluginRepo, name: str, lines: list, *extra: str
) -> Tuple[PantsRun, Path]:
    state = repo.scratch / f"state-{name}"
    config = repo.config_for(name, state, lines)
    run = repo.run(name, *extra, config_file=config)
    for pid in repo.daemon_pids(state):  # each run's daemon ends with it: no export at a later exit
        kill(pid)
    return run, state


def _check_build(run: PantsRun, repo: RegistryPluginRepo, state: Path) -> None:
    assert run.returncode == 0, _report(run, repo, state)
    assert "Traceback" not in run.output, _report(run, repo, state)
    daemon_logs = "\n".join(p.read_text(errors="replace") for p in state.glob("*/daemon.log"))
    assert "Traceback" not in daemon_logs, daemon_logs[-4000:]
    # Every test ran and passed (from the cache or locally): no wrong output reached Pants.
    assert "✓" in run.output or "succeeded" in run.output, _report(run, repo, state)


def _scenario(
    name: str, rules: Tuple[FaultRule, ...], seed: int, repo: RegistryPluginRepo, registry: RegistryServer,
    proxy: RegistryFaultProxy
) -> None:
    repository = f"faults/{name}-{seed}"
    proxied = f"type=registry,ref={proxy.host}/{repository}:main"

    # Machine A: a cold build; its end-of-run export goes through the faults.
    proxy.set_plan(FaultPlan(seed=seed, rules=rules))
    run_a, state_a = _build(repo, f"{name}-{seed}-a", [f'cache_to = ["{proxied}"]'])
    _check_build(run_a, repo, state_a)
    exported = _ref_entries(registry, repository)
    assert exported in (-1, CACHEABLE_PROCESSES), f"the ref holds {exported} entries\n{_report(run_a, repo, state_a)}"
    if exported == -1:  # the export failed under the faults: it said so, and the build went on
        assert "FAILED" in run_a.output, _report(run_a, repo, state_a)
        proxy.clear()
        run_a, state_a = _build(repo, f"{name}-{seed}-a2", [f'cache_to = ["{proxied}"]'])
        _check_build(run_a, repo, state_a)
        assert _ref_entries(registry, repository) == CACHEABLE_PROCESSES, _report(run_a, repo, state_a)

    # Machine B: fresh state and local store; the daemon imports and reads through the faults.
    proxy.set_plan(FaultPlan(seed=seed + 1, rules=rules))
    run_b, state_b = _build(repo, f"{name}-{seed}-b", [f'cache_from = ["{proxied}"]'], "--no-local-cache")
    _check_build(run_b, repo, state_b)
    counters = run_b.counters
    print(
        f"pants under {name} (seed {seed}): A export -> {exported} entries; B hits "
        f"{counters.get('remote_cache_requests_cached', 0)}/{counters.get('remote_cache_requests', 0)}, "
        f"read errors {counters.get('remote_cache_read_errors', 0)}; faults injected {dict(proxy.injected_kinds())} "
        f"in {len(proxy.requests)} requests; {run_a.seconds:.0f}s + {run_b.seconds:.0f}s"
    )
    assert proxy.injected, "no fault was injected"


def test_pants_builds_through_a_faulty_registry(
    repo: RegistryPluginRepo, registry: RegistryServer, proxy: RegistryFaultProxy
) -> None:
    _scenario("mixed", _mixed(0.3), 1, repo, registry, proxy)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_PLANS))
def test_pants_builds_through_each_registry_fault(
    name: str, repo: RegistryPluginRepo, registry: RegistryServer, proxy: RegistryFaultProxy
) -> None:
    _scenario(name, SLOW_PLANS[name], 7, repo, registry, proxy)
