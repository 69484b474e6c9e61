"""Real Pants 2.17.1 against a real `oci-cache serve`.

The bundled example repository (examples/basic) is built twice, as two CI machines
would: the first build fills the cache, the second one starts from an empty local store
with the local cache disabled. Every remote-cacheable process of the second build must
be served from the cache, and its outputs must be byte-identical to the first build's.

Pants comes from .venv-pants (`scripts/bootstrap.sh --pants`). Without it the test is
skipped, unless OCI_CACHE_REQUIRE_PANTS is set (scripts/test.sh sets it), then it fails.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from pants_runs import (
    CACHEABLE_PROCESSES,
    EXAMPLE_REPO,
    HDRHISTOGRAM_HINT,
    PantsRun,
    require_pants,
    run_pants_command,
)

GOALS = ["export-codegen", "test", "::"]
# --stats-log counters that must stay 0 when every process is served from the cache.
ZERO_ON_A_FULLY_CACHED_BUILD = (
    "remote_cache_requests_uncached",
    "remote_cache_read_errors",
    "remote_cache_request_timeouts",
    "remote_cache_speculation_local_completed_first",  # local execution beat the cache
    "remote_cache_write_attempts",  # something ran locally and was uploaded again
    "remote_store_missing_digest",
    "remote_store_request_timeouts",
    "backtrack_attempts",
)

pytestmark = pytest.mark.pants


@pytest.fixture
def pants() -> Path:
    """The Pants executable (skips or fails the test before any server is started)."""
    return require_pants()


def run_pants(pants: Path, buildroot: Path, scratch: Path, name: str, store_address: str, *extra_args: str) -> PantsRun:
    """One `--no-pantsd` Pants run with every directory of its own under `scratch/name`."""
    run_dir = scratch / name
    distdir = buildroot / f"dist-{name}"  # Pants requires the distdir inside the build root
    argv: List[str] = [
        str(pants),
        "--no-pantsd",
        "--no-pantsrc",
        "--no-watch-filesystem",
        f"--pants-workdir={run_dir / 'workdir'}",
        f"--pants-distdir={distdir}",
        f"--pants-subprocessdir={run_dir / 'pids'}",
        f"--local-store-dir={run_dir / 'local-store'}",
        f"--named-caches-dir={run_dir / 'named-caches'}",
        f"--local-execution-root-dir={run_dir / 'sandboxes'}",
        f"--remote-store-address={store_address}",
        "--remote-cache-read",
        "--remote-cache-write",
        "--stats-log",
        f"--ignore-warnings=['{HDRHISTOGRAM_HINT}']",
        *extra_args,
        *GOALS,
    ]
    (run_dir / "sandboxes").mkdir(parents=True, exist_ok=True)
    return run_pants_command(argv, buildroot, scratch, name)


def distdir_of(buildroot: Path, run: PantsRun) -> Path:
    return buildroot / f"dist-{run.name}"


def tree_contents(root: Path) -> Dict[str, Tuple[bytes, bool]]:
    """{relative path: (bytes, executable)} of every file under root."""
    contents: Dict[str, Tuple[bytes, bool]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            executable = bool(path.stat().st_mode & stat.S_IXUSR)
            contents[path.relative_to(root).as_posix()] = (path.read_bytes(), executable)
    return contents


def counter(run: PantsRun, name: str) -> int:
    assert name in run.counters, f"--stats-log printed no {name}\n{run.describe()}"
    return run.counters[name]


def test_second_build_is_served_entirely_from_the_cache(pants: Path, running_server, tmp_path: Path) -> None:
    buildroot = tmp_path / "repo"
    shutil.copytree(EXAMPLE_REPO, buildroot)
    scratch = tmp_path / "pants"

    def report(run: PantsRun) -> str:
        return f"{run.describe()}\nserver log tail:\n{running_server.log_text()[-4000:]}"

    # A cold cache: every process misses, runs locally and is written to the cache.
    first = run_pants(pants, buildroot, scratch, "first", running_server.address)
    assert first.returncode == 0, report(first)
    assert counter(first, "remote_cache_requests") == CACHEABLE_PROCESSES, report(first)
    assert counter(first, "remote_cache_requests_uncached") == CACHEABLE_PROCESSES, report(first)
    assert counter(first, "remote_cache_read_errors") == 0, report(first)
    assert counter(first, "remote_cache_write_attempts") == CACHEABLE_PROCESSES, report(first)
    assert counter(first, "remote_cache_write_successes") == CACHEABLE_PROCESSES, report(first)
    assert counter(first, "remote_cache_write_errors") == 0, report(first)

    # Another machine: an empty local store, and no local process cache.
    second = run_pants(pants, buildroot, scratch, "second", running_server.address, "--no-local-cache")
    assert second.returncode == 0, report(second)
    assert counter(second, "remote_cache_requests") == CACHEABLE_PROCESSES, report(second)
    nonzero = {name: counter(second, name) for name in ZERO_ON_A_FULLY_CACHED_BUILD if counter(second, name)}
    assert nonzero == {}, report(second)
    assert counter(second, "remote_cache_requests_cached") == CACHEABLE_PROCESSES, report(second)

    first_outputs = tree_contents(distdir_of(buildroot, first))
    second_outputs = tree_contents(distdir_of(buildroot, second))
    assert len(first_outputs) >= 15, sorted(first_outputs)
    assert len(first_outputs["codegen/gen/big/numbers.txt"][0]) > 4 * 1024 * 1024
    assert first_outputs["codegen/gen/tiny/empty.txt"] == (b"", False)
    assert first_outputs["codegen/gen/tree/x/y/hello.sh"][1], "the executable bit was lost"
    assert sorted(second_outputs) == sorted(first_outputs)
    differing = [path for path in first_outputs if first_outputs[path] != second_outputs[path]]
    assert differing == [], f"outputs that differ between the builds: {differing}"

    print(
        f"\npants e2e: {CACHEABLE_PROCESSES} remote-cacheable processes; first build {first.seconds:.1f}s, "
        f"second build (all from the cache) {second.seconds:.1f}s"
    )


def test_the_stats_log_counters_are_read() -> None:
    output = (
        "12:00:00.00 [INFO] Wrote dist/codegen\n"
        "12:00:00.01 [INFO] Counters:\n"
        "  remote_cache_requests: 15\n"
        "  remote_cache_requests_cached: 14\n"
        "12:00:00.02 [INFO] Observation histogram summaries:\n"
    )
    assert PantsRun("x", 0, output, 1.0).counters == {"remote_cache_requests": 15, "remote_cache_requests_cached": 14}
    assert PantsRun("x", 0, "no stats here", 1.0).counters == {}
