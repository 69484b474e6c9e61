"""The tar records of a cache layer: written byte-exactly, read back strictly.

Every entry of a cache layer is a regular file named `blobs/sha256/<hex>` with
mode 0644, uid/gid 0, empty user/group names and mtime 0, in POSIX ustar format, so
the same blob always gives the same bytes. A blob too large for ustar's 11 octal
digits (8 GiB and more) gets a PAX extended header carrying only `size`, as POSIX
pax defines. The archive ends with two zero blocks.

The reader accepts only what the writer produces: a ustar header with a valid
checksum, a regular file (no links, devices or directories), the exact expected
name, no prefix, no link name, and a size that matches; PAX headers only with a
`size` record.
"""

from __future__ import annotations

import re
from typing import BinaryIO, NamedTuple, Optional, Tuple

from oci_cache.image_format.errors import ImageFormatError

BLOCK_SIZE = 512
END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)
USTAR_MAX_SIZE = 8**11 - 1
BLOB_NAME_PREFIX = "blobs/sha256/"
_BLOB_NAME = re.compile(r"blobs/sha256/[0-9a-f]{64}")
_PAX_HEADER_NAME = b"././@PaxHeader"
_MAX_PAX_RECORDS = 256

# Header fields after the name (offset 100) up to the size (offset 124): mode, uid, gid.
_MODE_UID_GID = b"0000644\x00" + b"0000000\x00" + b"0000000\x00"
_MTIME = b"00000000000\x00"
_CHECKSUM_BLANK = b" " * 8
# After the typeflag (offset 157): linkname(100), magic+version, uname(32), gname(32),
# devmajor, devminor (empty, as for any non-device file), prefix(155), padding(12).
_TAIL = bytes(100) + b"ustar\x0000" + bytes(64 + 16 + 155 + 12)
_FIXED_SUM = sum(_MODE_UID_GID) + sum(_MTIME) + sum(_CHECKSUM_BLANK) + sum(_TAIL)


class EntryHeader(NamedTuple):
    """A parsed header: the entry's name, payload size, and how many header bytes
    (ustar block, plus PAX blocks if any) precede the payload."""

    name: str
    size: int
    header_length: int


def blob_entry_name(hash_hex: str) -> str:
    return BLOB_NAME_PREFIX + hash_hex


def padding_length(size: int) -> int:
    return -size % BLOCK_SIZE


def header_length(size: int) -> int:
    """Bytes of header the writer puts before a payload of `size` bytes."""
    return BLOCK_SIZE if size <= USTAR_MAX_SIZE else 3 * BLOCK_SIZE


def encode_file_header(name: str, size: int) -> bytes:
    """The header bytes (512, or 1536 with a PAX size record) of a regular file."""
    if size < 0:
        raise ValueError(f"invalid tar entry size {size}")
    if size <= USTAR_MAX_SIZE:
        return _ustar_block(name.encode("ascii"), size, b"0")
    records = _pax_size_record(size)
    pax_header = _ustar_block(_PAX_HEADER_NAME, len(records), b"x")
    pax_data = records + bytes(padding_length(len(records)))
    return pax_header + pax_data + _ustar_block(name.encode("ascii"), 0, b"0")


def _ustar_block(name: bytes, size: int, typeflag: bytes) -> bytes:
    if len(name) > 100:
        raise ValueError(f"tar entry name too long: {name[:120]!r}")
    name_field = name + bytes(100 - len(name))
    size_field = b"%011o\x00" % size
    checksum = _FIXED_SUM + sum(name) + sum(size_field) + typeflag[0]
    return (
        name_field
        + _MODE_UID_GID
        + size_field
        + _MTIME
        + b"%06o\x00 " % checksum
        + typeflag
        + _TAIL
    )


def _pax_size_record(size: int) -> bytes:
    body = f" size={size}\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return f"{length}{body}".encode("ascii")


def is_blob_entry_name(name: str) -> bool:
    return _BLOB_NAME.fullmatch(name) is not None


def read_entry_header(reader: BinaryIO, what: str) -> Optional[EntryHeader]:
    """Reads the next entry's header from a tar stream; None at a valid end of
    archive (two zero blocks). Raises ImageFormatError for anything else than a
    regular file as this module writes them, and for a stream that ends without
    the end-of-archive blocks."""
    block = _read_block(reader, what)
    if block == bytes(BLOCK_SIZE):
        if _read_block(reader, what) != bytes(BLOCK_SIZE):
            raise ImageFormatError(f"{what}: a lone zero block, not a valid end of archive")
        return None
    name, size, typeflag = _parse_ustar_block(block, what)
    if typeflag == b"x":
        if name.encode("ascii") != _PAX_HEADER_NAME or size >= BLOCK_SIZE:
            raise ImageFormatError(f"{what}: unexpected PAX header {name!r} of {size} bytes")
        data_block = _read_block(reader, what)
        pax_size = _parse_pax_size(data_block[:size], what)
        block = _read_block(reader, what)
        name, ustar_size, typeflag = _parse_ustar_block(block, what)
        if ustar_size not in (0, pax_size):
            raise ImageFormatError(f"{what}: PAX size {pax_size} disagrees with ustar size {ustar_size}")
        _check_regular(name, typeflag, what)
        return EntryHeader(name, pax_size, 3 * BLOCK_SIZE)
    _check_regular(name, typeflag, what)
    return EntryHeader(name, size, BLOCK_SIZE)


def read_blob_entry_header(reader: BinaryIO, hash_hex: str, size: int, what: str) -> None:
    """Reads the header of the next entry from `reader` and checks that it is
    exactly what the writer puts before blob `hash_hex` of `size` bytes (name,
    type, size, header layout); raises ImageFormatError."""
    header = read_entry_header(reader, what)
    expected_name = blob_entry_name(hash_hex)
    if header is None:
        raise ImageFormatError(f"{what}: end of archive where the entry of {expected_name} should be")
    if header.name != expected_name:
        raise ImageFormatError(f"{what}: tar entry is named {header.name[:120]!r}, expected {expected_name!r}")
    if header.size != size:
        raise ImageFormatError(f"{what}: tar entry {expected_name} has {header.size} bytes, expected {size}")
    if header.header_length != header_length(size):
        raise ImageFormatError(f"{what}: tar header of {expected_name} is {header.header_length} bytes, expected {header_length(size)}")


def _read_block(reader: BinaryIO, what: str) -> bytes:
    parts = []
    remaining = BLOCK_SIZE
    while remaining:
        chunk = reader.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    block = b"".join(parts)
    if len(block) != BLOCK_SIZE:
        raise ImageFormatError(f"{what}: truncated tar header ({len(block)} of {BLOCK_SIZE} bytes)")
    return block


def _parse_ustar_block(block: bytes, what: str) -> Tuple[str, int, bytes]:
    if block[257:265] != b"ustar\x0000":
        raise ImageFormatError(f"{what}: not a POSIX ustar header (magic {block[257:265]!r})")
    stored = _parse_octal(block[148:156], "checksum", what)
    actual = sum(block[:148]) + sum(_CHECKSUM_BLANK) + sum(block[156:])
    if stored != actual:
        raise ImageFormatError(f"{what}: tar header checksum {stored} does not match {actual}")
    raw_name = block[:100]
    name_bytes = raw_name.rstrip(b"\x00")
    if b"\x00" in name_bytes:
        raise ImageFormatError(f"{what}: tar entry name has an embedded NUL")
    if block[345:500].strip(b"\x00"):
        raise ImageFormatError(f"{what}: tar entry name uses the ustar prefix field")
    if block[157:257].strip(b"\x00"):
        raise ImageFormatError(f"{what}: tar entry has a link name")
    try:
        name = name_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise ImageFormatError(f"{what}: tar entry name is not ASCII: {name_bytes[:120]!r}") from None
    size = _parse_octal(block[124:136], "size", what)
    return name, size, block[156:157]


def _check_regular(name: str, typeflag: bytes, what: str) -> None:
    if typeflag not in (b"0", b"\x00"):
        raise ImageFormatError(f"{what}: tar entry {name[:120]!r} is not a regular file (type {typeflag!r})")
    if name.startswith("/") or ".." in name.split("/"):
        raise ImageFormatError(f"{what}: unsafe tar entry name {name[:120]!r}")


def _parse_octal(field: bytes, label: str, what: str) -> int:
    digits = field.strip(b" \x00")
    if not digits or any(c not in b"01234567" for c in digits):
        raise ImageFormatError(f"{what}: invalid tar {label} field {field!r}")
    return int(digits, 8)


def _parse_pax_size(data: bytes, what: str) -> int:
    size: Optional[int] = None
    position = 0
    count = 0
    while position < len(data):
        count += 1
        space = data.find(b" ", position)
        if space < 0 or count > _MAX_PAX_RECORDS:
            raise ImageFormatError(f"{what}: malformed PAX record")
        try:
            length = int(data[position:space])
        except ValueError:
            raise ImageFormatError(f"{what}: malformed PAX record length") from None
        end = position + length
        if length <= space - position or end > len(data) or data[end - 1 : end] != b"\n":
            raise ImageFormatError(f"{what}: malformed PAX record")
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep or key != b"size" or size is not None or not value.isdigit():
            raise ImageFormatError(f"{what}: unexpected PAX record {data[position:end][:80]!r}")
        size = int(value)
        position = end
    if size is None:
        raise ImageFormatError(f"{what}: PAX header without a size")
    return size
