#!/usr/bin/env python3
"""The fresh CI machine over a wide-area link: Pants 2.17.1 served by the plugin from a registry
across a simulated WAN, against a remote REAPI server (BuildGrid) across the same link, and
against Pants' own warm local cache.

    .venv/bin/python bench/wan_bench.py                 # both repos, RTT 40 and 100 ms, 3 rounds
    .venv/bin/python bench/wan_bench.py --rounds 5 --rtt-ms 40 --repo generated
    #   --rtt-ms MS (repeatable)   --setup-ms MS (default 2 x RTT)   --mbit 400
    #   --repo basic|generated (repeatable); logs stay in .cache/wan-bench/run until the next run
    #   --sources DIR   measure another src/python (e.g. `git archive` of an older commit)

(From a fresh clone it runs scripts/bootstrap.sh --pants first when .venv or .venv-pants is
missing, and creates BuildGrid 0.4.4's venv with pyenv's Python 3.11 in .cache/bench/bgvenv,
shared with bench/pants_bench.sh; BUILDGRID_VENV=DIR uses another.)

The link (bench/wan_link.py, in this process): half a round trip on every chunk each way, one
400 Mbit/s token bucket per direction, a set-up cost on every new connection (TCP + TLS), and
a registry front that answers each blob GET with a 307 to a second "storage" listener that
relays the same request, Range and all, to the same registry (as GHCR, ECR and Docker Hub
redirect to S3 or a CDN). The registry is Debian's docker-registry; the peer is BuildGrid 0.4.4
in memory. Both are seeded directly (not across the link) by one cold run each; then for each
RTT, N rounds of:

    start-up   `pants --version` before and after the round's builds (Pants' own start-up;
               the mean of the two is subtracted from the round's builds: "net")
    (c) local  Pants' local store from a cold run, no remote cache (the floor)
    (b) peer   Pants pointed at BuildGrid across the link (remote_store_address,
               remote_cache_read/write), fresh local store, --no-local-cache
    (a) plugin the pants_oci_cache plugin, cache_from/cache_to the registry across the
               link, on a fresh machine: fresh state dir (the run launches the daemon, which
               imports the image), fresh local store, --no-local-cache

all with --no-pantsd and fresh Pants directories. Printed per repo and RTT: medians of wall
and net times, hits of the remote-cacheable processes (from --stats-log), cache timeouts,
races lost to local execution (remote_cache_speculation_local_completed_first), the
ratios with their targets, and for (a) the bytes that crossed the link from the registry
against the index (manifest + config + index layer) + what the daemon served to Pants.

Repos: `basic` is examples/basic; `generated` is examples/basic plus 60 generated
shell_commands (12 chains of 5; each chain has one output of 1-6 MiB, the rest 64 KiB; the
bytes are slices of a random seed file, so they are incompressible and deterministic).

Exit status 0 whether or not targets are met; 1 when a run fails. Every process it starts is
stopped by PID at the end (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wan_link import LinkCounts, RegistryFront, TcpRelay, WanLink  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / ".cache" / "wan-bench"
WORK = BENCH_DIR / "run"
PANTS = REPO_ROOT / ".venv-pants" / "bin" / "pants"
OCI_CACHE = REPO_ROOT / ".venv" / "bin" / "oci-cache"
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
BG_VENV = Path(os.environ.get("BUILDGRID_VENV", str(REPO_ROOT / ".cache" / "bench" / "bgvenv")))
GOALS = ["export-codegen", "test", "::"]
PANTS_TIMEOUT = 900

COUNTERS = (
    "remote_cache_requests",
    "remote_cache_requests_cached",
    "remote_cache_requests_uncached",
    "remote_cache_read_errors",
    "remote_cache_request_timeouts",
    "remote_cache_speculation_local_completed_first",
    "remote_cache_speculation_remote_completed_first",
    "local_cache_requests",
    "local_cache_requests_cached",
)


def log(message: str) -> None:
    print(f"wan_bench: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SystemExit(f"wan_bench: {name} exited during start-up (status {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"wan_bench: {name} did not listen on {port} within {timeout:.0f} s")
            time.sleep(0.05)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --------------------------------------------------------------------------- prerequisites


def ensure_prerequisites() -> None:
    if not (PANTS.exists() and OCI_CACHE.exists()):
        log("running scripts/bootstrap.sh --pants ...")
        subprocess.run([str(REPO_ROOT / "scripts" / "bootstrap.sh"), "--pants"], check=True)
    if shutil.which("docker-registry") is None:
        raise SystemExit("wan_bench: docker-registry is not installed (Debian package docker-registry)")
    if not (BG_VENV / "bin" / "bgd").exists():
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() or str(Path.home() / ".pyenv")
        candidates = sorted(glob.glob(f"{root}/versions/3.11.*/bin/python3.11")) or [shutil.which("python3.11") or ""]
        python311 = candidates[-1]
        if not python311:
            raise SystemExit("wan_bench: BuildGrid 0.4.4 needs Python 3.11 (pyenv install 3.11)")
        log(f"creating BuildGrid's venv in {BG_VENV} ({python311}; pip install buildgrid==0.4.4) ...")
        BG_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python311, "-m", "venv", str(BG_VENV)], check=True)
        install_log = BG_VENV.parent / "bgvenv-install.log"
        with open(install_log, "wb") as out:
            status = subprocess.run([str(BG_VENV / "bin" / "pip"), "install", "-q", "buildgrid==0.4.4"], stdout=out, stderr=out).returncode
        if status != 0:
            shutil.rmtree(BG_VENV, ignore_errors=True)
            raise SystemExit(f"wan_bench: pip install buildgrid failed; see {install_log}")


# --------------------------------------------------------------------------- servers


class Servers:
    """docker-registry and BuildGrid on free loopback ports, stopped by PID."""

    def __init__(self) -> None:
        self.processes: List[subprocess.Popen] = []
        self.registry_port = free_port()
        storage = WORK / "registry" / "storage"
        storage.mkdir(parents=True)
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{self.registry_port}", "secret": os.urandom(16).hex()},
            "health": {"storagedriver": {"enabled": False}},
        }
        (WORK / "registry" / "config.yml").write_text(json.dumps(config))
        self._start(["docker-registry", "serve", str(WORK / "registry" / "config.yml")], "registry", self.registry_port)
        self.buildgrid_port = free_port()
        (WORK / "buildgrid.yml").write_text(BUILDGRID_CONFIG.format(port=self.buildgrid_port))
        self._start([str(BG_VENV / "bin" / "bgd"), "server", "start", str(WORK / "buildgrid.yml")], "buildgrid", self.buildgrid_port)

    def _start(self, argv: List[str], name: str, port: int) -> None:
        with open(WORK / f"{name}.log", "wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(process)
        wait_for_port(port, process, name)

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process)


BUILDGRID_CONFIG = """\
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
storages:
  - !lru-storage &memory
    size: 4096M
caches:
  - !lru-action-cache &memory-ac
    storage: *memory
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: true
instances:
  - name: ""
    services:
      - !cas
        storage: *memory
      - !bytestream
        storage: *memory
      - !action-cache
        cache: *memory-ac
"""


# --------------------------------------------------------------------------- repos


CHAINS = 12
CHAIN_LENGTH = 5
SMALL_OUTPUT = 64 * 1024
SEED_BYTES = 8 << 20


def generated_build_file() -> str:
    """12 chains of 5 shell_commands; step 2 of chain c writes (c % 6 + 1) MiB, the others 64 KiB."""
    rng = random.Random(10)
    lines = [
        "# Generated by bench/wan_bench.py: 12 chains of 5 remote-cacheable processes. Each step",
        "# copies a slice of seed.bin (random bytes) and depends on the step before it.",
        "",
        'files(name="seed", sources=["seed.bin"])',
        "",
    ]
    for chain in range(CHAINS):
        for step in range(CHAIN_LENGTH):
            size = ((chain % 6) + 1) << 20 if step == 1 else SMALL_OUTPUT
            offset = rng.randrange(0, SEED_BYTES - size)
            deps = ['":seed"'] + ([f'":c{chain}-s{step - 1}"'] if step else [])
            lines += [
                "shell_command(",
                f'    name="c{chain}-s{step}",',
                f'    command="sleep 0.5; mkdir -p out && tail -c +{offset + 1} seed.bin | head -c {size} > out/c{chain}-s{step}.bin",',
                '    tools=["sleep", "mkdir", "tail", "head"],',
                f"    execution_dependencies=[{', '.join(deps)}],",
                f'    output_files=["out/c{chain}-s{step}.bin"],',
                ")",
                "",
            ]
    return "\n".join(lines)


def make_repo(name: str) -> Path:
    root = WORK / "repos" / name
    shutil.copytree(REPO_ROOT / "examples" / "basic", root)
    if name == "generated":
        (root / "wan").mkdir()
        (root / "wan" / "seed.bin").write_bytes(random.Random(1).randbytes(SEED_BYTES))
        (root / "wan" / "BUILD").write_text(generated_build_file())
    return root


# --------------------------------------------------------------------------- Pants runs


RETRIED: List[str] = []
"""The failures after which a round was run again (printed at the end)."""


class RunFailed(Exception):
    """A Pants run exited non-zero (its round is run again once; see measure_repo)."""


@dataclass
class Run:
    name: str
    seconds: float
    counters: Dict[str, int]
    output: str
    goal_seconds: float = 0.0
    """From Pants' "specs are:" log line (its start-up done) to its last log line (the
    plugin's end-of-run summary, or the stats): the build itself, measured inside the run."""


_STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d\d) \[")


_DAEMON_WAIT = re.compile(r"oci-cache: the daemon answered in ([0-9.]+)s")


def daemon_wait_seconds(output: str) -> float:
    """How long Pants' start-up waited for the plugin's daemon (0 without the plugin)."""
    found = _DAEMON_WAIT.findall(output)
    return sum(float(x) for x in found)


def goal_seconds(output: str) -> float:
    start = end = None
    for line in output.splitlines():
        m = _STAMP.match(line)
        if not m:
            continue
        t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        if start is None and "specs are:" in line:
            start = t
        if start is not None:
            end = t
    if start is None or end is None:
        return float("nan")
    return (end - start) % 86400


class PantsRunner:
    def __init__(self, repo: Path, name: str) -> None:
        self.repo = repo
        self.dir = WORK / "runs" / name
        self.dir.mkdir(parents=True)
        self.state_dirs: List[Path] = []

    def run(self, name: str, args: Sequence[str], local_store: Optional[Path] = None, build: bool = True) -> Run:
        d = self.dir / name
        (d / "sandboxes").mkdir(parents=True)
        argv = [
            str(PANTS),
            "--no-pantsd",
            "--no-pantsrc",
            "--no-watch-filesystem",
            f"--pants-workdir={d / 'workdir'}",
            f"--pants-subprocessdir={d / 'pids'}",
            f"--named-caches-dir={d / 'named-caches'}",
            f"--local-execution-root-dir={d / 'sandboxes'}",
            f"--local-store-dir={local_store or d / 'local-store'}",
        ]
        if build:
            argv += [
                f"--pants-distdir={self.repo / ('dist-' + name)}",
                "--stats-log",
                "--ignore-warnings=['Please run with `--plugins=hdrhistogram`']",
                # Its one debug line ("specs are: ...") marks where Pants' start-up ends.
                # and the plugin's, how long the run waited for its daemon (before that line).
                "--log-levels-by-target={'pants.init.specs_calculator': 'debug', 'pants_oci_cache.auth': 'debug'}",
            ]
        argv += list(args) + (GOALS if build else ["--version"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PANTS_")}
        env["NO_SCIE_WARNING"] = "1"
        env["XDG_CACHE_HOME"] = str(self.dir / "xdg-cache")
        started = time.monotonic()
        completed = subprocess.run(
            argv, cwd=self.repo, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=PANTS_TIMEOUT
        )
        seconds = time.monotonic() - started
        output = completed.stdout.decode("utf-8", "replace")
        (self.dir / f"{name}.log").write_text(output)
        if completed.returncode != 0:
            tail = "\n".join(output.splitlines()[-30:])
            raise RunFailed(f"pants ({name}) failed with status {completed.returncode} (log {self.dir / (name + '.log')}):\n{tail}")
        return Run(name, seconds, parse_counters(output), output, goal_seconds(output) if build else 0.0)

    def plugin_args(self, config: Path, state_dir: Path) -> List[str]:
        self.state_dirs.append(state_dir)
        return [f"--pants-config-files=+['{config}']", f"--oci-cache-state-dir={state_dir}", "--remote-cache-read", "--remote-cache-write"]

    def stop_daemons(self, state_dir: Path) -> None:
        if not state_dir.exists():
            return
        subprocess.run(
            [str(OCI_CACHE), "stop", "--state-dir", str(state_dir), "--no-export", "--timeout", "20s"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for file in state_dir.glob("*/daemon.json"):
            try:
                pid = int(json.loads(file.read_text())["pid"])
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError, KeyError):
                pass

    def stop_all(self) -> None:
        for state_dir in self.state_dirs:
            self.stop_daemons(state_dir)


def parse_counters(output: str) -> Dict[str, int]:
    counters: Dict[str, int] = {}
    on = False
    for line in output.splitlines():
        if line.rstrip().endswith("Counters:"):
            on = True
            continue
        if on:
            m = re.match(r"^\s+([a-z_]+): (\d+)$", line)
            if m:
                counters[m.group(1)] = int(m.group(2))
            elif line.strip() and not line.startswith(" "):
                on = False
    return counters


def daemon_status(state_dir: Path) -> Dict[str, int]:
    completed = subprocess.run([str(OCI_CACHE), "status", "--state-dir", str(state_dir), "--json"], capture_output=True, text=True)
    try:
        daemons = json.loads(completed.stdout)["daemons"]
    except (ValueError, KeyError):
        return {}
    totals: Dict[str, int] = {}
    for daemon in daemons:
        for key in ("bytes_read", "blobs_read", "action_cache_hits", "action_cache_misses"):
            totals[key] = totals.get(key, 0) + int(daemon.get("status", {}).get(key, 0) or 0)
    return totals


def daemon_log_facts(state_dir: Path) -> Dict[str, float]:
    """From the daemon's log: the import and the hot-set prefetch (bytes read, seconds)."""
    facts: Dict[str, float] = {}
    for log_file in state_dir.glob("*/daemon.log"):
        text = log_file.read_text(errors="replace")
        for m in re.finditer(r"imported sha256:\S+ .* in ([0-9.]+)s", text):
            facts["import_seconds"] = float(m.group(1))
        for m in re.finditer(r"prefetched (\d+) blobs \((\d+) bytes; (\d+) bytes read in (\d+) requests, (\d+) failed\) in ([0-9.]+)s", text):
            facts["prefetch_blobs"] = facts.get("prefetch_blobs", 0) + int(m.group(1))
            facts["prefetch_read_bytes"] = facts.get("prefetch_read_bytes", 0) + int(m.group(3))
            facts["prefetch_requests"] = facts.get("prefetch_requests", 0) + int(m.group(4))
            facts["prefetch_seconds"] = float(m.group(6))
    return facts


def image_index_bytes(registry: str, repository: str, tag: str) -> int:
    """Manifest + config + index layer (the last layer) of the image at the ref, as the registry serves them."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    manifest = json.loads(body)
    return len(body) + int(manifest["config"]["size"]) + int(manifest["layers"][-1]["size"])


SOURCES = WORK / "src-python"
"""A copy of src/python taken when the bench starts: the plugin and its daemons run it (the
daemon's PYTHONPATH starts with the plugin's directory), so editing the work tree during a
run does not change what is measured."""


def hit_latency_probe(registry: str, front: str, repository: str, tag: str, work: Path, settle_seconds: float = 20.0) -> str:
    """A fresh `oci-cache serve` importing across the link; once its import (and prefetch,
    if any) is done, GetActionResult of every action of the image, one at a time: how long
    a hit for an imported entry takes once the import is done (the issue's <= 5 ms)."""
    import grpc  # the bench's own interpreter (.venv) has grpcio and oci_cache

    from oci_cache.cache_entries import parse_cache_from
    from oci_cache.cache_image.entry_targets import open_entry_target
    from oci_cache.cache_image.loaded_image import load_cache_image
    from oci_cache.reapi import remote_execution_pb2, remote_execution_pb2_grpc

    target = open_entry_target(parse_cache_from(f"type=registry,ref={registry}/{repository}:{tag}"))
    actions = [a.action for a in load_cache_image(target).index.iter_actions()]
    target.close()
    state = work / "probe-state"
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "probe-daemon.log"
    env = dict(os.environ, PYTHONPATH=str(SOURCES), PYTHONUNBUFFERED="1")
    started = time.monotonic()
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "oci_cache.cli.main", "serve", "--listen", "127.0.0.1:0", "--state-dir", str(state),
             "--cache-from", f"type=registry,ref={front}/{repository}:{tag}"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
    try:
        address = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not address:
            m = re.search(r"listening on grpc://(\S+)", log_path.read_text(errors="replace"))
            address = m.group(1) if m else ""
            time.sleep(0.02)
        if not address:
            return "hit-latency probe: the daemon did not start"
        imported = prefetched = None
        prefetching = any((SOURCES / "oci_cache" / "cache_image").glob("**/hot_set_prefetch.py"))
        deadline = time.monotonic() + settle_seconds
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            if imported is None and re.search(r"imported sha256:", text):
                imported = time.monotonic() - started
            if prefetched is None and "prefetched" in text:
                prefetched = time.monotonic() - started
            if imported is not None and (prefetched is not None or not prefetching):
                break
            time.sleep(0.02)
        channel = grpc.insecure_channel(address)
        stub = remote_execution_pb2_grpc.ActionCacheStub(channel)
        latencies: List[float] = []
        hits = 0
        for action in actions:
            t0 = time.perf_counter()
            try:
                stub.GetActionResult(remote_execution_pb2.GetActionResultRequest(action_digest=action.to_proto()), timeout=30)
                hits += 1
            except grpc.RpcError:
                pass
            latencies.append((time.perf_counter() - t0) * 1000)
        channel.close()
        latencies.sort()
        p50 = latencies[len(latencies) // 2] if latencies else float("nan")
        return (
            f"hit latency once imported (fresh daemon, {len(actions)} actions one at a time): p50 {p50:.1f} ms, max {latencies[-1]:.1f} ms, "
            f"{hits} hits; import done {imported if imported is not None else float('nan'):.2f} s after start"
            + (f", prefetch done {prefetched:.2f} s" if prefetched is not None else ", no prefetch")
        )
    finally:
        stop_process(process)


def plugin_config(path: Path, ref: str) -> Path:
    path.write_text(
        "[GLOBAL]\n"
        f'pythonpath = ["{SOURCES}"]\n'
        'backend_packages.add = ["pants_oci_cache"]\n\n'
        "[oci-cache]\n"
        f'cache_from = ["{ref}"]\n'
        f'cache_to = ["{ref}"]\n'
        f'python = "{VENV_PYTHON}"\n'
    )
    return path


# --------------------------------------------------------------------------- the measurement


@dataclass
class Sample:
    seconds: float
    net: float
    counters: Dict[str, int]
    goal: float = 0.0
    fetched: Optional[LinkCounts] = None
    index_bytes: int = 0
    served_bytes: int = 0
    summary: str = ""
    daemon: Dict[str, float] = field(default_factory=dict)
    launch: float = 0.0
    """(a): how long Pants' start-up waited for the daemon; already in `goal`."""


@dataclass
class Series:
    label: str
    samples: List[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def counter_range(self, name: str) -> str:
        values = sorted(s.counters.get(name, 0) for s in self.samples)
        return f"{values[0]}" if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def plugin_summary(output: str) -> str:
    found = re.findall(r"oci-cache: \d+ hits?,.*", output)
    return found[-1].strip() if found else ""


def measure_repo(name: str, servers: Servers, rtts: Sequence[float], setup_ms: Optional[float], mbit: float, rounds: int) -> List[str]:
    repo = make_repo(name)
    runner = PantsRunner(repo, name)
    report: List[str] = []
    try:
        registry = f"127.0.0.1:{servers.registry_port}"
        repository, tag = f"wan/{name}", "cache"
        seed_config = plugin_config(WORK / f"{name}-seed.toml", f"type=registry,ref={registry}/{repository}:{tag}")
        log(f"{name}: cold runs (local store; BuildGrid and the registry seeded directly) ...")
        cold_local = runner.run("local-cold", [])
        runner.run("buildgrid-cold", [f"--remote-store-address=grpc://127.0.0.1:{servers.buildgrid_port}", "--remote-cache-read", "--remote-cache-write"])
        seed_state = runner.dir / "plugin-cold-state"
        cold_plugin = runner.run("plugin-cold", runner.plugin_args(seed_config, seed_state))
        runner.stop_daemons(seed_state)
        if not plugin_summary(cold_plugin.output):
            raise SystemExit(f"wan_bench: the plugin's cold run printed no export summary (see {runner.dir}/plugin-cold.log)")
        cacheable = cold_plugin.counters.get("remote_cache_requests", 0)
        for rtt_ms in rtts:
            setup = (setup_ms if setup_ms is not None else 2 * rtt_ms) / 1000
            link = WanLink(rtt=rtt_ms / 1000, bandwidth=mbit * 1e6 / 8, setup=setup)
            front = RegistryFront(link, registry)
            peer = TcpRelay(link, f"127.0.0.1:{servers.buildgrid_port}")
            wan_config = plugin_config(WORK / f"{name}-wan-{rtt_ms:g}.toml", f"type=registry,ref={front.address}/{repository}:{tag}")
            startup, local, buildgrid, plugin = Series("start-up"), Series("(c) Pants' warm local cache"), Series("(b) BuildGrid across the link"), Series("(a) plugin across the link, fresh machine")
            loopback = Series("(d) BuildGrid on loopback, no link")
            try:
                for round_number in range(1, rounds + 1):
                    for attempt in (1, 2):
                        tag_ = f"rtt{rtt_ms:g}-{round_number}" + ("-again" if attempt == 2 else "")
                        try:
                            log(f"{name}, RTT {rtt_ms:g} ms, round {round_number} of {rounds}: start-up, local, BuildGrid, plugin ...")
                            first_startup = runner.run(f"startup-{tag_}-a", [], build=False).seconds
                            r_local = runner.run(f"local-{tag_}", [], local_store=runner.dir / "local-cold" / "local-store")
                            r_peer = runner.run(
                                f"buildgrid-{tag_}",
                                ["--no-local-cache", f"--remote-store-address=grpc://{peer.address}", "--remote-cache-read", "--remote-cache-write"],
                            )
                            # What any remote cache costs Pants with no link at all: its floor.
                            r_loopback = runner.run(
                                f"loopback-{tag_}",
                                ["--no-local-cache", f"--remote-store-address=grpc://127.0.0.1:{servers.buildgrid_port}", "--remote-cache-read", "--remote-cache-write"],
                            )
                            state_dir = runner.dir / f"plugin-{tag_}-state"
                            before = link.snapshot()
                            r = runner.run(f"plugin-{tag_}", ["--no-local-cache"] + runner.plugin_args(wan_config, state_dir))
                            status = daemon_status(state_dir)
                            facts = daemon_log_facts(state_dir)
                            fetched = link.snapshot() - before
                            runner.stop_daemons(state_dir)
                            # Start-up before and after the round's builds; their mean is the round's.
                            second_startup = runner.run(f"startup-{tag_}-b", [], build=False).seconds
                            round_startup = (first_startup + second_startup) / 2
                            startup.samples.append(Sample(round_startup, 0.0, {}, summary=f"{first_startup:.2f}+{second_startup:.2f}"))
                            local.samples.append(Sample(r_local.seconds, r_local.seconds - round_startup, r_local.counters, r_local.goal_seconds))
                            buildgrid.samples.append(Sample(r_peer.seconds, r_peer.seconds - round_startup, r_peer.counters, r_peer.goal_seconds))
                            loopback.samples.append(
                                Sample(r_loopback.seconds, r_loopback.seconds - round_startup, r_loopback.counters, r_loopback.goal_seconds)
                            )
                            # The daemon's launch holds Pants' start-up, before "specs are":
                            # it is the plugin's cost, so (a)'s build s carries it.
                            launch = daemon_wait_seconds(r.output)
                            plugin.samples.append(
                                Sample(
                                    r.seconds,
                                    r.seconds - round_startup,
                                    r.counters,
                                    r.goal_seconds + launch,
                                    fetched,
                                    image_index_bytes(registry, repository, tag),
                                    status.get("bytes_read", 0),
                                    plugin_summary(r.output),
                                    facts,
                                    launch,
                                )
                            )
                            break
                        except RunFailed as failure:
                            runner.stop_all()
                            RETRIED.append(str(failure).splitlines()[0])
                            if attempt == 2:
                                raise SystemExit(f"wan_bench: {failure}") from None
                            log(f"{failure}\nwan_bench: running round {round_number} again")

                try:
                    probe = hit_latency_probe(registry, front.address, repository, tag, runner.dir / f"probe-rtt{rtt_ms:g}")
                except Exception as error:  # noqa: BLE001 - a probe failure must not lose the measured rounds
                    probe = f"hit-latency probe failed: {type(error).__name__}: {error}"
            finally:
                front.close()
                peer.close()
                link.close()
            report += format_report(
                name, rtt_ms, setup * 1000, mbit, rounds, cacheable, cold_local.seconds, startup, local, buildgrid, plugin, probe, loopback
            )
    finally:
        runner.stop_all()
    return report


def ratio(a: float, b: float) -> str:
    return "n/a" if b <= 0 else f"{a / b:.2f}"


def verdict(value: str, target: float) -> str:
    return "n/a" if value == "n/a" else ("PASS" if float(value) <= target else "FAIL")


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def format_report(
    name: str,
    rtt_ms: float,
    setup_ms: float,
    mbit: float,
    rounds: int,
    cacheable: int,
    cold_seconds: float,
    startup: Series,
    local: Series,
    buildgrid: Series,
    plugin: Series,
    probe: str,
    loopback: Series,
) -> List[str]:
    lines = [
        "",
        f"=== {name}: RTT {rtt_ms:g} ms, {setup_ms:g} ms per new connection, {mbit:g} Mbit/s, 307 blob redirects; {rounds} rounds, medians ===",
        f"{cacheable} remote-cacheable processes (the plugin's cold run; (c)'s hits count Pants' local-cache lookups, per-session processes included); cold build {cold_seconds:.1f} s",
        "build s = from the end of Pants' start-up (its 'specs are' log line) to the run's last line (the plugin's end-of-run export included);",
        "          for (a) plus the time Pants' start-up waited for the daemon it launched (the plugin's debug line);",
        "wall-su = wall time minus the round's `pants --version` (mean of one before and one after the round's builds); the fresh machine's daemon launch is in it",
        f"{'served by':<42} {'build s':>7} {'wall-su':>7} {'wall s':>7} {'hits':>6} {'timeouts':>8} {'lost':>5}  runs: build s (wall s)",
    ]
    lines.append(
        f"{'pants --version (start-up)':<42} {'-':>7} {'-':>7} {startup.median('seconds'):7.2f} {'':>6} {'':>8} {'':>5}  "
        + " ".join(f"{s.seconds:.2f} ({s.summary})" for s in startup.samples)
    )
    for series, hits in (
        (local, "local_cache_requests_cached"),
        (buildgrid, "remote_cache_requests_cached"),
        (plugin, "remote_cache_requests_cached"),
        (loopback, "remote_cache_requests_cached"),
    ):
        remote = series is not local
        lines.append(
            f"{series.label:<42} {series.median('goal'):7.2f} {series.median('net'):7.2f} {series.median('seconds'):7.2f} {series.counter_range(hits):>6} "
            f"{series.counter_range('remote_cache_request_timeouts') if remote else '-':>8} "
            f"{series.counter_range('remote_cache_speculation_local_completed_first') if remote else '-':>5}  "
            + " ".join(f"{s.goal:.2f} ({s.seconds:.2f})" for s in series.samples)
        )
    fetched = [s.fetched.down_bytes for s in plugin.samples if s.fetched]
    bodies = [s.fetched.body_bytes for s in plugin.samples if s.fetched]
    ceilings = [s.index_bytes + s.served_bytes for s in plugin.samples]
    with_prefetch = [s.index_bytes + s.served_bytes + s.daemon.get("prefetch_read_bytes", 0) for s in plugin.samples]
    for number, s in enumerate(plugin.samples, 1):
        if s.fetched is None:
            continue
        lines.append(
            f"(a) run {number} from the registry: {mib(s.fetched.down_bytes)} down ({mib(s.fetched.body_bytes)} bodies), {mib(s.fetched.up_bytes)} up, "
            f"{s.fetched.connections} connections, requests: {', '.join(f'{k} {v}' for k, v in sorted(s.fetched.requests.items()))}; "
            f"index {mib(s.index_bytes)}, served {mib(s.served_bytes)}"
            + (f"; import {s.daemon['import_seconds']:.2f} s" if "import_seconds" in s.daemon else "")
            + (
                f"; prefetch {mib(s.daemon['prefetch_read_bytes'])} in {s.daemon['prefetch_requests']:g} requests, {s.daemon['prefetch_seconds']:.2f} s"
                if "prefetch_read_bytes" in s.daemon
                else ""
            )
        )
    lines.append(
        f"(a) the daemon's launch, waited for by Pants' start-up and counted in (a)'s build s: median {plugin.median('launch'):.2f} s ("
        + ", ".join(f"{s.launch:.2f}" for s in plugin.samples)
        + ")"
    )
    lines.append(f"(a) last run: {plugin.samples[-1].summary}")
    lines.append(probe)
    lost_plugin = statistics.median(s.counters.get("remote_cache_speculation_local_completed_first", 0) for s in plugin.samples)
    lost_peer = statistics.median(s.counters.get("remote_cache_speculation_local_completed_first", 0) for s in buildgrid.samples)
    timeouts = max(s.counters.get("remote_cache_request_timeouts", 0) for s in plugin.samples)
    worst_bytes = max((f / c for f, c in zip(fetched, ceilings) if c), default=float("nan"))
    worst_bodies = max((b / c for b, c in zip(bodies, ceilings) if c), default=float("nan"))
    worst_prefetch = max((f / c for f, c in zip(fetched, with_prefetch) if c), default=float("nan"))
    lines.append(f"{'ratio':<38} {'build s':>8} {'wall-su':>8} {'wall s':>8} {'target':>8}  verdict (build s / wall-su)")
    for label, a, b, target in (
        ("plugin / BuildGrid", plugin, buildgrid, 0.7),
        ("plugin / Pants' local warm cache", plugin, local, 1.3),
        ("BuildGrid / Pants' local warm cache", buildgrid, local, None),
        ("plugin / BuildGrid on loopback", plugin, loopback, None),
        ("BuildGrid on loopback / local cache", loopback, local, None),
    ):
        by_goal = ratio(a.median("goal"), b.median("goal"))
        by_net = ratio(a.median("net"), b.median("net"))
        by_wall = ratio(a.median("seconds"), b.median("seconds"))
        judged = f"{verdict(by_goal, target)} / {verdict(by_net, target)}" if target is not None else ""
        lines.append(f"{label:<38} {by_goal:>8} {by_net:>8} {by_wall:>8} {('<= ' + format(target, 'g')) if target else '-':>8}  {judged}")
    if fetched:
        # What no cache can beat on this link: the bytes a fresh machine must bring across
        # at the link's rate, and never less than the warm local build itself.
        transfer = statistics.median(fetched) * 8 / (mbit * 1e6)
        floor = max(transfer, local.median("goal"))
        lines.append(
            f"{'plugin / link floor':<38} {ratio(plugin.median('goal'), floor):>8} {'':>8} {'':>8} {'-':>8}  "
            f"(floor {floor:.2f} s = max(local build s, {mib(statistics.median(fetched))} down at {mbit:g} Mbit/s = {transfer:.2f} s))"
        )
    lines += [
        f"{'races lost (median), plugin vs BuildGrid':<38} {lost_plugin:>4g} vs {lost_peer:<4g} {'':>8} {'<= peer':>8}  {'PASS' if lost_plugin <= lost_peer else 'FAIL'}",
        f"{'plugin cache timeouts (worst run)':<38} {timeouts:>8} {'':>8} {'':>8} {'0':>8}  {'PASS' if timeouts == 0 else 'FAIL'}",
        f"{'fetched / (index + served), worst':<38} {worst_bytes:>8.2f} {'':>8} {'':>8} {'<= 1.1':>8}  {'PASS' if worst_bytes <= 1.1 else 'FAIL'}"
        f"   (bodies only {worst_bodies:.2f}; with prefetch in the ceiling {worst_prefetch:.2f})",
    ]
    return lines


def machine_context() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; {platform.platform()}; "
        f"Python {platform.python_version()} (bench); Pants 2.17.1; BuildGrid 0.4.4; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, action="append", help="round-trip time in ms (repeatable; default 40 and 100)")
    parser.add_argument("--setup-ms", type=float, default=None, help="per new connection, ms (default 2 x RTT: TCP + TLS)")
    parser.add_argument("--mbit", type=float, default=400.0, help="bandwidth each way, Mbit/s")
    parser.add_argument("--repo", action="append", choices=["basic", "generated"], help="default both")
    parser.add_argument(
        "--sources",
        type=Path,
        default=REPO_ROOT / "src" / "python",
        help="the plugin's and daemon's sources to measure (default this work tree's src/python; e.g. an older commit's, to compare)",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds takes a positive integer")
    rtts = args.rtt_ms or [40.0, 100.0]
    repos = args.repo or ["basic", "generated"]
    ensure_prerequisites()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    shutil.copytree(args.sources, SOURCES, ignore=shutil.ignore_patterns("__pycache__"))
    started = time.monotonic()
    context_before = machine_context()
    servers = Servers()
    report: List[str] = []
    interrupted = False

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for name in repos:
            lines = measure_repo(name, servers, rtts, args.setup_ms, args.mbit, args.rounds)
            print("\n".join(lines), flush=True)
            report += lines
    except KeyboardInterrupt:
        interrupted = True
    except RunFailed as failure:
        raise SystemExit(f"wan_bench: {failure}") from None
    finally:
        servers.stop()
    if interrupted:
        return 130
    print(f"\nmachine at start: {context_before}\nmachine at end:   {machine_context()}")
    for failure in RETRIED:
        print(f"round run again after: {failure}")
    print(f"benchmark time: {time.monotonic() - started:.0f} s; logs in {WORK.relative_to(REPO_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
