"""The local store's action journal: an append-only record of action-cache writes.

The file is `journal/actions.log` under the store's root. Its first line names the
journal with a random id; every acknowledged `put_action_result` then appends
"<hash> <size>\\n" and fsyncs it before the write returns (concurrent appends share one
fsync), so an action result is recorded even if the process is killed right after.

A *marker* is "<journal id>:<byte offset>". `marker()` is "now"; `iter_since(marker)`
yields every action digest written after it (an action written twice appears twice),
each with the marker just past it, so an exporter can persist how far it got. A marker
from another journal (the store was wiped) or None means "from the beginning". A
partial last line (a crash mid-append, never acknowledged) is cut off at open.

Compaction. A line is about 80 bytes per write. When the journal is over
JOURNAL_COMPACT_MIN_BYTES and four times what the actions still held need, it is
rewritten at open with the last line of each action the store still holds (the others
can never be exported), under a new id. Every marker then reads the rewritten journal
from its beginning, so the next export sees every action still held, exported before
or not.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

from oci_cache.digests import Digest, is_sha256_hex
from oci_cache.store.durable_files import replace_file_durably, write_all

logger = logging.getLogger(__name__)

JOURNAL_COMPACT_MIN_BYTES = 16 << 20
"""A journal smaller than this is never compacted (about 200,000 writes)."""

_MAGIC = b"oci-cache action journal v1 "
_BYTES_PER_LINE = 80


@dataclass(frozen=True)
class ActionJournalEntry:
    """An action result written at some point; `next_marker` is the marker just after it."""

    action_digest: Digest
    next_marker: str


def _line(digest: Digest) -> bytes:
    return f"{digest.hash} {digest.size_bytes}\n".encode("ascii")


def _parse_line(line: bytes) -> Optional[Digest]:
    """The digest on a complete line, or None when the line is malformed."""
    parts = line.split()
    if not line.endswith(b"\n") or len(parts) != 2 or not parts[1].isdigit():
        return None
    name = parts[0].decode("ascii", "replace")
    return Digest(name, int(parts[1])) if is_sha256_hex(name) else None


class ActionJournal:
    """The journal at `path`, opened for appending (see the module docstring).

    `holds_action` and `held` describe the store's actions; with them the journal is
    compacted at open when it has grown large."""

    def __init__(self, path: Path, holds_action: Optional[Callable[[Digest], bool]] = None, held: int = 0) -> None:
        self._path = str(path)
        if holds_action is not None:
            self._compact_if_large(holds_action, held)
        self._id, self._header_end, end = self._open_or_create()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._end = end
        self._durable_end = end

    def _open_or_create(self) -> Tuple[str, int, int]:
        try:
            with open(self._path, "rb") as f:
                header = f.readline()
                body_start = f.tell()
                if header.startswith(_MAGIC) and header.endswith(b"\n"):
                    journal_id = header[len(_MAGIC) :].strip().decode("ascii", "replace")
                    size = os.fstat(f.fileno()).st_size
                    tail_start = max(body_start, size - 4096)
                    f.seek(tail_start)
                    complete_end = tail_start + f.read().rfind(b"\n") + 1  # tail_start if no newline
                    if complete_end < size:
                        logger.info("action journal: dropping a partial last line (%d bytes)", size - complete_end)
                        os.truncate(self._path, complete_end)
                    return journal_id, body_start, complete_end
                logger.warning("action journal %s has no valid header; starting a new journal", self._path)
        except FileNotFoundError:
            pass
        journal_id = uuid.uuid4().hex
        header = _MAGIC + journal_id.encode("ascii") + b"\n"
        replace_file_durably(self._path, header)
        return journal_id, len(header), len(header)

    def _compact_if_large(self, holds_action: Callable[[Digest], bool], held: int) -> None:
        try:
            size = os.stat(self._path).st_size
        except FileNotFoundError:
            return
        if size < max(JOURNAL_COMPACT_MIN_BYTES, 4 * _BYTES_PER_LINE * held):
            return
        kept: "collections.OrderedDict[Digest, None]" = collections.OrderedDict()
        with open(self._path, "rb") as f:
            if not f.readline().startswith(_MAGIC):
                return  # not ours: _open_or_create starts a new journal
            for line in f:
                digest = _parse_line(line)
                if digest is not None and holds_action(digest):
                    kept.pop(digest, None)
                    kept[digest] = None  # the last write of each action, in write order
        header = _MAGIC + uuid.uuid4().hex.encode("ascii") + b"\n"
        body = b"".join(_line(digest) for digest in kept)
        replace_file_durably(self._path, header + body)
        logger.info(
            "action journal: compacted %d bytes to %d (%d actions still held)", size, len(header) + len(body), len(kept)
        )

    def append(self, digest: Digest) -> None:
        """Returns once the line is on disk; concurrent appends share fsyncs."""
        line = _line(digest)
        with self._write_lock:
            write_all(self._fd, line)
            self._end += len(line)
            mine = self._end
        with self._sync_lock:
            if self._durable_end >= mine:
                return
            target = self._end
            os.fdatasync(self._fd)
            self._durable_end = target

    def marker(self) -> str:
        """The marker for "now": what iter_since(marker()) will not yield."""
        return f"{self._id}:{self._durable_end}"

    def iter_since(self, marker: Optional[str]) -> Iterator[ActionJournalEntry]:
        """Action digests written after `marker`, oldest first; ValueError for a malformed marker."""
        start = self._header_end
        if marker is not None:
            journal_id, separator, offset_text = marker.rpartition(":")
            if not separator or not offset_text.isdigit():
                raise ValueError(f"invalid action journal marker {marker!r}: want '<journal id>:<offset>'")
            if journal_id == self._id:
                start = max(self._header_end, int(offset_text))
            else:
                logger.info("action journal marker is from another journal; reading from the beginning")
        end = self._durable_end
        if start >= end:
            return
        with open(self._path, "rb") as f:
            f.seek(start)
            position = start
            while position < end:
                line = f.readline()
                if not line.endswith(b"\n"):
                    return
                position += len(line)
                digest = _parse_line(line)
                if digest is None:
                    logger.warning("action journal: skipping a malformed line at offset %d", position - len(line))
                    continue
                yield ActionJournalEntry(digest, f"{self._id}:{position}")

    def close(self) -> None:
        os.close(self._fd)
