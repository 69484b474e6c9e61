"""`kill -9` of the server (and of `oci-cache export`) at random moments during writes
and during exports: zero acknowledged entries lost, and the ref always names a
complete, importable image. See crash_sequence.py for what one trial does.

    OCI_CACHE_CRASH_SEED     the seed (default 20261128); a trial is replayed by
                             seed, sequence name and trial number
    OCI_CACHE_CRASH_REPORT   write the figures as JSON to this path

CI runs `test_kill_9_trials_fast` (10 trials, a registry ref and a layout); the slow
variant runs 56 trials over six sequences (registry and layout; zstd, gzip, estargz,
uncompressed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.store.local_store import LocalStore

from crash_sequence import CrashSequence, SequenceReport, TargetProbe, classify_export_kill
from crash_writers import Ledger, WriterPool, wait_for_acks
from image_checks import acked_for_mode, check_complete, load_ref, missing_acked
from registry_fixtures import RegistryServer, registry_plain  # noqa: F401 - a fixture
from server_fixtures import start_server

SEED = os.environ.get("OCI_CACHE_CRASH_SEED", "20261128")
TAG = "cache"

Plan = List[Tuple[str, str, int, str]]  # (where, compression, trials, mode)


def _sequence(
    where: str, compression: str, mode: str, number: int, tmp_path: Path, registry: RegistryServer
) -> CrashSequence:
    name = f"{where}-{compression}-{mode}-{number}"
    work = tmp_path / name
    work.mkdir(parents=True)
    if where == "registry":
        repo = f"crash/{uuid.uuid4().hex[:12]}"
        ref = f"{registry.host}/{repo}:{TAG}"
        cache_to = f"type=registry,ref={ref},mode={mode},compression={compression}"
        probe = TargetProbe(registry_root=registry.root, repo=repo, tag=TAG)
        cache_from = ref
    else:
        layout = work / "layout"
        cache_to = f"type=local,dest={layout},tag={TAG},mode={mode},compression={compression}"
        cache_from = f"type=local,src={layout},tag={TAG}"
        probe = TargetProbe(layout=layout, tag=TAG)
    return CrashSequence(name, SEED, work, cache_to, cache_from, probe, log=print)


def _run(plan: Plan, tmp_path: Path, registry: RegistryServer) -> Dict[str, object]:
    reports: List[SequenceReport] = []
    final_checked = 0
    for number, (where, compression, trials, mode) in enumerate(plan):
        sequence = _sequence(where, compression, mode, number, tmp_path, registry)
        try:
            sequence.begin()
            for trial in range(trials):
                sequence.run_trial(trial)
            facts = sequence.finish()
            final_checked += facts.blobs_known + facts.actions_known
        finally:
            sequence.stop()
        reports.append(sequence.report)
        print(sequence.name, json.dumps(sequence.report.summary()))
        shutil.rmtree(sequence.work, ignore_errors=True)
    trials = [t for r in reports for t in r.trials]
    kills = [t for t in trials if t.killed]
    during_export = [t for t in kills if t.phase != "writes"]
    exports = [s for r in reports for s in r.export_seconds]
    figures: Dict[str, object] = {
        "seed": SEED,
        "sequences": len(reports),
        "trials": len(trials),
        "kills": len(kills),
        "kills_by_phase": dict(Counter(t.phase for t in kills)),
        "kills_landed": dict(Counter(t.landed for t in kills)),
        "kills_during_writes": sum(1 for t in kills if t.phase == "writes"),
        "kills_during_export": sum(1 for t in during_export if t.landed.startswith("export:")),
        "images_replaced_by_killed_exports": sum(1 for t in kills if t.image_changed),
        "acked_blobs": sum(r.acked_blobs for r in reports),
        "acked_actions": sum(r.acked_actions for r in reports),
        "entries_compared_byte_exact_after_kills": sum(t.image.blobs_known + t.image.actions_known for t in trials),
        "entries_compared_byte_exact_final": final_checked,
        "writer_calls_cut_off": dict(sum((Counter(t.writer_codes) for t in trials), Counter())),
        "lost": sum(r.lost for r in reports),
        "incomplete_refs": sum(r.incomplete_refs for r in reports),
        "max_stale_export_work_dirs": max((r.stale_work_dirs for r in reports), default=0),
        "max_target_leftovers": max((r.target_leftovers for r in reports), default=0),
        "recovery_export_seconds_max": round(max(exports), 2) if exports else 0,
    }
    print(json.dumps(figures, indent=2))
    report_path = os.environ.get("OCI_CACHE_CRASH_REPORT")
    if report_path:
        Path(report_path).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def test_kill_9_trials_fast(registry_plain: RegistryServer, tmp_path: Path) -> None:  # noqa: F811
    plan: Plan = [("registry", "zstd", 4, "max"), ("layout", "gzip", 4, "max"), ("layout", "zstd", 3, "min")]
    figures = _run(plan, tmp_path, registry_plain)
    assert figures["trials"] == 11 and figures["lost"] == 0 and figures["incomplete_refs"] == 0
    assert figures["max_stale_export_work_dirs"] == 0, "a crashed export's scratch directory was left behind"
    assert figures["kills"] >= 7, figures  # some trials see their export finish before the kill
    assert figures["acked_blobs"] > 0 and figures["acked_actions"] > 0  # type: ignore[operator]


@pytest.mark.slow
def test_kill_9_trials_long(registry_plain: RegistryServer, tmp_path: Path) -> None:  # noqa: F811
    plan: Plan = [
        ("registry", "zstd", 10, "max"),
        ("layout", "zstd", 10, "max"),
        ("registry", "gzip", 9, "max"),
        ("layout", "uncompressed", 9, "max"),
        ("registry", "estargz", 9, "max"),
        ("layout", "gzip", 9, "max"),
        ("registry", "zstd", 8, "min"),
        ("layout", "gzip", 8, "min"),
    ]
    figures = _run(plan, tmp_path, registry_plain)
    assert figures["lost"] == 0 and figures["incomplete_refs"] == 0
    assert figures["max_stale_export_work_dirs"] == 0, "a crashed export's scratch directory was left behind"
    assert figures["kills"] >= 50, figures
    assert figures["kills_during_writes"] >= 10 and figures["kills_during_export"] >= 15, figures


# --------------------------------------------------------------------------- the checks can fail


def test_the_checks_see_a_lost_entry_and_a_broken_layer(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    cache_to = f"type=local,dest={layout},tag={TAG},mode=max"
    cache_from = f"type=local,src={layout},tag={TAG}"
    ledger = Ledger()
    server = start_server(tmp_path / "state", "--cache-to", cache_to)
    try:
        pool = WriterPool(server.target, ledger, "checks").start()
        wait_for_acks(pool)
        pool.stop()
        os.kill(server.pid, signal.SIGTERM)
        assert server.process.wait(60) == 0  # the shutdown export
    finally:
        server.stop()
    facts = check_complete(cache_from, tmp_path / "reader", ledger)
    assert facts.blobs_known == len(ledger.blobs) and facts.actions_known == len(ledger.actions)
    image = load_ref(cache_from)
    assert image is not None and missing_acked(image, ledger) == ([], [])

    # An acknowledged entry the image lacks is reported.
    ledger.blob_acked(("ab" * 32, 7), "never-written", 7)
    ledger.action_acked(("cd" * 32, 9), b"")
    assert missing_acked(image, ledger) == ([("ab" * 32, 7)], [("cd" * 32, 9)])

    # A data layer whose bytes changed makes the image incomplete.
    layer = image.layers[0].digest.split(":", 1)[1]
    path = layout / "blobs" / "sha256" / layer
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AssertionError):
        check_complete(cache_from, tmp_path / "reader2", Ledger())


def test_where_a_kill_landed_is_read_from_the_target() -> None:
    assert classify_export_kill(("a", 3, 0), ("a", 3, 0), False) == "export: before any upload"
    assert classify_export_kill(("a", 3, 0), ("a", 3, 1), False) == "export: uploading layers"
    assert classify_export_kill(("a", 3, 0), ("a", 5, 0), False) == "export: uploading layers"
    assert classify_export_kill(("a", 3, 0), ("b", 5, 0), False) == "export: tag moved, not yet confirmed"
    assert classify_export_kill(("a", 3, 0), ("b", 5, 0), True) == "export finished before the kill"


def test_scratch_directories_of_crashed_exports_are_removed(tmp_path: Path) -> None:
    """Finding: an export killed mid-way left STATE/export/tmp-*/ (its spooled layers)
    behind for good. The next exporter on the directory now removes them."""
    work = tmp_path / "export"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_old_style = work / "tmp-0123456789ab"
    stale_dead_pid = work / f"tmp-{dead.pid}-0123456789ab"
    live = work / f"tmp-{os.getpid()}-0123456789ab"  # another exporter of this process
    for directory in (stale_old_style, stale_dead_pid, live):
        (directory / "layers").mkdir(parents=True)
        (directory / "layers" / "layer-0").write_bytes(b"x" * 4096)
    with LocalStore(tmp_path / "store", 1 << 30) as store:
        CacheExporter(store, work)
    assert not stale_old_style.exists() and not stale_dead_pid.exists()
    assert (live / "layers" / "layer-0").exists()


def test_with_mode_min_only_successful_actions_and_the_blobs_they_name_are_required() -> None:
    from oci_cache.reapi import remote_execution_pb2 as re_pb2

    ledger = Ledger()
    for number in range(4):
        ledger.blob_acked((f"{number}" * 64, 10 + number), f"blob-{number}", 10 + number)

    def result(exit_code: int, output: int, stdout: int) -> bytes:
        return re_pb2.ActionResult(
            output_files=[re_pb2.OutputFile(path="out", digest=re_pb2.Digest(hash=f"{output}" * 64, size_bytes=10 + output))],
            stdout_digest=re_pb2.Digest(hash=f"{stdout}" * 64, size_bytes=10 + stdout),
            exit_code=exit_code,
        ).SerializeToString()

    ledger.action_acked(("a" * 64, 100), result(0, 0, 1))
    ledger.action_acked(("b" * 64, 100), result(2, 2, 3))  # failed: not exported with mode=min
    blobs, actions = acked_for_mode(ledger, "min")
    assert blobs == [("0" * 64, 10), ("1" * 64, 11)] and list(actions) == [("a" * 64, 100)]
    blobs, actions = acked_for_mode(ledger, "max")
    assert len(blobs) == 4 and len(actions) == 2
