"""The eStargz pieces of an estargz layer: TOC, landmark and footer.

Facts from the eStargz specification (containerd/stargz-snapshotter,
docs/estargz.md): the layer is a gzip tar whose non-empty regular files each start
a new gzip member (large files may be split into chunks, each a member); the TOC is
a JSON file named `stargz.index.json`, the last tar entry, whose tar header starts
a gzip member; the blob ends with a 51-byte footer — an empty gzip member whose
Extra field (subfield 'S','G') holds "%016xSTARGZ" % the TOC's offset; a landmark
file `.no.prefetch.landmark` (one byte 0x0f) marks that nothing is prioritised. The
layer descriptor carries `containerd.io/snapshot/stargz/toc.digest` (the TOC
JSON's digest) and `io.containers.estargz.uncompressed-size`.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from typing import Any, Dict, List, Optional, Tuple

from oci_cache.digests import Digest
from oci_cache.image_format import tar_headers
from oci_cache.image_format.compression import GzipMembersReader
from oci_cache.image_format.errors import ImageFormatError

TOC_NAME = "stargz.index.json"
NO_PREFETCH_LANDMARK = ".no.prefetch.landmark"
PREFETCH_LANDMARK = ".prefetch.landmark"
LANDMARK_CONTENT = b"\x0f"
FOOTER_SIZE = 51
TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
UNCOMPRESSED_SIZE_ANNOTATION = "io.containers.estargz.uncompressed-size"
MAX_TOC_SIZE = 1 << 30

_FILE_MODE = 0o644


class TocBuilder:
    """Collects TOC entries while a layer is written; offsets are filled in when
    the compressed position of each payload member is known."""

    def __init__(self) -> None:
        # Per entry: (type, name, size, chunk_offset, chunk_size, chunk_digest, digest)
        self._entries: List[Tuple[str, str, int, int, int, str, str]] = []
        self._offsets: List[int] = []

    def add_landmark(self, name: str, content: bytes) -> int:
        chunk_digest = "sha256:" + hashlib.sha256(content).hexdigest()
        return self._add(("reg", name, len(content), 0, 0, chunk_digest, chunk_digest))

    def add_empty_file(self, name: str) -> None:
        self._add(("reg", name, 0, 0, 0, "", ""))

    def add_chunk(self, name: str, digest: Digest, chunk_offset: int, data: bytes, last: bool) -> int:
        """A payload chunk starting at `chunk_offset` of the file; the first chunk
        is the file's `reg` entry, later ones are `chunk` entries."""
        chunk_digest = "sha256:" + hashlib.sha256(data).hexdigest()
        chunk_size = 0 if last else len(data)
        if chunk_offset == 0:
            entry = ("reg", name, digest.size_bytes, 0, chunk_size, chunk_digest, digest.oci)
        else:
            entry = ("chunk", name, 0, chunk_offset, chunk_size, chunk_digest, "")
        return self._add(entry)

    def _add(self, entry: Tuple[str, str, int, int, int, str, str]) -> int:
        self._entries.append(entry)
        self._offsets.append(0)
        return len(self._entries) - 1

    def set_offset(self, entry: int, offset: int) -> None:
        self._offsets[entry] = offset

    def finish(self) -> Tuple[bytes, str]:
        """The TOC JSON and its digest ("sha256:<hex>")."""
        parts = ['{"version":1,"entries":[']
        for number, (kind, name, size, chunk_offset, chunk_size, chunk_digest, digest) in enumerate(self._entries):
            fields = [f'"name":{json.dumps(name)}', f'"type":"{kind}"']
            if kind == "reg":
                if size:
                    fields.append(f'"size":{size}')
                fields.append(f'"mode":{_FILE_MODE},"uid":0,"gid":0')
            if chunk_digest:
                fields.append(f'"offset":{self._offsets[number]}')
            if chunk_offset:
                fields.append(f'"chunkOffset":{chunk_offset}')
            if chunk_size:
                fields.append(f'"chunkSize":{chunk_size}')
            if digest:
                fields.append(f'"digest":"{digest}"')
            if chunk_digest:
                fields.append(f'"chunkDigest":"{chunk_digest}"')
            parts.append(("," if number else "") + "{" + ",".join(fields) + "}")
        parts.append("]}")
        data = "".join(parts).encode("ascii")
        return data, "sha256:" + hashlib.sha256(data).hexdigest()


def footer(toc_offset: int) -> bytes:
    """The 51-byte eStargz footer pointing at the TOC member at `toc_offset`."""
    subfield = b"%016xSTARGZ" % toc_offset
    extra = b"SG" + struct.pack("<H", len(subfield)) + subfield
    header = b"\x1f\x8b\x08\x04" + b"\x00\x00\x00\x00" + b"\x00\xff" + struct.pack("<H", len(extra)) + extra
    empty_final_stored_block = b"\x01\x00\x00\xff\xff"
    result = header + empty_final_stored_block + struct.pack("<II", 0, 0)
    assert len(result) == FOOTER_SIZE
    return result


def parse_footer(data: bytes) -> int:
    """The TOC offset in a footer; raises ImageFormatError if `data` is not one."""
    if len(data) != FOOTER_SIZE:
        raise ImageFormatError(f"eStargz footer must be {FOOTER_SIZE} bytes (got {len(data)})")
    if data[:4] != b"\x1f\x8b\x08\x04" or data[12:16] != b"SG\x16\x00" or data[32:38] != b"STARGZ":
        raise ImageFormatError("not an eStargz footer")
    if struct.unpack("<H", data[10:12])[0] != 26 or data[38:] != b"\x01\x00\x00\xff\xff" + bytes(8):
        raise ImageFormatError("malformed eStargz footer")
    hex_offset = data[16:32]
    try:
        return int(hex_offset.decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        raise ImageFormatError(f"eStargz footer has a bad TOC offset {hex_offset!r}") from None


def read_toc(layer: bytes, expected_digest: Optional[str] = None) -> Dict[str, Any]:
    """The TOC of a whole estargz layer, found through its footer. Checks that the
    TOC is one gzip member holding the tar entry `stargz.index.json` followed by
    the end of archive, and (if given) its digest."""
    if len(layer) < FOOTER_SIZE:
        raise ImageFormatError("layer too short for an eStargz footer")
    toc_offset = parse_footer(layer[-FOOTER_SIZE:])
    if toc_offset >= len(layer) - FOOTER_SIZE:
        raise ImageFormatError(f"eStargz TOC offset {toc_offset} is outside the layer")
    reader = GzipMembersReader(io.BytesIO(layer[toc_offset : len(layer) - FOOTER_SIZE]))
    buffered = io.BufferedReader(reader)
    header = tar_headers.read_entry_header(buffered, "eStargz TOC")  # type: ignore[arg-type]
    if header is None or header.name != TOC_NAME:
        raise ImageFormatError(f"eStargz TOC member does not start with {TOC_NAME}")
    if header.size > MAX_TOC_SIZE:
        raise ImageFormatError(f"eStargz TOC of {header.size} bytes is too large")
    data = buffered.read(header.size)
    if len(data) != header.size:
        raise ImageFormatError("eStargz TOC is truncated")
    buffered.read(tar_headers.padding_length(header.size))
    if tar_headers.read_entry_header(buffered, "eStargz TOC") is not None:  # type: ignore[arg-type]
        raise ImageFormatError("eStargz TOC is not the last tar entry")
    if buffered.read(1):
        raise ImageFormatError("data after the end of archive in the eStargz TOC member")
    if expected_digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != expected_digest:
        raise ImageFormatError("eStargz TOC digest does not match the layer annotation")
    try:
        toc = json.loads(data)
    except ValueError as error:
        raise ImageFormatError(f"eStargz TOC is not JSON: {error}") from None
    if not isinstance(toc, dict) or toc.get("version") != 1 or not isinstance(toc.get("entries"), list):
        raise ImageFormatError("eStargz TOC lacks version 1 and entries")
    return toc
