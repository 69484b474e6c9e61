"""`oci-cache export | inspect | prune | serve` through a fault-injecting proxy
(tests/fault_proxy.py) in front of a real docker-registry on 127.0.0.1.

Under each fault kind — 500/503, 429 + Retry-After, stalls past the read timeout,
connection resets while the request or the answer is sent, truncated bodies, altered
bytes — at seeded rates:
- every command succeeds or fails with exit status 1 and a message, never a traceback;
- an export either completes or leaves the previous image at the ref: afterwards the
  ref (read without the proxy) lists exactly the old or the new entries, and a fresh
  `oci-cache serve --cache-from` on a new state dir serves every one of them byte-exact;
- a prune leaves a whole image (the old one, or a pruned one whose entries all serve);
- `serve --cache-from <proxy ref>` never serves a wrong byte while layer reads are
  corrupted or truncated, and serves everything once the faults stop.

CI runs a mix of every kind but stalls at a moderate rate, an unreadable image at the
ref, and three serve cases; `-m slow` runs each kind alone at 25/40/60 % (seeds 1-3),
the tag-move faults, and every serve case with three seeds. A case id names its seed;
replay one with
    .venv/bin/python -m pytest tests/reliability/test_registry_faults.py -m "slow or not slow" -s -k "truncate-seed3"
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from fault_proxy import API_PATH, BLOB_PATH, MANIFEST_PATH, FaultPlan, FaultRule, RegistryFaultProxy
from registry_fault_scenarios import (
    READ_TIMEOUT_SECONDS,
    Entry,
    action_set,
    assert_clean_outcome,
    check_ref_is_whole,
    fill_state_dir,
    image_actions,
    make_entries,
    oci_cache,
    read_entry,
)
from registry_fixtures import RegistryServer, registry_plain, unique_repo, write_docker_config  # noqa: F401
from server_fixtures import start_server

from oci_cache.cache_entries import parse_cache_from
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.importing.imported_images import CONTENT_ATTEMPTS

pytestmark = pytest.mark.registry

GET, PUT, HEAD = frozenset({"GET"}), frozenset({"PUT"}), frozenset({"HEAD"})
ANY_WRITE = frozenset({"POST", "PUT", "PATCH"})
STALL_SECONDS = 4.0  # > READ_TIMEOUT_SECONDS of the commands (2 s)


@dataclass(frozen=True)
class Case:
    name: str
    rules: Tuple[FaultRule, ...]
    seed: int = 1

    def plan(self, offset: int = 0) -> FaultPlan:
        return FaultPlan(seed=self.seed * 1000 + offset, rules=self.rules)

    def __str__(self) -> str:
        return f"{self.name}-seed{self.seed}"


def _rules_for(kind: str, rate: float) -> Tuple[FaultRule, ...]:
    if kind == "5xx":
        return (FaultRule("500", rate / 2, path=API_PATH), FaultRule("503", rate / 2))
    if kind == "429":
        return (FaultRule("429", rate, retry_after="1", limit=4),)  # each costs >= 1 s
    if kind == "stall":
        return (FaultRule("stall", rate, path=API_PATH, stall_seconds=STALL_SECONDS, limit=2),)
    if kind == "reset":
        return (
            FaultRule("reset_request", rate / 2, methods=ANY_WRITE | GET),
            FaultRule("reset_body", rate / 2, path=API_PATH),
        )
    if kind in ("truncate", "corrupt"):
        return (FaultRule(kind, rate, path=API_PATH),)
    if kind == "manifest-put-lost":  # the registry moves the tag, the client never hears it
        return (FaultRule("reset_body", 1.0, methods=PUT, path=MANIFEST_PATH, limit=1),)
    if kind == "read-corrupt-always":  # the image at the ref cannot be read: never replace it
        return (FaultRule("corrupt", 1.0, methods=GET, path=BLOB_PATH),)
    if kind == "manifest-put-refused":  # every tag move fails: the export must fail, the old image stay
        return (FaultRule("503", 1.0, methods=PUT, path=MANIFEST_PATH),)
    if kind == "mixed":
        return (
            FaultRule("503", rate / 6),
            FaultRule("429", rate / 6, retry_after="1", limit=2),
            FaultRule("reset_request", rate / 6, methods=ANY_WRITE),
            FaultRule("reset_body", rate / 6, path=API_PATH),
            FaultRule("truncate", rate / 6, path=API_PATH),
            FaultRule("corrupt", rate / 6, path=API_PATH),
        )
    raise ValueError(kind)


KINDS = ("5xx", "429", "stall", "reset", "truncate", "corrupt", "mixed")
TAG_KINDS = ("manifest-put-lost", "manifest-put-refused")  # rate-independent: one seed each
CI_CASES = [
    Case("mixed", _rules_for("mixed", 0.3), seed=1),  # every kind but stall, ~10 s
    Case("read-corrupt-always", _rules_for("read-corrupt-always", 1.0), seed=1),
]
SLOW_CASES = [
    Case(kind, _rules_for(kind, rate), seed=seed)
    for kind in KINDS
    for seed, rate in ((1, 0.25), (2, 0.4), (3, 0.6))
    if (kind, seed) != ("mixed", 1)
] + [Case(kind, _rules_for(kind, 1.0), seed=1) for kind in TAG_KINDS]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def entries() -> Tuple[List[Entry], List[Entry]]:
    """(the previous export's entries, the entries added since)."""
    return make_entries(8, seed=11), make_entries(8, seed=12)


@pytest.fixture(scope="module")
def state_dirs(tmp_path_factory: pytest.TempPathFactory, entries: Tuple[List[Entry], List[Entry]]) -> Tuple[Path, Path]:
    """Stopped daemons' state dirs of two machines: A holds the old entries, B only the new
    ones — so an export from B that dropped the image at the ref instead of merging it
    would lose the old entries, and the check would see it."""
    old, new = entries
    base = tmp_path_factory.mktemp("fault-states")
    fill_state_dir(base / "a", old)
    fill_state_dir(base / "b", new)
    return base / "a", base / "b"


@pytest.fixture
def proxy(registry_plain: RegistryServer) -> Iterator[RegistryFaultProxy]:
    proxy = RegistryFaultProxy(registry_plain.host)
    yield proxy
    proxy.stop()


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    return write_docker_config(tmp_path / "docker-config")


@dataclass(frozen=True)
class FaultScene:
    """What every case here works with: the registry, the proxy in front of it, a fresh
    repository, scratch space, a Docker config, and the two machines' state dirs and entries."""

    registry: RegistryServer
    proxy: RegistryFaultProxy
    repo: str
    tmp_path: Path
    docker_config: Path
    state_dirs: Tuple[Path, Path]
    entries: Tuple[List[Entry], List[Entry]]


@pytest.fixture
def scene(
    registry_plain: RegistryServer,  # noqa: F811
    proxy: RegistryFaultProxy,
    unique_repo: str,  # noqa: F811
    tmp_path: Path,
    docker_config: Path,
    state_dirs: Tuple[Path, Path],
    entries: Tuple[List[Entry], List[Entry]],
) -> FaultScene:
    return FaultScene(registry_plain, proxy, unique_repo, tmp_path, docker_config, state_dirs, entries)


# --------------------------------------------------------------------------- export, inspect, prune


def _export_inspect_prune(case: Case, scene: FaultScene) -> Dict[str, object]:
    registry, proxy, repo, tmp_path = scene.registry, scene.proxy, scene.repo, scene.tmp_path
    docker_config, state_dirs, entries = scene.docker_config, scene.state_dirs, scene.entries
    old, new = entries
    all_entries = old + new
    direct_ref, proxied_ref = f"{registry.host}/{repo}:c", f"{proxy.host}/{repo}:c"
    state_a, state_b = (tmp_path / "a", tmp_path / "b")
    shutil.copytree(state_dirs[0], state_a)
    shutil.copytree(state_dirs[1], state_b)

    # The previous image, written without faults.
    baseline = oci_cache(docker_config, "export", "--state-dir", str(state_a), "--cache-to", f"type=registry,ref={direct_ref}")
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    previous = action_set(old)
    assert image_actions(direct_ref) == previous

    # The new export, through the faults: it completes, or the previous image stays whole.
    proxy.set_plan(case.plan(1))
    exported = oci_cache(
        docker_config, "export", "--state-dir", str(state_b), "--cache-to", f"type=registry,ref={proxied_ref}"
    )
    proxy.clear()
    assert_clean_outcome(exported, f"export under {case}")
    allowed = [action_set(all_entries)] if exported.returncode == 0 else [previous, action_set(all_entries)]
    if case.name in ("manifest-put-refused", "read-corrupt-always"):
        assert exported.returncode == 1 and "FAILED" in exported.stdout, exported.stdout + exported.stderr
        allowed = [previous]
    listed = check_ref_is_whole(tmp_path / "verify-export", direct_ref, all_entries, allowed)

    # inspect through the faults: the right numbers, or a clear failure.
    proxy.set_plan(case.plan(2))
    inspected = oci_cache(docker_config, "inspect", proxied_ref, "--json")
    proxy.clear()
    assert_clean_outcome(inspected, f"inspect under {case}")
    if inspected.returncode == 0:
        assert json.loads(inspected.stdout)["entries"]["actions"] == len(listed)
    else:
        assert inspected.stderr.strip().splitlines()[-1].startswith("oci-cache inspect: "), inspected.stderr

    # prune through the faults to about half the entries: the ref keeps a whole image.
    stored = json.loads(oci_cache(docker_config, "inspect", direct_ref, "--json").stdout)["bytes"]["blobs"]
    proxy.set_plan(case.plan(3))
    pruned = oci_cache(docker_config, "prune", proxied_ref, "--keep-bytes", f"{stored // 2}B", "--json")
    proxy.clear()
    assert_clean_outcome(pruned, f"prune under {case}")
    after = image_actions(direct_ref)
    assert after <= listed, "prune added entries"
    if pruned.returncode == 0:
        assert len(after) < len(listed), pruned.stdout
    check_ref_is_whole(tmp_path / "verify-prune", direct_ref, all_entries, [after])
    return {
        "export": _outcome(exported),
        "inspect": _outcome(inspected),
        "prune": _outcome(pruned),
        "requests": len(proxy.requests),
        "injected": dict(proxy.injected_kinds()),
    }


def _outcome(result: "subprocess.CompletedProcess[str]") -> str:
    if result.returncode == 0:
        return "ok"
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return "failed: " + (lines[-1][:300] if lines else "")


def _check_faults_were_injected(case: Case, proxy: RegistryFaultProxy, outcome: Dict[str, object]) -> None:
    print(f"{case}: {case.plan().describe()} -> {outcome}")
    assert proxy.injected, f"{case}: no fault was injected in {len(proxy.requests)} requests"


@pytest.mark.parametrize(
    "case",
    [*CI_CASES, *(pytest.param(case, marks=pytest.mark.slow) for case in SLOW_CASES)],
    ids=str,
)
def test_export_inspect_prune_under_faults(case: Case, scene: FaultScene) -> None:
    """CI runs CI_CASES; the long run (-m slow) the whole matrix, SLOW_CASES."""
    outcome = _export_inspect_prune(case, scene)
    _check_faults_were_injected(case, scene.proxy, outcome)


# --------------------------------------------------------------------------- serve --cache-from


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _layer_pattern(direct_ref: str) -> str:
    """A path regex matching GETs of the image's data layers (not its config or index)."""
    target = open_entry_target(parse_cache_from(f"type=registry,ref={direct_ref}"))
    try:
        image = load_cache_image(target)
        return "/blobs/(" + "|".join(re.escape(layer.digest) for layer in image.layers) + ")"
    finally:
        target.close()


SERVE_CASES = {
    # The registry keeps answering wrong bytes for every data layer read.
    "corrupt-always": lambda layers: (FaultRule("corrupt", 1.0, methods=GET, path=layers),),
    "truncate-always": lambda layers: (FaultRule("truncate", 1.0, methods=GET, path=layers),),
    # Transient trouble on every read path, then the faults stop.
    "transient-mix": lambda layers: (
        # At most CONTENT_ATTEMPTS - 1 altered answers: a blob whose every read comes back
        # altered is marked bad in that image, by design (corrupt-always covers that).
        FaultRule("corrupt", 0.25, methods=GET, path=BLOB_PATH, limit=CONTENT_ATTEMPTS - 1),
        FaultRule("truncate", 0.25, methods=GET, path=BLOB_PATH, limit=3),
        FaultRule("reset_body", 0.25, methods=GET, path=BLOB_PATH, limit=3),
        FaultRule("503", 0.25, path=API_PATH, limit=3),
    ),
    # The manifest, config and index answers are altered once each while the server starts.
    "corrupt-image-documents-once": lambda layers: (
        FaultRule("corrupt", 1.0, methods=GET, path=MANIFEST_PATH, limit=1),
        FaultRule("corrupt", 1.0, methods=GET, path=BLOB_PATH, limit=2),
    ),
    # Two layer reads get no answer until past the read timeout.
    "stall-twice": lambda layers: (
        FaultRule("stall", 1.0, methods=GET, path=layers, stall_seconds=STALL_SECONDS, limit=2),
    ),
    # The manifest is always altered: nothing is imported, nothing served.
    "corrupt-manifest-always": lambda layers: (FaultRule("corrupt", 1.0, methods=GET, path=MANIFEST_PATH),),
}


RECOVERY_SECONDS = 15.0
TRANSIENT_SERVE_CASES = ("truncate-always", "transient-mix", "corrupt-image-documents-once", "stall-twice")
"""After these, everything must be served: truncation and resets are failures to reach
the registry (a miss this time), and bytes damaged once are read again. A blob whose
every read is corrupt stays a miss for that image (it is marked bad)."""


def _serve_under_faults(name: str, seed: int, scene: FaultScene) -> Dict[str, int]:
    registry, proxy, repo, tmp_path = scene.registry, scene.proxy, scene.repo, scene.tmp_path
    docker_config, state_dirs, entries = scene.docker_config, scene.state_dirs, scene.entries
    all_entries = entries[1]  # the entries of state dir B
    direct_ref, proxied_ref = f"{registry.host}/{repo}:c", f"{proxy.host}/{repo}:c"
    state = tmp_path / "b"
    shutil.copytree(state_dirs[1], state)
    exported = oci_cache(docker_config, "export", "--state-dir", str(state), "--cache-to", f"type=registry,ref={direct_ref}")
    assert exported.returncode == 0, exported.stdout + exported.stderr

    proxy.set_plan(FaultPlan(seed=seed, rules=SERVE_CASES[name](_layer_pattern(direct_ref))))
    with _environment(OCI_CACHE_REGISTRY_READ_TIMEOUT=READ_TIMEOUT_SECONDS):  # the server inherits it
        server = start_server(tmp_path / "reader", "--cache-from", f"type=registry,ref={proxied_ref}")
    try:
        # read_entry fails the test on any wrong byte; misses are allowed under faults.
        during = [read_entry(server, entry) for entry in all_entries]
        injected = len(proxy.injected)
        proxy.clear()
        after = [read_entry(server, entry) for entry in all_entries]
        deadline = time.monotonic() + RECOVERY_SECONDS
        while name in TRANSIENT_SERVE_CASES and after.count("ok") < len(after) and time.monotonic() < deadline:
            time.sleep(1.0)  # an import that failed at start-up is tried again after 5 s
            after = [read_entry(server, entry) for entry in all_entries]
    finally:
        server.stop()
    assert server.is_running() is False
    assert "Traceback" not in server.log_text(), server.log_text()[-4000:]
    assert injected > 0, f"{name}: no fault injected in {len(proxy.requests)} requests"
    counts = {"during_ok": during.count("ok"), "after_ok": after.count("ok"), "entries": len(all_entries), "injected": injected}
    print(f"serve {name} seed {seed}: {counts}")
    if name in TRANSIENT_SERVE_CASES:
        assert after.count("ok") == len(all_entries), f"{name}: not everything served once the faults stopped: {counts}"
    return counts


CI_SERVE_CASES = ["transient-mix", "corrupt-always", "corrupt-image-documents-once"]
SERVE_PARAMS = [
    *(pytest.param(name, 1, id=name) for name in CI_SERVE_CASES),
    *(
        pytest.param(name, seed, id=f"{name}-seed{seed}", marks=pytest.mark.slow)
        for name in SERVE_CASES
        for seed in (1, 2, 3)
        if not (name in CI_SERVE_CASES and seed == 1)
    ),
]


@pytest.mark.parametrize("name,seed", SERVE_PARAMS)
def test_serve_never_serves_a_corrupt_byte(name: str, seed: int, scene: FaultScene) -> None:
    """CI runs CI_SERVE_CASES with seed 1; the long run (-m slow) every case with seeds 1-3."""
    _serve_under_faults(name, seed, scene)
