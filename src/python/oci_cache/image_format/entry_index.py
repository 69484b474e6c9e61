"""The entry index: a binary, versioned, zstd-compressed blob listing every blob
and action of a cache image and where each blob lives.

Layout (little-endian; docs/format.md has the full table):

    header (64 bytes): magic, major, minor, header size, section count, body codec,
                       body compressed/uncompressed sizes, blob/action/layer counts
    section table:     per section: id, item size, offset and length in the body
    body:              one zstd frame holding the sections, column by column

Columns are fixed-width and the blob and action columns are sorted by hash, so a
decoded index is a few flat buffers (about 80 bytes per blob, 100 per action) that
are searched by bisection — no per-entry Python objects until one is looked up.

Compatibility: a reader accepts any minor version of its major version (sections
it does not know are skipped; flag bits it does not know are ignored) and refuses
a newer major version with UnsupportedFormatVersionError. Every declared count and
size is checked against the blob's length before anything is allocated.
"""

from __future__ import annotations

import bisect
import struct
import sys
from array import array
from itertools import islice
from operator import attrgetter, eq, itemgetter, lt
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import zstandard

from oci_cache.digests import Digest
from oci_cache.image_format.errors import ImageFormatError, UnsupportedFormatVersionError

FORMAT_MAJOR = 1
FORMAT_MINOR = 1
MAGIC = b"\x89PCIX\r\n\x1a"
BODY_CODEC_ZSTD = 1
MAX_SECTIONS = 64
MAX_BODY_SIZE = 4 << 30
# Hashes are incompressible, so a real body compresses by about 2x at most.
MAX_COMPRESSION_RATIO = 16
_RATIO_SLACK = 64 << 10
DEFAULT_LEVEL = 3

_HEADER = struct.Struct("<8sHHIIIQQQQI4x")
_SECTION = struct.Struct("<IIQQ")
assert _HEADER.size == 64

FLAG_MIN_ELIGIBLE = 1
"""Blob flag: needed by a min-eligible action. Action flag: kept by mode=min."""


class BlobEntry(NamedTuple):
    """A blob of the image and where its tar entry is (see layer_writer.LayerEntry);
    `layer` is the position of its layer in the manifest's `layers`."""

    digest: Digest
    layer: int
    compressed_offset: int
    compressed_length: int
    tar_offset: int
    min_eligible: bool = False
    last_used: int = 0
    """Unix seconds of the last use (0: unknown)."""


class ActionEntry(NamedTuple):
    """An action cache entry; its ActionResult is stored as the blob `result`."""

    action: Digest
    result: Digest
    exit_code: int
    created: int
    """Unix seconds when the result was first written."""
    last_used: int
    """Unix seconds of the last hit or write."""
    min_eligible: bool
    """Kept by a mode=min export (a successful action's output-only entry)."""


class CommandRecordEntry(NamedTuple):
    """A Command that is not in the image because it holds a secret, and the blob of
    its record (oci_cache.secret_masking.command_records) that stands in for it."""

    command: Digest
    record: Digest


class _Column(NamedTuple):
    section_id: int
    item_size: int
    typecode: str  # array typecode for numbers; "" for 32-byte hashes


_LAYER_DIGESTS = _Column(1, 32, "")
_LAYER_SIZES = _Column(2, 8, "Q")
_BLOB_HASHES = _Column(10, 32, "")
_BLOB_SIZES = _Column(11, 8, "Q")
_BLOB_LAYERS = _Column(12, 4, "I")
_BLOB_OFFSETS = _Column(13, 8, "Q")
_BLOB_LENGTHS = _Column(14, 8, "Q")
_BLOB_TAR_OFFSETS = _Column(15, 8, "Q")
_BLOB_FLAGS = _Column(16, 1, "B")
_BLOB_LAST_USED = _Column(17, 8, "q")
_ACTION_HASHES = _Column(20, 32, "")
_ACTION_SIZES = _Column(21, 8, "Q")
_RESULT_HASHES = _Column(22, 32, "")
_RESULT_SIZES = _Column(23, 8, "Q")
_EXIT_CODES = _Column(24, 4, "i")
_CREATED = _Column(25, 8, "q")
_ACTION_LAST_USED = _Column(26, 8, "q")
_ACTION_FLAGS = _Column(27, 1, "B")
# Since 1.1, optional (absent: no command records): sorted by command hash.
_COMMAND_HASHES = _Column(30, 32, "")
_COMMAND_SIZES = _Column(31, 8, "Q")
_RECORD_HASHES = _Column(32, 32, "")
_RECORD_SIZES = _Column(33, 8, "Q")
_COMMAND_RECORD_COLUMNS = (_COMMAND_HASHES, _COMMAND_SIZES, _RECORD_HASHES, _RECORD_SIZES)

_LAYER_COLUMNS = (_LAYER_DIGESTS, _LAYER_SIZES)
_BLOB_COLUMNS = (
    _BLOB_HASHES,
    _BLOB_SIZES,
    _BLOB_LAYERS,
    _BLOB_OFFSETS,
    _BLOB_LENGTHS,
    _BLOB_TAR_OFFSETS,
    _BLOB_FLAGS,
    _BLOB_LAST_USED,
)
_ACTION_COLUMNS = (
    _ACTION_HASHES,
    _ACTION_SIZES,
    _RESULT_HASHES,
    _RESULT_SIZES,
    _EXIT_CODES,
    _CREATED,
    _ACTION_LAST_USED,
    _ACTION_FLAGS,
)
_BLOB_RECORD_SIZE = sum(c.item_size for c in _BLOB_COLUMNS)
_ACTION_RECORD_SIZE = sum(c.item_size for c in _ACTION_COLUMNS)
_LAYER_RECORD_SIZE = sum(c.item_size for c in _LAYER_COLUMNS)
_LITTLE_ENDIAN = sys.byteorder == "little"


def _typecode(code: str) -> str:
    """`code`, checked to be as wide as the format says (true on every platform
    CPython supports, where I/i are 4 bytes and Q/q 8)."""
    return code


def _pack(column: _Column, values: Sequence[int]) -> bytes:
    try:
        packed = array(_typecode(column.typecode), values)
    except OverflowError as error:
        raise ValueError(f"index column {column.section_id}: value out of range ({error})") from None
    if packed.itemsize != column.item_size:
        raise AssertionError("platform array widths differ from the index format")
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def encode_index(
    layers: Sequence[Digest],
    blobs: Iterable[BlobEntry],
    actions: Iterable[ActionEntry],
    *,
    command_records: Iterable[CommandRecordEntry] = (),
    level: int = DEFAULT_LEVEL,
) -> bytes:
    """The index blob. `layers` are the manifest's layer digests in order (the
    blob entries' `layer` numbers index it). Blobs, actions and command records may
    come in any order; a digest given twice raises ValueError."""
    blob_list = sorted(blobs, key=_BLOB_KEY)
    action_list = sorted(actions, key=_ACTION_KEY)
    blob_digests, blob_layers, offsets, lengths, tar_offsets, blob_min, blob_used = _transpose(blob_list, 7)
    action_digests, result_digests, exit_codes, created, action_used, action_min = _transpose(action_list, 6)
    blob_hashes = list(map(_HASH, blob_digests))
    action_hashes = list(map(_HASH, action_digests))
    _check_unique(blob_hashes, "blob")
    _check_unique(action_hashes, "action")
    record_list = sorted(command_records, key=_COMMAND_KEY)
    command_hashes = [entry.command.hash for entry in record_list]
    _check_unique(command_hashes, "command")
    if blob_layers and not (0 <= min(blob_layers) and max(blob_layers) < len(layers)):
        raise ValueError(f"a blob entry names a layer outside 0..{len(layers) - 1}")
    columns: List[Tuple[_Column, bytes]] = [
        (_LAYER_DIGESTS, bytes.fromhex("".join(map(_HASH, layers)))),
        (_LAYER_SIZES, _pack(_LAYER_SIZES, list(map(_SIZE, layers)))),
        (_BLOB_HASHES, bytes.fromhex("".join(blob_hashes))),
        (_BLOB_SIZES, _pack(_BLOB_SIZES, list(map(_SIZE, blob_digests)))),
        (_BLOB_LAYERS, _pack(_BLOB_LAYERS, blob_layers)),
        (_BLOB_OFFSETS, _pack(_BLOB_OFFSETS, offsets)),
        (_BLOB_LENGTHS, _pack(_BLOB_LENGTHS, lengths)),
        (_BLOB_TAR_OFFSETS, _pack(_BLOB_TAR_OFFSETS, tar_offsets)),
        (_BLOB_FLAGS, bytes(map(bool, blob_min))),
        (_BLOB_LAST_USED, _pack(_BLOB_LAST_USED, blob_used)),
        (_ACTION_HASHES, bytes.fromhex("".join(action_hashes))),
        (_ACTION_SIZES, _pack(_ACTION_SIZES, list(map(_SIZE, action_digests)))),
        (_RESULT_HASHES, bytes.fromhex("".join(map(_HASH, result_digests)))),
        (_RESULT_SIZES, _pack(_RESULT_SIZES, list(map(_SIZE, result_digests)))),
        (_EXIT_CODES, _pack(_EXIT_CODES, exit_codes)),
        (_CREATED, _pack(_CREATED, created)),
        (_ACTION_LAST_USED, _pack(_ACTION_LAST_USED, action_used)),
        (_ACTION_FLAGS, bytes(map(bool, action_min))),
        (_COMMAND_HASHES, bytes.fromhex("".join(command_hashes))),
        (_COMMAND_SIZES, _pack(_COMMAND_SIZES, [entry.command.size_bytes for entry in record_list])),
        (_RECORD_HASHES, bytes.fromhex("".join(entry.record.hash for entry in record_list))),
        (_RECORD_SIZES, _pack(_RECORD_SIZES, [entry.record.size_bytes for entry in record_list])),
    ]
    table = []
    offset = 0
    for column, data in columns:
        table.append(_SECTION.pack(column.section_id, column.item_size, offset, len(data)))
        offset += len(data)
    body = b"".join(data for _, data in columns)
    threads = 2 if len(body) > (8 << 20) else 0
    compressed = zstandard.ZstdCompressor(level=level, write_content_size=True, threads=threads).compress(body)
    header = _HEADER.pack(
        MAGIC,
        FORMAT_MAJOR,
        FORMAT_MINOR,
        _HEADER.size,
        len(columns),
        BODY_CODEC_ZSTD,
        len(compressed),
        len(body),
        len(blob_list),
        len(action_list),
        len(layers),
    )
    return header + b"".join(table) + compressed


_BLOB_KEY = attrgetter("digest.hash")
_ACTION_KEY = attrgetter("action.hash")
_COMMAND_KEY = attrgetter("command.hash")
_HASH = attrgetter("hash")
_SIZE = attrgetter("size_bytes")


def _transpose(rows: Sequence[tuple], width: int) -> List[Sequence]:
    """The columns of `rows` (tuples of `width` fields)."""
    return [list(map(itemgetter(field), rows)) for field in range(width)]


def _check_unique(sorted_hashes: List[str], what: str) -> None:
    if any(map(eq, sorted_hashes, islice(sorted_hashes, 1, None))):
        duplicate = next(a for a, b in zip(sorted_hashes, sorted_hashes[1:]) if a == b)
        raise ValueError(f"{what} {duplicate} is listed twice in the index")


_ROWS_PER_BLOCK = 16384
"""Rows converted at a time by EntryIndex.iter_blobs/iter_actions (bounds their memory)."""


class _HashColumn:
    """A sequence view of a column of 32-byte hashes (for bisect)."""

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._count = len(data) // 32

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> bytes:
        start = index * 32
        return bytes(self._data[start : start + 32])

    def hex(self, index: int) -> str:
        start = index * 32
        return self._data[start : start + 32].hex()

    def hex_block(self, start: int, end: int) -> List[str]:
        """The hex of rows start..end-1, from one conversion of the block."""
        text = self._data[start * 32 : end * 32].hex()
        return [text[offset : offset + 64] for offset in range(0, len(text), 64)]

    def is_strictly_increasing(self) -> bool:
        data = self._data
        step = 32 * 65536
        for start in range(0, len(data), step):  # in slices, to bound the memory used
            block = bytes(data[start : start + step + 32])
            keys = [block[i : i + 32] for i in range(0, len(block), 32)]
            if not all(map(lt, keys, islice(keys, 1, None))):
                return False
        return True


class EntryIndex:
    """A decoded index. Lookups bisect the sorted hash columns."""

    def __init__(self, version: Tuple[int, int], layers: Tuple[Digest, ...], columns: Dict[int, memoryview]) -> None:
        self.version = version
        self.layers = layers
        self._blob_hashes = _HashColumn(columns[_BLOB_HASHES.section_id])
        self._blob_sizes = columns[_BLOB_SIZES.section_id]
        self._blob_layers = columns[_BLOB_LAYERS.section_id]
        self._blob_offsets = columns[_BLOB_OFFSETS.section_id]
        self._blob_lengths = columns[_BLOB_LENGTHS.section_id]
        self._blob_tar_offsets = columns[_BLOB_TAR_OFFSETS.section_id]
        self._blob_flags = columns[_BLOB_FLAGS.section_id]
        self._blob_last_used = columns[_BLOB_LAST_USED.section_id]
        self._action_hashes = _HashColumn(columns[_ACTION_HASHES.section_id])
        self._action_sizes = columns[_ACTION_SIZES.section_id]
        self._result_hashes = _HashColumn(columns[_RESULT_HASHES.section_id])
        self._result_sizes = columns[_RESULT_SIZES.section_id]
        self._exit_codes = columns[_EXIT_CODES.section_id]
        self._created = columns[_CREATED.section_id]
        self._action_last_used = columns[_ACTION_LAST_USED.section_id]
        self._action_flags = columns[_ACTION_FLAGS.section_id]
        empty = memoryview(b"")
        self._command_hashes = _HashColumn(columns.get(_COMMAND_HASHES.section_id, empty))
        self._command_sizes = columns.get(_COMMAND_SIZES.section_id, empty)
        self._record_hashes = _HashColumn(columns.get(_RECORD_HASHES.section_id, empty))
        self._record_sizes = columns.get(_RECORD_SIZES.section_id, empty)

    @property
    def blob_count(self) -> int:
        return len(self._blob_hashes)

    @property
    def action_count(self) -> int:
        return len(self._action_hashes)

    @property
    def command_record_count(self) -> int:
        return len(self._command_hashes)

    def find_command_record(self, command: Digest) -> Optional[Digest]:
        """The record blob standing in for `command` (left out: it holds a secret), or None."""
        index = _find(self._command_hashes, command.hash)
        if index is None or self._command_sizes[index] != command.size_bytes:
            return None
        return Digest(self._record_hashes.hex(index), self._record_sizes[index])

    def iter_command_records(self) -> Iterator[CommandRecordEntry]:
        """Every (command, record blob) pair, in command hash order."""
        for index in range(self.command_record_count):
            yield CommandRecordEntry(
                Digest(self._command_hashes.hex(index), self._command_sizes[index]),
                Digest(self._record_hashes.hex(index), self._record_sizes[index]),
            )

    def find_blob(self, digest: Digest) -> Optional[BlobEntry]:
        """The entry of `digest` (hash and size must match), or None."""
        index = _find(self._blob_hashes, digest.hash)
        if index is None or self._blob_sizes[index] != digest.size_bytes:
            return None
        return self._blob_at(index)

    def find_action(self, action: Digest) -> Optional[ActionEntry]:
        index = _find(self._action_hashes, action.hash)
        if index is None or self._action_sizes[index] != action.size_bytes:
            return None
        return self._action_at(index)

    def iter_blobs(self) -> Iterator[BlobEntry]:
        """Every blob entry, in hash order (read a block of rows at a time: converting
        whole column slices is several times faster than one row at a time)."""
        layer_sizes = [layer.size_bytes for layer in self.layers]
        for start in range(0, self.blob_count, _ROWS_PER_BLOCK):
            end = min(start + _ROWS_PER_BLOCK, self.blob_count)
            rows = zip(
                self._blob_hashes.hex_block(start, end),
                self._blob_sizes[start:end].tolist(),
                self._blob_layers[start:end].tolist(),
                self._blob_offsets[start:end].tolist(),
                self._blob_lengths[start:end].tolist(),
                self._blob_tar_offsets[start:end].tolist(),
                self._blob_flags[start:end].tolist(),
                self._blob_last_used[start:end].tolist(),
            )
            for hash_hex, size, layer, offset, length, tar_offset, flags, last_used in rows:
                digest = Digest(hash_hex, size)
                if layer >= len(layer_sizes) or offset + length > layer_sizes[layer]:
                    raise ImageFormatError(f"index entry of blob {digest} points outside its layer")
                yield BlobEntry(
                    digest, layer, offset, length, tar_offset, bool(flags & FLAG_MIN_ELIGIBLE), last_used
                )

    def iter_actions(self) -> Iterator[ActionEntry]:
        """Every action entry, in hash order (a block of rows at a time)."""
        for start in range(0, self.action_count, _ROWS_PER_BLOCK):
            end = min(start + _ROWS_PER_BLOCK, self.action_count)
            rows = zip(
                self._action_hashes.hex_block(start, end),
                self._action_sizes[start:end].tolist(),
                self._result_hashes.hex_block(start, end),
                self._result_sizes[start:end].tolist(),
                self._exit_codes[start:end].tolist(),
                self._created[start:end].tolist(),
                self._action_last_used[start:end].tolist(),
                self._action_flags[start:end].tolist(),
            )
            for action_hex, action_size, result_hex, result_size, exit_code, created, last_used, flags in rows:
                yield ActionEntry(
                    Digest(action_hex, action_size),
                    Digest(result_hex, result_size),
                    exit_code,
                    created,
                    last_used,
                    bool(flags & FLAG_MIN_ELIGIBLE),
                )

    def total_blob_bytes(self) -> int:
        return sum(self._blob_sizes)

    def _blob_at(self, index: int) -> BlobEntry:
        digest = Digest(self._blob_hashes.hex(index), self._blob_sizes[index])
        layer = self._blob_layers[index]
        offset = self._blob_offsets[index]
        length = self._blob_lengths[index]
        if layer >= len(self.layers) or offset + length > self.layers[layer].size_bytes:
            raise ImageFormatError(f"index entry of blob {digest} points outside its layer")
        return BlobEntry(
            digest,
            layer,
            offset,
            length,
            self._blob_tar_offsets[index],
            bool(self._blob_flags[index] & FLAG_MIN_ELIGIBLE),
            self._blob_last_used[index],
        )

    def _action_at(self, index: int) -> ActionEntry:
        return ActionEntry(
            Digest(self._action_hashes.hex(index), self._action_sizes[index]),
            Digest(self._result_hashes.hex(index), self._result_sizes[index]),
            self._exit_codes[index],
            self._created[index],
            self._action_last_used[index],
            bool(self._action_flags[index] & FLAG_MIN_ELIGIBLE),
        )


def _find(column: _HashColumn, hash_hex: str) -> Optional[int]:
    try:
        key = bytes.fromhex(hash_hex)
    except ValueError:
        return None
    index = bisect.bisect_left(column, key)  # type: ignore[call-overload]
    if index < len(column) and column[index] == key:
        return index
    return None


def decode_index(data: bytes) -> EntryIndex:
    """Parses and validates an index blob. Raises UnsupportedFormatVersionError
    for a newer major version and ImageFormatError for anything malformed."""
    if len(data) < _HEADER.size:
        raise ImageFormatError(f"index blob of {len(data)} bytes is shorter than its header")
    (
        magic,
        major,
        minor,
        header_size,
        section_count,
        codec,
        compressed_size,
        uncompressed_size,
        blob_count,
        action_count,
        layer_count,
    ) = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ImageFormatError("not a pants-oci-cache index (bad magic)")
    if major != FORMAT_MAJOR:
        if major > FORMAT_MAJOR:
            raise UnsupportedFormatVersionError(
                f"the cache index has format version {major}.{minor}, newer than the {FORMAT_MAJOR}.x "
                "this pants-oci-cache reads; upgrade pants-oci-cache to use this cache image"
            )
        raise ImageFormatError(f"unknown cache index format version {major}.{minor}")
    if header_size < _HEADER.size or section_count > MAX_SECTIONS or codec != BODY_CODEC_ZSTD:
        raise ImageFormatError("malformed index header")
    table_end = header_size + section_count * _SECTION.size
    if table_end + compressed_size != len(data):
        raise ImageFormatError(
            f"index blob is {len(data)} bytes but its header declares {table_end + compressed_size}"
        )
    if uncompressed_size > MAX_BODY_SIZE or uncompressed_size > compressed_size * MAX_COMPRESSION_RATIO + _RATIO_SLACK:
        raise ImageFormatError(f"index declares an implausible body of {uncompressed_size} bytes")
    needed = blob_count * _BLOB_RECORD_SIZE + action_count * _ACTION_RECORD_SIZE + layer_count * _LAYER_RECORD_SIZE
    if needed > uncompressed_size:
        raise ImageFormatError("index declares more entries than its body can hold")
    sections = {}
    for number in range(section_count):
        section_id, item_size, offset, length = _SECTION.unpack_from(data, header_size + number * _SECTION.size)
        if section_id in sections or offset + length > uncompressed_size:
            raise ImageFormatError(f"malformed index section table (section {section_id})")
        sections[section_id] = (item_size, offset, length)
    body = _decompress_body(data[table_end:], uncompressed_size)
    view = memoryview(body)
    columns: Dict[int, memoryview] = {}
    expected_counts = [(_LAYER_COLUMNS, layer_count), (_BLOB_COLUMNS, blob_count), (_ACTION_COLUMNS, action_count)]
    for group, count in expected_counts:
        for column in group:
            if column.section_id not in sections:
                raise ImageFormatError(f"index lacks section {column.section_id}")
            item_size, offset, length = sections[column.section_id]
            if item_size != column.item_size or length != count * item_size:
                raise ImageFormatError(f"index section {column.section_id} has the wrong size")
            columns[column.section_id] = _column_view(view[offset : offset + length], column)
    _optional_command_records(sections, view, columns)
    layer_hashes = _HashColumn(columns[_LAYER_DIGESTS.section_id])
    layers = tuple(Digest(layer_hashes.hex(i), columns[_LAYER_SIZES.section_id][i]) for i in range(layer_count))
    index = EntryIndex((major, minor), layers, columns)
    if not all(
        column.is_strictly_increasing() for column in (index._blob_hashes, index._action_hashes, index._command_hashes)
    ):
        raise ImageFormatError("index entries are not sorted by digest")
    return index


def _optional_command_records(sections: Dict[int, Tuple[int, int, int]], view: memoryview, columns: Dict[int, memoryview]) -> None:
    """The command record columns (1.1): all four or none, of one count."""
    present = [column for column in _COMMAND_RECORD_COLUMNS if column.section_id in sections]
    if not present:
        return
    if len(present) != len(_COMMAND_RECORD_COLUMNS):
        raise ImageFormatError("index has some of the command record sections but not all")
    first_size, _, first_length = sections[_COMMAND_HASHES.section_id]
    count = first_length // 32 if first_size == 32 else -1
    for column in _COMMAND_RECORD_COLUMNS:
        item_size, offset, length = sections[column.section_id]
        if item_size != column.item_size or count < 0 or length != count * item_size:
            raise ImageFormatError(f"index section {column.section_id} has the wrong size")
        columns[column.section_id] = _column_view(view[offset : offset + length], column)


def _decompress_body(compressed: bytes, uncompressed_size: int) -> bytes:
    try:
        declared = zstandard.frame_content_size(compressed)
    except zstandard.ZstdError as error:
        raise ImageFormatError(f"index body is not a zstd frame: {error}") from None
    if declared != uncompressed_size:
        raise ImageFormatError(f"index body frame declares {declared} bytes, the header {uncompressed_size}")
    decompressor = zstandard.ZstdDecompressor(max_window_size=1 << 27).decompressobj()
    try:
        body = decompressor.decompress(compressed)
    except zstandard.ZstdError as error:
        raise ImageFormatError(f"index body is corrupt: {error}") from None
    if len(body) != uncompressed_size or not decompressor.eof or decompressor.unused_data:
        raise ImageFormatError("index body is truncated or has trailing data")
    return body


def _column_view(view: memoryview, column: _Column) -> memoryview:
    if not column.typecode:
        return view
    if _LITTLE_ENDIAN:
        return view.cast(_typecode(column.typecode))
    values = array(_typecode(column.typecode))
    values.frombytes(view)
    values.byteswap()
    return memoryview(values)
