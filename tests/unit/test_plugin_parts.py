"""The Pants plugin's parts that do not need Pants: the summary line and the daemon's interpreter."""

from __future__ import annotations

import importlib.metadata
import os
import stat
import sys
import time
from pathlib import Path
from typing import List

import pytest

from oci_cache.daemon.control_client import DaemonStatus, ExportResult, ExportTargetResult
from pants_oci_cache.daemon_python import (
    USABLE_VERSIONS,
    NoDaemonPython,
    daemon_python,
    oci_cache_source_root,
    unusable_versions,
)
from pants_oci_cache.finish import DEFAULT_WAIT_LIMIT_SECONDS, export_with_progress, wait_limit_seconds
from pants_oci_cache.summary import RunCounters, describe_export, format_size, summary_line

REPO_SOURCE_ROOT = str(Path(__file__).resolve().parents[2] / "src" / "python")


def status(pid: int = 7, hits: int = 0, misses: int = 0, read: int = 0, written: int = 0) -> DaemonStatus:
    return DaemonStatus(
        address="grpc://127.0.0.1:1",
        pid=pid,
        state_dir="/s",
        version="0",
        action_cache_hits=hits,
        action_cache_misses=misses,
        bytes_read=read,
        bytes_written=written,
    )


def test_run_counters_are_the_difference_since_the_start() -> None:
    start = status(hits=10, misses=5, read=1000, written=2000)
    end = status(hits=25, misses=5, read=1000 + 3 * 1024 * 1024, written=2000)
    assert RunCounters.between(start, end) == RunCounters(15, 0, 3 * 1024 * 1024, 0)
    assert RunCounters.between(start, end).describe() == "15 hits, 0 misses, 3MiB read, 0B written"
    # A daemon restarted during the run (another pid): its counters are all this run's.
    assert RunCounters.between(start, status(pid=8, hits=1, misses=1)) == RunCounters(1, 1, 0, 0)
    assert RunCounters.between(None, status(hits=2)) == RunCounters(2, 0, 0, 0)
    assert RunCounters(1, 1, 0, 0).describe().startswith("1 hit, 1 miss,")
    assert [format_size(n) for n in (0, 1023, 1024, 7_768_000, 5 << 30, 3000 << 30)] == [
        "0B", "1023B", "1KiB", "7.4MiB", "5GiB", "3000GiB"
    ]


def test_export_descriptions() -> None:
    assert describe_export(ExportResult(nothing_to_export_to=True, ok=True), 0.0) == "nothing to export to"
    assert "in the background" in describe_export(ExportResult(started_in_background=True, ok=True), 0.0)
    done = ExportResult(
        targets=(
            ExportTargetResult("type=registry,ref=r/x:c", True, entries=15, bytes_uploaded=2048, layers_uploaded=1,
                               layers_reused=3),
            ExportTargetResult("type=local,dest=/d", False, message="disk full"),
            ExportTargetResult("type=registry,ref=r/y:c", False, message="401", ignored_error=True),
        ),
        seconds=1.25,
        ok=False,
    )
    assert describe_export(done, 0.5) == (
        "exported 15 entries (1 new layer, 2KiB uploaded, 3 reused) to type=registry,ref=r/x:c; "
        "export to type=local,dest=/d FAILED: disk full; "
        "export to type=registry,ref=r/y:c failed (ignored): 401 in 1.2s"
    )
    unchanged = ExportResult(
        targets=(ExportTargetResult("type=registry,ref=r/x:c", True, entries=15, layers_reused=1),), seconds=0.04
    )
    assert describe_export(unchanged, 0.0) == "type=registry,ref=r/x:c is up to date (15 entries, nothing new) in 0.0s"
    assert summary_line(RunCounters(1, 2, 3, 4), "nothing to export to") == (
        "oci-cache: 1 hit, 2 misses, 3B read, 4B written; nothing to export to"
    )


def test_configured_interpreter_wins(tmp_path: Path) -> None:
    python, pythonpath = daemon_python("/opt/venv/bin/python", {"PATH": ""})
    assert python == "/opt/venv/bin/python"
    assert pythonpath == (REPO_SOURCE_ROOT,) == (oci_cache_source_root(),)


def test_this_interpreter_when_the_dependencies_are_importable_here() -> None:
    # The test interpreter has grpcio, protobuf, zstandard and urllib3 (as Pants has, with the
    # plugin installed through [GLOBAL].plugins).
    python, pythonpath = daemon_python("", {"PATH": ""})
    assert python == sys.executable
    assert pythonpath[0] == REPO_SOURCE_ROOT
    import grpc
    import zstandard

    for module in (grpc, zstandard):
        assert str(Path(module.__file__).resolve().parent.parent) in [str(Path(p).resolve()) for p in pythonpath]


def _script(directory: Path, name: str, first_line: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(first_line + "\nimport sys\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_oci_cache_on_the_path_names_the_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pants_oci_cache.daemon_python._dependency_roots", lambda: None)  # as in Pants' interpreter
    _script(tmp_path / "not-python", "oci-cache", "#!/bin/sh")
    _script(tmp_path / "venv" / "bin", "oci-cache", f"#!{sys.executable}")
    path = os.pathsep.join([str(tmp_path / "empty"), str(tmp_path / "not-python"), str(tmp_path / "venv" / "bin")])
    assert daemon_python("", {"PATH": path}) == (sys.executable, (REPO_SOURCE_ROOT,))
    with pytest.raises(NoDaemonPython, match=r"set `\[oci-cache\] python`"):
        daemon_python("", {"PATH": str(tmp_path / "not-python")})


def test_dependencies_here_in_versions_the_daemon_cannot_use_are_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E.g. another plugin brought an older grpcio into Pants' interpreter: the generated gRPC
    code would refuse it, so the daemon runs on the `oci-cache` of the PATH, or the run warns."""
    real_version = importlib.metadata.version
    fake = {"grpcio": "1.60.0", "urllib3": "1.25.11"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: fake.get(name) or real_version(name))
    assert unusable_versions() == ["grpcio 1.60.0 (needs >= 1.74.0)", "urllib3 1.25.11 (needs >= 1.26.20)"]
    _script(tmp_path / "venv" / "bin", "oci-cache", f"#!{sys.executable}")
    assert daemon_python("", {"PATH": str(tmp_path / "venv" / "bin")}) == (sys.executable, (REPO_SOURCE_ROOT,))
    with pytest.raises(NoDaemonPython, match=r"Pants' own interpreter has grpcio 1.60.0 \(needs >= 1.74.0\)"):
        daemon_python("", {"PATH": ""})
    fake.update(grpcio="1.85.3", urllib3="1.26.20", protobuf="7.0.0")  # a protobuf of the next major
    assert unusable_versions() == ["protobuf 7.0.0 (needs < 7)"]


def test_the_versions_the_daemon_accepts_are_those_pyproject_requires() -> None:
    pyproject = (Path(REPO_SOURCE_ROOT).parents[1] / "pyproject.toml").read_text()
    for name, (lowest, _) in USABLE_VERSIONS.items():
        floor = ".".join(map(str, lowest))
        assert f'"{name}>={floor}' in pyproject, (name, floor)


class SlowExportClient:
    """Stands for the daemon's control client: an export that takes a while."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: List[bool] = []

    def export(self, background: bool = False) -> ExportResult:
        self.calls.append(background)
        if not background:
            time.sleep(self.seconds)
        return ExportResult(nothing_to_export_to=True, ok=True)


def test_progress_lines_while_a_long_export_runs_on_a_terminal() -> None:
    lines: List[str] = []
    client = SlowExportClient(0.5)
    result = export_with_progress(client, background=False, terminal=True, report=lines.append, after=0.1, interval=0.1)  # type: ignore[arg-type]
    assert result.nothing_to_export_to
    assert 2 <= len(lines) <= 5 and all(line.startswith("oci-cache: exporting ... ") for line in lines)
    lines.clear()
    export_with_progress(client, background=False, terminal=False, report=lines.append, after=0.1, interval=0.1)  # type: ignore[arg-type]
    export_with_progress(client, background=True, terminal=True, report=lines.append, after=0.1, interval=0.1)  # type: ignore[arg-type]
    assert lines == [] and client.calls == [False, False, True]


def test_a_wait_export_is_waited_for_at_most_the_limit() -> None:
    lines: List[str] = []
    client = SlowExportClient(2.0)
    started = time.monotonic()
    result = export_with_progress(  # type: ignore[arg-type]
        client, background=False, terminal=True, report=lines.append, after=0.1, interval=0.1, limit=0.5
    )
    waited = time.monotonic() - started
    assert result is None and 0.5 <= waited < 1.5, waited
    assert 3 <= len(lines) <= 6  # progress went on until the limit
    quick = SlowExportClient(0.1)
    assert export_with_progress(quick, background=False, terminal=False, limit=5.0) is not None  # type: ignore[arg-type]


def test_the_wait_limit_option_is_a_duration_and_0_means_none() -> None:
    assert wait_limit_seconds("15m") == 900.0 and wait_limit_seconds("90s") == 90.0
    assert wait_limit_seconds("0") is None
    assert wait_limit_seconds("soon") == DEFAULT_WAIT_LIMIT_SECONDS  # warned, not fatal


NO_DAEMON_DEPENDENCIES = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("grpc", "google", "zstandard", "urllib3"):
            raise ImportError("not in Pants' interpreter: " + name)
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, {source_root!r})
import oci_cache.daemon.launcher, oci_cache.daemon.control_client
import pants_oci_cache.daemon_python, pants_oci_cache.finish, pants_oci_cache.run_state, pants_oci_cache.summary
print("ok")
"""


def test_what_runs_inside_pants_needs_only_the_standard_library() -> None:
    import subprocess

    completed = subprocess.run(
        [sys.executable, "-c", NO_DAEMON_DEPENDENCIES.format(source_root=REPO_SOURCE_ROOT)],
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 0 and completed.stdout == "ok\n", completed.stderr
