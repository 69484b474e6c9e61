"""The helpers behind `oci-cache export | inspect | prune`: progress lines, ENTRY parsing,
export result printing."""

from __future__ import annotations

import io
from typing import List

import pytest

from oci_cache.cache_entries import CacheEntryError, CacheFrom, CacheTo
from oci_cache.cli.export_report_text import ExportOutcome, TargetOutcome, outcome_lines, outcomes_json
from oci_cache.cli.image_entry import parse_image_entry
from oci_cache.cli.progress import Progress, human_bytes, plural


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_writes_only_the_summary() -> None:
    stream = io.StringIO()
    progress = Progress("export", stream)
    assert not progress.live
    progress.update("packing layer 1/3")
    progress.update("packing layer 2/3", force=True)
    progress.finish("exported 3 entries")
    assert stream.getvalue() == "exported 3 entries\n"


def test_progress_on_a_terminal_redraws_rate_limited_and_clears_before_the_summary() -> None:
    stream = io.StringIO()
    clock = FakeClock()
    progress = Progress("export", stream, live=True, min_interval=0.1, clock=clock)
    progress.update("step one")
    clock.now += 0.01
    progress.update("too soon")  # within min_interval: not drawn
    clock.now += 0.2
    progress.update("step two")
    progress.finish("done")
    text = stream.getvalue()
    assert "step one" in text and "step two" in text and "too soon" not in text
    assert text.count("\r") >= 3  # two draws and a clear
    assert text.endswith("\rdone\n")
    last_line_before_summary = text[: -len("done\n")]
    assert last_line_before_summary.endswith("\r") and last_line_before_summary.rstrip("\r").endswith(" ")


@pytest.mark.parametrize(
    "size, text",
    [
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1KiB"),
        (1536, "1.5KiB"),
        (43_201_536, "41.2MiB"),
        (3 << 30, "3GiB"),
        (150 << 20, "150MiB"),
    ],
)
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text


def test_plural() -> None:
    assert plural(1, "layer") == "1 layer"
    assert plural(12031, "entry", "entries") == "12,031 entries"


def test_image_entry_bare_reference_is_a_registry_entry() -> None:
    entry = parse_image_entry("127.0.0.1:5000/acme/cache:main")
    assert isinstance(entry.parsed, CacheTo)
    assert entry.parsed.type == "registry" and entry.parsed.ref == "127.0.0.1:5000/acme/cache:main"
    assert not entry.pins_digest


def test_image_entry_accepts_src_and_dest_layouts_and_keeps_cache_to_options() -> None:
    from_layout = parse_image_entry("type=local,src=/tmp/layout,tag=cache")
    assert isinstance(from_layout.parsed, CacheFrom) and from_layout.cache_to is None
    to_layout = parse_image_entry("type=local,dest=/tmp/layout,keep-bytes=1GiB,compression=gzip")
    assert to_layout.cache_to is not None and to_layout.cache_to.keep_bytes == 1 << 30
    assert to_layout.text == "type=local,dest=/tmp/layout,compression=gzip,keep-bytes=1GiB"


def test_image_entry_digest_reference_is_read_only() -> None:
    entry = parse_image_entry("127.0.0.1:5000/acme/cache@sha256:" + "a" * 64)
    assert entry.pins_digest and entry.cache_to is None


def test_image_entry_errors_name_the_problem_and_mask_credentials() -> None:
    with pytest.raises(CacheEntryError, match="type must be one of"):
        parse_image_entry("type=s3,ref=x")
    with pytest.raises(CacheEntryError) as raised:
        parse_image_entry("type=registry,ref=bob:hunter2@ghcr.io/acme/x:y")
    assert "hunter2" not in str(raised.value)


def _lines(outcome: ExportOutcome) -> List[str]:
    return outcome_lines(outcome)


def test_export_lines_and_ok_with_ignored_errors() -> None:
    good = TargetOutcome(
        "type=registry,ref=r/a:t",
        True,
        entries=12031,
        bytes_uploaded=43_201_536,
        layers_uploaded=3,
        layers_reused=9,
        manifest_digest="sha256:" + "b" * 64,
    )
    ignored = TargetOutcome("type=registry,ref=r/b:t,ignore-error=true", False, "unreachable", ignored_error=True)
    outcome = ExportOutcome("daemon", "/state/x", "grpc://127.0.0.1:1", (good, ignored), seconds=3.14)
    assert outcome.ok
    lines = _lines(outcome)
    assert lines[0] == "daemon grpc://127.0.0.1:1 (/state/x): exported 2 targets in 3.1s"
    assert "12,031 entries; 3 layers uploaded (41.2MiB), 9 reused; sha256:bbbb" in lines[1]
    assert lines[2].startswith("  failed (ignore-error)  type=registry,ref=r/b:t") and lines[2].endswith("unreachable")


def test_export_failure_counts_and_json_shape() -> None:
    failed = TargetOutcome("type=local,dest=/x", False, "disk full")
    outcome = ExportOutcome("state-dir", "/state", targets=(failed,), seconds=0.5)
    assert not outcome.ok
    assert _lines(outcome)[0] == "/state: export FAILED for 1 of 1 target in 0.5s"
    document = outcomes_json([outcome])
    assert document["schema"] == "pants-oci-cache/export/v1" and document["ok"] is False
    (export,) = document["exports"]
    assert export["source"] == "state-dir" and export["address"] == ""
    assert export["targets"][0] == {
        "entry": "type=local,dest=/x",
        "ok": False,
        "ignored_error": False,
        "message": "disk full",
        "entries": 0,
        "bytes_uploaded": 0,
        "layers_uploaded": 0,
        "layers_reused": 0,
        "manifest_digest": "",
    }


def test_export_unreachable_daemon_and_nothing_to_export() -> None:
    unreachable = ExportOutcome("daemon", "/s", "grpc://127.0.0.1:9", error="cannot reach the daemon")
    assert not unreachable.ok
    assert _lines(unreachable) == ["daemon grpc://127.0.0.1:9 (/s): export FAILED: cannot reach the daemon"]
    nothing = ExportOutcome("daemon", "/s", "grpc://127.0.0.1:9", nothing_to_export_to=True)
    assert nothing.ok and "nothing exported" in _lines(nothing)[0]


def test_rewrite_entry_keeps_the_image_options_unless_the_entry_names_them() -> None:
    from oci_cache.image_format.compression import Compression

    bare = parse_image_entry("127.0.0.1:5000/acme/cache:main").rewrite_entry("max", Compression.GZIP, False, False)
    assert (bare.mode, bare.compression, bare.oci_mediatypes, bare.image_manifest) == (
        "max",
        Compression.GZIP,
        False,
        False,
    )
    assert bare.ref == "127.0.0.1:5000/acme/cache:main"

    layout = parse_image_entry("type=local,src=/tmp/l,tag=t").rewrite_entry("min", Compression.ZSTD, True, True)
    assert (layout.type, layout.dest, layout.tag, layout.mode) == ("local", "/tmp/l", "t", "min")

    explicit = parse_image_entry("type=registry,ref=r.io/a:b,mode=min,compression=uncompressed,oci-mediatypes=true")
    rewritten = explicit.rewrite_entry("max", Compression.GZIP, False, False)
    assert (rewritten.mode, rewritten.compression, rewritten.oci_mediatypes, rewritten.image_manifest) == (
        "min",
        Compression.UNCOMPRESSED,
        True,
        False,
    )
