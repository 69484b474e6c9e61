"""The action journal on its own: markers, torn and malformed lines, another journal's markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from oci_cache.digests import Digest
from oci_cache.store.action_journal import ActionJournal


def _action(number: int) -> Digest:
    return Digest.of(f"action {number}".encode())


def test_a_marker_resumes_after_the_last_write_it_saw(tmp_path: Path) -> None:
    journal = ActionJournal(tmp_path / "actions.log")
    journal.append(_action(1))
    seen = journal.marker()
    journal.append(_action(2))
    journal.append(_action(1))
    entries = list(journal.iter_since(seen))
    assert [entry.action_digest for entry in entries] == [_action(2), _action(1)]
    assert entries[-1].next_marker == journal.marker()
    assert [entry.action_digest for entry in journal.iter_since(None)] == [_action(1), _action(2), _action(1)]
    journal.close()


def test_reopening_keeps_the_id_and_drops_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "actions.log"
    journal = ActionJournal(path)
    journal.append(_action(1))
    marker = journal.marker()
    journal.close()
    with open(path, "ab") as f:
        f.write(b"0123abc")
    reopened = ActionJournal(path)
    assert reopened.marker() == marker
    reopened.append(_action(2))
    assert [entry.action_digest for entry in reopened.iter_since(marker)] == [_action(2)]
    reopened.close()


def test_malformed_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "actions.log"
    ActionJournal(path).close()
    with open(path, "ab") as f:
        f.write(b"not-a-digest 12\n" + f"{_action(1).hash} twelve\n".encode() + b"\n")
    journal = ActionJournal(path)
    journal.append(_action(2))
    assert [entry.action_digest for entry in journal.iter_since(None)] == [_action(2)]
    journal.close()


def test_a_marker_from_another_journal_reads_from_the_beginning(tmp_path: Path) -> None:
    first = ActionJournal(tmp_path / "first.log")
    first.append(_action(1))
    foreign = first.marker()
    first.close()
    second = ActionJournal(tmp_path / "second.log")
    second.append(_action(2))
    assert [entry.action_digest for entry in second.iter_since(foreign)] == [_action(2)]
    second.close()


def test_a_malformed_marker_is_refused(tmp_path: Path) -> None:
    journal = ActionJournal(tmp_path / "actions.log")
    with pytest.raises(ValueError, match="invalid action journal marker"):
        list(journal.iter_since("no offset here"))
    journal.close()


def test_a_file_without_the_header_is_replaced_by_a_new_journal(tmp_path: Path) -> None:
    path = tmp_path / "actions.log"
    path.write_bytes(b"something else\n")
    journal = ActionJournal(path)
    assert path.read_bytes().startswith(b"oci-cache action journal v1 ")
    assert list(journal.iter_since(None)) == []
    journal.close()
