"""The explanation of a run: the `pants-oci-cache/explain/v1` document, the one-clause
summary and the table, with no secret in any of them (oci_cache.explain.report)."""

from __future__ import annotations

import json

from explain_builders import command, digest_text, pants_pytest, view

from oci_cache.digests import Digest
from oci_cache.explain.matcher import CandidateIndex
from oci_cache.explain.report import MissFacts, explain_misses, parse_report, render_table, summary_clause


def _run():
    cached_test = view(pants_pytest("a_test.py"), input_root=b"v1", source="type=local,src=/c")
    cached_tool = view(command(["sh", "-c", "echo a > o"], {"PATH": "/bin"}, output_files=["o"]))
    cached_secret = view(command(["sh", "-c", "cat x > s"], {"API_TOKEN": "tok-old"}, output_files=["s"]))
    misses = [
        MissFacts(view(pants_pytest("a_test.py"), input_root=b"v2").action, "Run Pytest - a_test.py:tests",
                  view(pants_pytest("a_test.py"), input_root=b"v2")),
        MissFacts(Digest.of(b"p"), "Run env tool", view(command(["sh", "-c", "echo a > o"], {"PATH": "/usr/bin"}, output_files=["o"]))),
        MissFacts(Digest.of(b"s"), "Run secret tool", view(command(["sh", "-c", "cat x > s"], {"API_TOKEN": "tok-new"}, output_files=["s"]))),
        MissFacts(Digest.of(b"n"), "Run new", view(command(["python3", "gen.py"], output_directories=["gen"]))),
        MissFacts(Digest.of(b"u"), "Run failing", None),
    ]
    return explain_misses(misses, CandidateIndex([cached_test, cached_tool, cached_secret]))


def test_the_json_document_has_the_issue_schema() -> None:
    document = json.loads(_run().to_bytes())

    assert document["schema"] == "pants-oci-cache/explain/v1"
    first = document["misses"][0]
    assert set(first) == {"action", "description", "nearest", "differences"}
    assert first["description"] == "Run Pytest - a_test.py:tests"
    assert first["nearest"]["source"] == "type=local,src=/c"
    assert first["differences"] == [
        {"kind": "input_root", "name": None, "before": digest_text(b"v1"), "after": digest_text(b"v2")}
    ]
    assert document["misses"][3]["nearest"] is None and document["misses"][3]["differences"] == []


def test_the_summary_clause_counts_the_misses_by_cause_and_names_changed_variables() -> None:
    assert summary_clause(_run()) == (
        "5 misses: 2 env changed (PATH, API_TOKEN), 1 input files changed, 1 new process, 1 not uploaded"
    )


def test_no_secret_value_in_the_document_or_the_table() -> None:
    report = _run()
    for text in (report.to_bytes().decode(), render_table(report)):
        assert "tok-old" not in text and "tok-new" not in text
        assert "<masked:hmac:" in text


def test_the_table_shows_each_miss_with_its_description_and_differences() -> None:
    table = render_table(_run())

    assert "Run Pytest - a_test.py:tests" in table
    assert "env               PATH" in table and "/bin -> /usr/bin" in table
    assert "nearest  none (new process)" in table


def test_a_saved_report_reads_back_with_its_causes() -> None:
    report = _run()

    again = parse_report(json.loads(report.to_bytes(include_cause=True)))

    assert again == report
    assert summary_clause(again) == summary_clause(report)


def test_a_run_without_misses_says_so() -> None:
    assert summary_clause(explain_misses([], CandidateIndex([]))) == "0 misses"


def test_causes_counted_more_than_once_read_in_the_plural() -> None:
    new = [MissFacts(Digest.of(bytes([n])), None, view(command(["gen", str(n)], output_files=[f"o{n}"]))) for n in range(2)]

    assert summary_clause(explain_misses(new, CandidateIndex([]))) == "2 misses: 2 new processes"


def test_the_table_shows_where_two_long_arguments_differ() -> None:
    script = "sleep 0.5; mkdir -p tiny && " * 4 + "printf {} > tiny/a.txt && echo done"
    before = view(command(["bash", "-c", script.format("a")], output_files=["tiny/a.txt"]))
    after = view(command(["bash", "-c", script.format("A")], output_files=["tiny/a.txt"]))

    table = render_table(explain_misses([MissFacts(after.action, "Run tiny", after)], CandidateIndex([before])))

    assert "printf a" in table and "printf A" in table
