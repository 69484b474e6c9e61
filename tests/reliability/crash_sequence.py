"""`kill -9` trials against a real `oci-cache serve` (or `oci-cache export`) process.

A *sequence* is one state directory and one cache-to ref (a docker-registry ref or
an OCI layout), exported with mode=max, so every acknowledged blob and action must
reach the image, or with mode=min, so every acknowledged action with exit code 0 and
the blobs its result names must (image_checks.acked_for_mode). It starts with one clean export (so the ref always names an
image), then runs trials. Each trial, seeded by `f"{seed}:{sequence}:{trial}"`:

1. three writer threads (crash_writers.py) write to the running server;
2. a phase is drawn and the process is killed (SIGKILL) at a random moment in it:
   - `writes`: writes only;
   - `control-export`: an export asked through the Control service (gRPC
     Control.Export or the JSON-over-HTTP /v1/export), writes still running;
   - `shutdown-export`: SIGTERM (stop accepting, then the shutdown export);
   - `cli-export`: `oci-cache export --state-dir DIR` as its own process, which
     asks the daemon to export (the daemon is killed);
   - `direct-export`: the daemon stopped cleanly without exporting (Control
     Shutdown, skip_export), then `oci-cache export --state-dir DIR --cache-to REF`
     as its own process exporting the store directly (that process is killed).
   The kill delay is drawn up to 1.3 × the duration of the previous trial's export,
   so kills spread over the whole export.
3. where the kill landed is read from what the target holds (see `TargetProbe`): no
   new blob yet, blobs being uploaded (registry upload sessions open or new blobs),
   or the tag already moved; and from the process's own log ("exporting before
   exit", "exported to").
4. the ref must name a complete, importable image (image_checks.check_complete),
   which is either the one before the trial or a new one holding all of its
   actions and blobs (a merge never drops entries);
5. `oci-cache serve` is restarted on the same state directory and exports through
   Control.Export: every blob and action acknowledged so far in the sequence must be
   in the image (zero lost). That server carries the next trial.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import grpc

from oci_cache.reapi import control_pb2, control_pb2_grpc
from server_fixtures import ServerProcess, start_server

from crash_writers import Ledger, WriterPool, wait_for_acks
from image_checks import ImageFacts, check_complete, load_ref, missing_acked

PHASES = ("writes", "control-export", "shutdown-export", "cli-export", "direct-export")
PHASE_WEIGHTS = (30, 25, 15, 15, 15)
EXPORT_TIMEOUT_SECONDS = 120.0


# --------------------------------------------------------------------------- where a kill landed


class TargetProbe:
    """What the cache-to target holds right now: the tag's manifest digest, blobs, and
    (registry) upload sessions still open — read from the registry's storage directory
    or the layout directory, not through the code under test."""

    def __init__(self, *, registry_root: Optional[Path] = None, repo: str = "", layout: Optional[Path] = None, tag: str) -> None:
        self.registry_root = registry_root
        self.repo = repo
        self.layout = layout
        self.tag = tag

    def snapshot(self) -> Tuple[Optional[str], int, int]:
        """(tag digest, blobs, open uploads / temporary files)."""
        if self.registry_root is not None:
            repo = self.registry_root / "docker" / "registry" / "v2" / "repositories" / self.repo
            link = repo / "_manifests" / "tags" / self.tag / "current" / "link"
            digest = link.read_text().strip() if link.exists() else None
            layers = repo / "_layers" / "sha256"
            uploads = repo / "_uploads"
            blob_count = len(list(layers.iterdir())) if layers.is_dir() else 0
            upload_count = len(list(uploads.iterdir())) if uploads.is_dir() else 0
            return digest, blob_count, upload_count
        assert self.layout is not None
        digest = None
        index = self.layout / "index.json"
        if index.exists():
            for manifest in json.loads(index.read_text()).get("manifests", []):
                if manifest.get("annotations", {}).get("org.opencontainers.image.ref.name") == self.tag:
                    digest = manifest.get("digest")
        blobs = self.layout / "blobs" / "sha256"
        names = [p.name for p in blobs.iterdir()] if blobs.is_dir() else []
        temporary = sum(1 for name in names if name.startswith("."))
        return digest, len(names) - temporary, temporary


def classify_export_kill(before: Tuple[Optional[str], int, int], after: Tuple[Optional[str], int, int], finished: bool) -> str:
    if finished:
        return "export finished before the kill"
    if after[0] != before[0]:
        return "export: tag moved, not yet confirmed"
    if after[1] != before[1] or after[2]:
        return "export: uploading layers"
    return "export: before any upload"


# --------------------------------------------------------------------------- records


@dataclass
class TrialRecord:
    sequence: str
    trial: int
    phase: str
    landed: str
    killed: bool
    delay: float
    acked_blobs: int
    acked_actions: int
    image: ImageFacts
    image_changed: bool
    writer_codes: Dict[str, int] = field(default_factory=dict)


@dataclass
class SequenceReport:
    trials: List[TrialRecord] = field(default_factory=list)
    acked_blobs: int = 0
    acked_actions: int = 0
    lost: int = 0
    incomplete_refs: int = 0
    export_seconds: List[float] = field(default_factory=list)
    stale_work_dirs: int = 0
    """Most scratch directories of crashed exports seen in STATE/export after a recovery."""
    target_leftovers: int = 0
    """Most open registry upload sessions / layout temporary files seen after a recovery."""

    def summary(self) -> Dict[str, object]:
        kills = [t for t in self.trials if t.killed]
        return {
            "trials": len(self.trials),
            "kills": len(kills),
            "phases": dict(Counter(t.phase for t in self.trials)),
            "landed": dict(Counter(t.landed for t in kills)),
            "acked_blobs": self.acked_blobs,
            "acked_actions": self.acked_actions,
            "lost": self.lost,
            "incomplete_refs": self.incomplete_refs,
            "images_changed_by_killed_exports": sum(1 for t in kills if t.image_changed),
            "stale_export_work_dirs": self.stale_work_dirs,
            "target_leftovers": self.target_leftovers,
        }


# --------------------------------------------------------------------------- the sequence


def _kill(process: "subprocess.Popen[bytes]") -> bool:
    """SIGKILL; whether the process was still running."""
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    return True


def _cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "oci_cache.cli.main", *args]


class CrashSequence:
    def __init__(
        self,
        name: str,
        seed: str,
        work: Path,
        cache_to: str,
        cache_from: str,
        probe: TargetProbe,
        *,
        log: Callable[[str], None] = lambda line: None,
        writer_pause: float = 0.06,
    ) -> None:
        self.name = name
        self.writer_pause = writer_pause
        self.seed = seed
        self.work = Path(work)
        self.state_dir = self.work / "state"
        self.cache_to = cache_to
        self.mode = "min" if "mode=min" in cache_to.split(",") else "max"
        self.cache_from = cache_from
        self.probe = probe
        self.ledger = Ledger()
        self.report = SequenceReport()
        self.server: Optional[ServerProcess] = None
        self._last_export = 0.5
        self._readers = 0
        self._log = log

    # ---- server -------------------------------------------------------------------------

    def _start(self) -> ServerProcess:
        self.server = start_server(self.state_dir, "--cache-to", self.cache_to, "--control-http")
        return self.server

    def _control(self) -> control_pb2_grpc.ControlStub:
        assert self.server is not None
        return control_pb2_grpc.ControlStub(self.server.channel())

    def _export_now(self) -> float:
        started = time.monotonic()
        response = self._control().Export(control_pb2.ExportRequest(), timeout=EXPORT_TIMEOUT_SECONDS)
        assert response.ok, [(t.entry, t.message) for t in response.targets]
        seconds = time.monotonic() - started
        self.report.export_seconds.append(seconds)
        self._last_export = seconds
        return seconds

    def stop(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None

    # ---- trials -------------------------------------------------------------------------

    def begin(self) -> None:
        self._start()
        self._export_now()
        assert load_ref(self.cache_from) is not None

    def run_trial(self, number: int) -> TrialRecord:
        rng = random.Random(f"{self.seed}:{self.name}:{number}")
        phase = rng.choices(PHASES, weights=PHASE_WEIGHTS)[0]
        clock = [time.monotonic()]
        before_image = load_ref(self.cache_from)
        assert before_image is not None
        server = self.server
        assert server is not None
        pool = WriterPool(
            server.target, self.ledger, f"{self.seed}:{self.name}:{number}", pause=self.writer_pause
        ).start()
        wait_for_acks(pool)
        time.sleep(rng.uniform(0.05, 0.4))
        window = rng.uniform(0.0, 1.3 * self._last_export + 0.05)
        landed, killed, delay = getattr(self, "_phase_" + phase.replace("-", "_"))(rng, pool, window)
        pool.stop()
        self.server = None

        clock.append(time.monotonic())
        # The ref names a complete, importable image: the previous one or a merge over it.
        self._readers += 1
        try:
            facts = check_complete(self.cache_from, self.work / f"reader{self._readers}", self.ledger)
        except AssertionError:
            self.report.incomplete_refs += 1
            raise
        after_image = load_ref(self.cache_from)
        assert after_image is not None and after_image.digest == facts.digest
        changed = facts.digest != before_image.digest
        if changed:
            old_actions = {a.action for a in before_image.index.iter_actions()}
            old_blobs = {b.digest for b in before_image.index.iter_blobs()}
            assert old_actions <= {a.action for a in after_image.index.iter_actions()}, "a merge dropped actions"
            assert old_blobs <= {b.digest for b in after_image.index.iter_blobs()}, "a merge dropped blobs"

        clock.append(time.monotonic())
        # Restart on the same state directory and export: nothing acknowledged is lost.
        self._start()
        self._export_now()
        # No export runs now: a work directory left in STATE/export is a crashed export's.
        leftovers = list((self.state_dir / "export").glob("tmp-*"))
        self.report.stale_work_dirs = max(self.report.stale_work_dirs, len(leftovers))
        self.report.target_leftovers = max(self.report.target_leftovers, self.probe.snapshot()[2])
        exported = load_ref(self.cache_from)
        assert exported is not None
        lost_blobs, lost_actions = missing_acked(exported, self.ledger, self.mode)
        self.report.lost = len(lost_blobs) + len(lost_actions)
        assert not lost_blobs and not lost_actions, (
            f"trial {number} ({phase}, {landed}): lost {len(lost_blobs)} acknowledged blobs, "
            f"{len(lost_actions)} actions, e.g. {(lost_blobs + lost_actions)[:3]}"
        )
        blobs, actions = self.ledger.counts()
        self.report.acked_blobs, self.report.acked_actions = blobs, actions
        record = TrialRecord(
            self.name, number, phase, landed, killed, delay, blobs, actions, facts, changed, dict(pool.counts.codes)
        )
        self.report.trials.append(record)
        clock.append(time.monotonic())
        steps = "/".join(f"{b - a:.1f}" for a, b in zip(clock, clock[1:]))
        self._log(
            f"{self.name} trial {number} ({steps}s): {phase} → {landed} after {delay:.3f}s; image {facts.blobs} blobs, "
            f"{facts.actions} actions ({'new' if changed else 'unchanged'}); acked so far {blobs} blobs, {actions} actions"
        )
        return record

    def finish(self) -> ImageFacts:
        """A last full check of the final image (after the last recovery export)."""
        self._readers += 1
        facts = check_complete(self.cache_from, self.work / f"reader{self._readers}", self.ledger)
        self.stop()
        return facts

    # ---- phases: each returns (where the kill landed, whether it killed, delay) ----------

    def _phase_writes(self, rng: random.Random, pool: WriterPool, window: float) -> Tuple[str, bool, float]:
        assert self.server is not None
        delay = rng.uniform(0.0, 0.8)
        time.sleep(delay)
        return "writes", _kill(self.server.process), delay

    def _export_in_thread(self, use_http: bool) -> Tuple[threading.Thread, List[object]]:
        server = self.server
        assert server is not None
        outcome: List[object] = []

        def run() -> None:
            try:
                if use_http:
                    url = json.loads((self.state_dir / "daemon.json").read_text())["control_url"]
                    request = urllib.request.Request(url + "/v1/export", data=b"{}", method="POST")
                    with urllib.request.urlopen(request, timeout=EXPORT_TIMEOUT_SECONDS) as response:
                        outcome.append(json.loads(response.read()))
                else:
                    channel = grpc.insecure_channel(server.target)
                    try:
                        stub = control_pb2_grpc.ControlStub(channel)
                        outcome.append(stub.Export(control_pb2.ExportRequest(), timeout=EXPORT_TIMEOUT_SECONDS))
                    finally:
                        channel.close()
            except Exception as error:  # noqa: BLE001 - the kill cuts the call off
                outcome.append(error)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, outcome

    def _phase_control_export(self, rng: random.Random, pool: WriterPool, window: float) -> Tuple[str, bool, float]:
        assert self.server is not None
        before = self.probe.snapshot()
        exports_before = _exports_logged(self.server)
        thread, outcome = self._export_in_thread(use_http=rng.random() < 0.5)
        time.sleep(window)
        finished = bool(outcome) and not isinstance(outcome[0], Exception)
        log_done = _exports_logged(self.server) > exports_before
        killed = _kill(self.server.process)
        after = self.probe.snapshot()
        thread.join(30)
        return classify_export_kill(before, after, finished or log_done), killed, window

    def _phase_shutdown_export(self, rng: random.Random, pool: WriterPool, window: float) -> Tuple[str, bool, float]:
        server = self.server
        assert server is not None
        before = self.probe.snapshot()
        exports_before = _exports_logged(server)
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(window)
        log = server.log_text()
        killed = _kill(server.process)
        after = self.probe.snapshot()
        if "exporting before exit" not in log and killed:
            return "shutdown: draining calls, export not begun", killed, window
        finished = _exports_logged(server) > exports_before or not killed
        return classify_export_kill(before, after, finished), killed, window

    def _phase_cli_export(self, rng: random.Random, pool: WriterPool, window: float) -> Tuple[str, bool, float]:
        server = self.server
        assert server is not None
        before = self.probe.snapshot()
        cli_log = self.work / "cli-export.log"
        with open(cli_log, "ab") as log:
            cli = subprocess.Popen(
                _cli("export", "--state-dir", str(self.state_dir)), stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        try:
            # The command first starts Python and finds the daemon: wait for the daemon to begin exporting.
            deadline = time.monotonic() + 30
            while cli.poll() is None and not _export_started(server):
                assert time.monotonic() < deadline, "the export command never reached the daemon"
                time.sleep(0.01)
            time.sleep(window)
            finished = cli.poll() is not None
            killed = _kill(server.process)
            after = self.probe.snapshot()
        finally:
            cli.wait(60)
        return classify_export_kill(before, after, finished), killed, window

    def _phase_direct_export(self, rng: random.Random, pool: WriterPool, window: float) -> Tuple[str, bool, float]:
        server = self.server
        assert server is not None
        pool.stop()
        self._control().Shutdown(control_pb2.ShutdownRequest(skip_export=True), timeout=10)
        assert server.process.wait(30) == 0
        before = self.probe.snapshot()
        cli_log = self.work / "direct-export.log"
        started = time.monotonic()
        with open(cli_log, "ab") as log:
            cli = subprocess.Popen(
                _cli("export", "--state-dir", str(self.state_dir), "--cache-to", self.cache_to),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        # Python start-up (~0.3 s) comes before the export itself.
        delay = rng.uniform(0.25, 0.35 + 1.3 * self._last_export)
        time.sleep(max(0.0, delay - (time.monotonic() - started)))
        finished = cli.poll() is not None
        killed = _kill(cli)
        after = self.probe.snapshot()
        if finished:
            assert cli.returncode == 0, cli_log.read_text()
        return classify_export_kill(before, after, finished), killed, delay


_EXPORT_DONE = re.compile(r"INFO oci_cache\.cache_image\.exporter: (?:exported to |export to \S+: unchanged)")


def _exports_logged(server: ServerProcess) -> int:
    """Exports the daemon has logged as done ("exported to ...", or "unchanged")."""
    return len(_EXPORT_DONE.findall(server.log_text()))


def _export_started(server: ServerProcess) -> bool:
    """Whether the daemon has begun an export (its export_running / exports_completed)."""
    channel = grpc.insecure_channel(server.target)
    try:
        status = control_pb2_grpc.ControlStub(channel).GetStatus(control_pb2.GetStatusRequest(), timeout=5)
        return bool(status.export_running)
    except grpc.RpcError:
        return True  # gone: treat as started (the kill follows anyway)
    finally:
        channel.close()


__all__ = ["CrashSequence", "PHASES", "SequenceReport", "TargetProbe", "TrialRecord", "classify_export_kill"]
