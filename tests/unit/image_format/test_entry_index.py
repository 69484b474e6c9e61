"""The entry index: round trips, lookups, versioning and hostile blobs; the
1,000,000-entry size and timing (slow)."""

from __future__ import annotations

import hashlib
import struct
import time

import pytest
import zstandard

from oci_cache.digests import Digest
from oci_cache.image_format import entry_index
from oci_cache.image_format.entry_index import ActionEntry, BlobEntry, decode_index, encode_index
from oci_cache.image_format.errors import ImageFormatError, UnsupportedFormatVersionError

LAYERS = [Digest(hashlib.sha256(b"layer %d" % i).hexdigest(), 1 << 30) for i in range(3)]


def _digest(label: str, size: int = 100) -> Digest:
    return Digest(hashlib.sha256(label.encode()).hexdigest(), size)


def _blob(i: int, layer: int = 0) -> BlobEntry:
    return BlobEntry(_digest(f"blob {i}", 10 + i), layer, 1000 * i, 600 + i, 2000 * i, i % 2 == 0, 1_700_000_000 + i)


def _action(i: int) -> ActionEntry:
    return ActionEntry(_digest(f"action {i}", 140), _digest(f"result {i}", 90), i % 3 - 1, 1_690_000_000 + i, 1_700_000_000 + i, i % 3 == 1)


def _index_bytes() -> bytes:
    return encode_index(LAYERS, [_blob(i, i % 3) for i in range(50)], [_action(i) for i in range(20)])


def test_round_trip_keeps_every_field() -> None:
    blobs = [_blob(i, i % 3) for i in range(50)]
    actions = [_action(i) for i in range(20)]
    index = decode_index(encode_index(LAYERS, blobs, actions))
    assert index.version == (1, 1)
    assert index.layers == tuple(LAYERS)
    assert (index.blob_count, index.action_count) == (50, 20)
    assert sorted(index.iter_blobs()) == sorted(blobs)
    assert sorted(index.iter_actions()) == sorted(actions)
    assert [b.digest.hash for b in index.iter_blobs()] == sorted(b.digest.hash for b in blobs)
    assert index.total_blob_bytes() == sum(b.digest.size_bytes for b in blobs)
    for blob in blobs:
        assert index.find_blob(blob.digest) == blob
    for action in actions:
        assert index.find_action(action.action) == action


def test_negative_exit_codes_and_flags_survive() -> None:
    action = ActionEntry(_digest("a"), _digest("r"), -9, 1, 2, False)
    index = decode_index(encode_index([], [], [action]))
    assert index.find_action(action.action) == action


def test_misses() -> None:
    index = decode_index(_index_bytes())
    blob = _blob(4, 1)
    assert index.find_blob(_digest("absent")) is None
    assert index.find_blob(Digest(blob.digest.hash, blob.digest.size_bytes + 1)) is None, "size must match too"
    assert index.find_action(_digest("no such action", 140)) is None
    assert index.find_action(Digest(_action(3).action.hash, 1)) is None
    assert index.find_blob(Digest("zz", 1)) is None


def test_an_empty_index() -> None:
    index = decode_index(encode_index([], [], []))
    assert (index.blob_count, index.action_count, index.layers) == (0, 0, ())
    assert index.find_blob(_digest("x")) is None
    assert list(index.iter_blobs()) == []


def test_encoding_is_deterministic_whatever_the_input_order() -> None:
    blobs = [_blob(i) for i in range(30)]
    actions = [_action(i) for i in range(10)]
    assert encode_index(LAYERS, blobs, actions) == encode_index(LAYERS, reversed(blobs), reversed(actions))


def test_encoding_refuses_duplicates_and_unknown_layers() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        encode_index(LAYERS, [_blob(1), _blob(1)], [])
    with pytest.raises(ValueError, match="listed twice"):
        encode_index(LAYERS, [], [_action(1), _action(1)._replace(exit_code=5)])
    with pytest.raises(ValueError, match="outside 0..2"):
        encode_index(LAYERS, [_blob(1, 3)], [])
    with pytest.raises(ValueError, match="out of range"):
        encode_index(LAYERS, [_blob(1)._replace(compressed_offset=-1)], [])


def _header_fields(data: bytes) -> list:
    return list(entry_index._HEADER.unpack_from(data))


def _with_header(data: bytes, **changes: int) -> bytes:
    names = [
        "magic", "major", "minor", "header_size", "section_count", "codec",
        "compressed_size", "uncompressed_size", "blob_count", "action_count", "layer_count",
    ]
    fields = _header_fields(data)
    for name, value in changes.items():
        fields[names.index(name)] = value
    return entry_index._HEADER.pack(*fields) + data[entry_index._HEADER.size :]


def test_a_newer_major_version_is_refused_clearly() -> None:
    with pytest.raises(UnsupportedFormatVersionError, match=r"format version 2\.0, newer than the 1\.x.*upgrade"):
        decode_index(_with_header(_index_bytes(), major=2, minor=0))


def test_a_newer_minor_version_with_an_extra_section_is_read() -> None:
    data = _index_bytes()
    fields = _header_fields(data)
    section_count = fields[4]
    table_end = 64 + section_count * 24
    body = zstandard.ZstdDecompressor().decompress(data[table_end:])
    extra = b"future column"
    new_body = body + extra
    table = data[64:table_end] + entry_index._SECTION.pack(99, 1, len(body), len(extra))
    compressed = zstandard.ZstdCompressor(write_content_size=True).compress(new_body)
    fields[2] = 7  # minor
    fields[4] = section_count + 1
    fields[6] = len(compressed)
    fields[7] = len(new_body)
    newer = entry_index._HEADER.pack(*fields) + table + compressed
    index = decode_index(newer)
    assert index.version == (1, 7)
    assert index.find_blob(_blob(4, 1).digest) == _blob(4, 1)


@pytest.mark.parametrize(
    "label, mutate, message",
    [
        ("short", lambda d: d[:40], "shorter than its header"),
        ("magic", lambda d: b"NOTINDEX" + d[8:], "bad magic"),
        ("major zero", lambda d: _with_header(d, major=0), "unknown cache index format version 0"),
        ("truncated", lambda d: d[:-1], "header declares"),
        ("trailing", lambda d: d + b"x", "header declares"),
        ("sections", lambda d: _with_header(d, section_count=65), "malformed index header"),
        ("codec", lambda d: _with_header(d, codec=2), "malformed index header"),
        ("bomb ratio", lambda d: _with_header(d, uncompressed_size=1 << 31), "implausible body"),
        ("too many blobs", lambda d: _with_header(d, blob_count=10**6), "more entries than its body"),
        ("count mismatch", lambda d: _with_header(d, blob_count=49), "wrong size"),
        ("layer count", lambda d: _with_header(d, layer_count=2), "wrong size"),
        ("frame size", lambda d: _with_header(d, uncompressed_size=_header_fields(d)[7] + 1), "frame declares"),
    ],
)
def test_hostile_index_blobs_are_refused(label: str, mutate: object, message: str) -> None:
    with pytest.raises(ImageFormatError, match=message):
        decode_index(mutate(_index_bytes()))  # type: ignore[operator]


def _rebuild(body: bytes, table: bytes, fields: list) -> bytes:
    compressed = zstandard.ZstdCompressor(write_content_size=True).compress(body)
    fields[6] = len(compressed)
    fields[7] = len(body)
    return entry_index._HEADER.pack(*fields) + table + compressed


def _parts(data: bytes):  # type: ignore[no-untyped-def]
    fields = _header_fields(data)
    table_end = 64 + fields[4] * 24
    body = zstandard.ZstdDecompressor().decompress(data[table_end:])
    sections = {}
    for n in range(fields[4]):
        section_id, item, offset, length = entry_index._SECTION.unpack_from(data, 64 + n * 24)
        sections[section_id] = (offset, length)
    return fields, data[64:table_end], bytearray(body), sections


def test_unsorted_entries_are_refused() -> None:
    fields, table, body, sections = _parts(_index_bytes())
    offset, _ = sections[entry_index._BLOB_HASHES.section_id]
    first, second = bytes(body[offset : offset + 32]), bytes(body[offset + 32 : offset + 64])
    body[offset : offset + 32], body[offset + 32 : offset + 64] = second, first
    with pytest.raises(ImageFormatError, match="not sorted"):
        decode_index(_rebuild(bytes(body), table, fields))


def test_a_missing_section_is_refused() -> None:
    fields, table, body, _ = _parts(_index_bytes())
    table = bytearray(table)
    struct.pack_into("<I", table, 0, 98)  # rename the first (layer digests) section
    with pytest.raises(ImageFormatError, match="lacks section 1"):
        decode_index(_rebuild(bytes(body), bytes(table), fields))


def test_a_section_outside_the_body_is_refused() -> None:
    fields, table, body, _ = _parts(_index_bytes())
    table = bytearray(table)
    struct.pack_into("<Q", table, 8, len(body))
    with pytest.raises(ImageFormatError, match="section table"):
        decode_index(_rebuild(bytes(body), bytes(table), fields))


def test_an_entry_pointing_outside_its_layer_is_refused_on_lookup() -> None:
    blob = _blob(1)._replace(compressed_offset=(1 << 30) - 10)
    index = decode_index(encode_index(LAYERS, [blob], []))
    with pytest.raises(ImageFormatError, match="outside its layer"):
        index.find_blob(blob.digest)


def test_a_corrupt_body_is_refused() -> None:
    data = bytearray(_index_bytes())
    data[-5] ^= 0xFF
    with pytest.raises(ImageFormatError):
        decode_index(bytes(data))


@pytest.mark.slow
def test_one_million_entries_encode_decode_and_look_up_in_seconds() -> None:
    import os
    import random
    import tracemalloc

    rng = random.Random(5)
    layers = [Digest(os.urandom(32).hex(), 1 << 40) for _ in range(500)]
    blobs = [
        BlobEntry(Digest(os.urandom(32).hex(), rng.randrange(1, 1 << 22)), rng.randrange(500), rng.randrange(1 << 36),
                  rng.randrange(1, 1 << 22), rng.randrange(1 << 36), rng.random() < 0.7, 1_700_000_000 + rng.randrange(1 << 22))
        for _ in range(800_000)
    ]
    actions = [
        ActionEntry(Digest(os.urandom(32).hex(), rng.randrange(100, 300)), Digest(os.urandom(32).hex(), rng.randrange(50, 5000)),
                    0, 1_700_000_000 + rng.randrange(1 << 22), 1_700_000_000 + rng.randrange(1 << 22), True)
        for _ in range(200_000)
    ]
    started = time.perf_counter()
    data = encode_index(layers, blobs, actions)
    encode_seconds = time.perf_counter() - started
    tracemalloc.start()
    started = time.perf_counter()
    index = decode_index(data)
    decode_seconds = time.perf_counter() - started
    retained, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.perf_counter()
    for blob in blobs[:20000]:
        assert index.find_blob(blob.digest) == blob
    lookup_us = (time.perf_counter() - started) / 20000 * 1e6
    print(f"\n1M entries: {len(data) / 1e6:.1f} MB, encode {encode_seconds:.2f} s, decode {decode_seconds:.2f} s, "
          f"retained {retained / 1e6:.0f} MB, lookup {lookup_us:.1f} us")
    assert len(data) < 100e6
    assert retained < 150e6
    assert encode_seconds < 20 and decode_seconds < 10 and lookup_us < 500
