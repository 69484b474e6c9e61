"""The entry index's command records (format 1.1): which Command each record blob
stands in for; an index without them (1.0) reads as having none."""

from __future__ import annotations

import hashlib
import struct
from typing import List

import pytest
import zstandard

from oci_cache.digests import Digest
from oci_cache.image_format import entry_index
from oci_cache.image_format.entry_index import ActionEntry, BlobEntry, CommandRecordEntry, decode_index, encode_index
from oci_cache.image_format.errors import ImageFormatError

LAYERS = [Digest(hashlib.sha256(b"layer").hexdigest(), 1 << 20)]


def _digest(label: str, size: int = 100) -> Digest:
    return Digest(hashlib.sha256(label.encode()).hexdigest(), size)


def _records(count: int) -> List[CommandRecordEntry]:
    return [CommandRecordEntry(_digest(f"command {i}", 300 + i), _digest(f"record {i}", 400 + i)) for i in range(count)]


BLOBS = [BlobEntry(_digest(f"record {i}", 400 + i), 0, 1000 * i, 500, 1024 * i) for i in range(3)]
ACTIONS = [ActionEntry(_digest("action"), _digest("result"), 0, 1, 2, False)]


def test_command_records_round_trip_and_are_found_by_command_digest() -> None:
    records = _records(3)
    index = decode_index(encode_index(LAYERS, BLOBS, ACTIONS, command_records=reversed(records)))
    assert index.version == (1, 1)
    assert index.command_record_count == 3
    assert list(index.iter_command_records()) == sorted(records, key=lambda r: r.command.hash)
    assert index.find_command_record(records[1].command) == records[1].record
    assert index.find_command_record(Digest(records[1].command.hash, 1)) is None  # size must match too
    assert index.find_command_record(_digest("not a command")) is None


def test_an_index_without_command_records_has_none() -> None:
    index = decode_index(encode_index(LAYERS, BLOBS, ACTIONS))
    assert index.command_record_count == 0 and list(index.iter_command_records()) == []
    assert index.find_command_record(_records(1)[0].command) is None


def test_a_command_listed_twice_is_refused() -> None:
    record = _records(1)[0]
    with pytest.raises(ValueError, match="command .* twice"):
        encode_index(LAYERS, BLOBS, ACTIONS, command_records=[record, record._replace(record=_digest("other"))])


def _without_sections(data: bytes, dropped: set) -> bytes:
    """`data` re-encoded with the sections in `dropped` left out of the table (the body is kept)."""
    fields = list(entry_index._HEADER.unpack_from(data))
    count = fields[4]
    table_end = 64 + count * 24
    table = [data[64 + i * 24 : 64 + (i + 1) * 24] for i in range(count)]
    kept = [row for row in table if struct.unpack_from("<I", row)[0] not in dropped]
    fields[4] = len(kept)
    return entry_index._HEADER.pack(*fields) + b"".join(kept) + data[table_end:]


def test_a_1_0_index_reads_as_having_no_command_records() -> None:
    data = encode_index(LAYERS, BLOBS, ACTIONS, command_records=_records(2))
    older = _without_sections(data, {30, 31, 32, 33})
    assert decode_index(older).command_record_count == 0
    assert decode_index(older).find_blob(BLOBS[0].digest) == BLOBS[0]


def test_an_index_with_only_some_command_record_sections_is_refused() -> None:
    data = encode_index(LAYERS, BLOBS, ACTIONS, command_records=_records(2))
    with pytest.raises(ImageFormatError, match="some of the command record sections"):
        decode_index(_without_sections(data, {33}))


def test_unsorted_command_records_are_refused() -> None:
    data = encode_index(LAYERS, BLOBS, ACTIONS, command_records=_records(3))
    fields = list(entry_index._HEADER.unpack_from(data))
    table_end = 64 + fields[4] * 24
    sections = {}
    for i in range(fields[4]):
        section_id, _, offset, length = entry_index._SECTION.unpack_from(data, 64 + i * 24)
        sections[section_id] = (offset, length)
    body = bytearray(zstandard.ZstdDecompressor().decompress(data[table_end:]))
    offset, length = sections[30]
    first, second = bytes(body[offset : offset + 32]), bytes(body[offset + 32 : offset + 64])
    body[offset : offset + 64] = second + first
    compressed = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(body))
    fields[6] = len(compressed)
    swapped = entry_index._HEADER.pack(*fields) + data[64:table_end] + compressed
    with pytest.raises(ImageFormatError, match="not sorted"):
        decode_index(swapped)
