"""Layer compressions, their levels, and the codecs behind them.

Every compressed layer is a concatenation of independent units — gzip members
(gzip, estargz) or zstd frames (zstd) — so any unit boundary is a place where a
reader can start decompressing (what makes per-blob HTTP Range reads possible).
This module compresses one unit at a time and decompresses a run of units with a
bound on the output.

Codecs: zstd uses python-zstandard. gzip and estargz use ISA-L (`isal`, if
installed) at its default level 2 when no level is given — far less CPU than zlib level 6
for slightly larger output (docs/performance.md has the measurements) — and the standard library's zlib at exactly the
requested level when `compression-level` is given, so an explicit level means what it
means for gzip(1). Every gzip member header is normalised (MTIME 0, XFL 0, OS 255) so
the bytes do not depend on the platform.
"""

from __future__ import annotations

import io
import threading
import zlib
from enum import Enum
from typing import Any, BinaryIO, Callable, Optional, Tuple

import zstandard

from oci_cache.image_format.errors import ImageFormatError

try:  # ISA-L: optional accelerator for gzip (same format, different bytes).
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the environment
    _isal_zlib = None

ZSTD_DEFAULT_LEVEL = 3
ISAL_DEFAULT_LEVEL = 2
ZLIB_DEFAULT_LEVEL = 6
# Frames needing a larger window are refused on read (our writers never produce them).
ZSTD_MAX_WINDOW_SIZE = 1 << 27
_READ_CHUNK = 1 << 16


class Compression(str, Enum):
    """The `compression=` values of a cache-to entry, and a layer's compression."""

    UNCOMPRESSED = "uncompressed"
    GZIP = "gzip"
    ESTARGZ = "estargz"
    ZSTD = "zstd"

    @property
    def is_gzip_family(self) -> bool:
        return self in (Compression.GZIP, Compression.ESTARGZ)

    @property
    def level_range(self) -> Optional[Tuple[int, int]]:
        """Accepted `compression-level` values, or None when levels do not apply."""
        if self.is_gzip_family:
            return (0, 9)
        if self is Compression.ZSTD:
            return (0, 22)
        return None

    def check_level(self, level: Optional[int]) -> None:
        """Raises ValueError when `level` is not valid for this compression."""
        if level is None:
            return
        bounds = self.level_range
        if bounds is None:
            raise ValueError(f"compression-level does not apply to compression={self.value}")
        if isinstance(level, bool) or not isinstance(level, int) or not bounds[0] <= level <= bounds[1]:
            raise ValueError(
                f"compression-level for {self.value} must be an integer from {bounds[0]} to {bounds[1]} (got {level!r})"
            )


def parse_compression(text: str) -> Compression:
    """The Compression named `text`; raises ValueError naming the accepted values."""
    for compression in Compression:
        if compression.value == text:
            return compression
    accepted = ", ".join(c.value for c in Compression)
    raise ValueError(f"compression must be one of {accepted} (got {text!r})")


def gzip_backend_name(level: Optional[int]) -> str:
    """Which library compresses gzip units for `level` ("isal" or "zlib")."""
    return "isal" if level is None and _isal_zlib is not None else "zlib"


UnitCompressor = Callable[[bytes], bytes]


def unit_compressor_factory(compression: Compression, level: Optional[int]) -> Callable[[], UnitCompressor]:
    """A factory of functions that compress bytes into ONE independent unit (a
    gzip member or a zstd frame). Each thread must call the factory for its own
    function (zstd contexts are not thread-safe)."""
    compression.check_level(level)
    if compression is Compression.ZSTD:
        zstd_level = ZSTD_DEFAULT_LEVEL if level is None else level

        def make_zstd() -> UnitCompressor:
            context = zstandard.ZstdCompressor(level=zstd_level, write_content_size=True, write_checksum=False)
            return context.compress

        return make_zstd
    if compression.is_gzip_family:
        if level is None and _isal_zlib is not None:
            return lambda: _gzip_unit_compressor(_isal_zlib, ISAL_DEFAULT_LEVEL)
        zlib_level = ZLIB_DEFAULT_LEVEL if level is None else level
        return lambda: _gzip_unit_compressor(zlib, zlib_level)
    raise ValueError(f"compression={compression.value} has no compressed units")


def _gzip_unit_compressor(module: Any, level: int) -> UnitCompressor:
    def compress(data: bytes) -> bytes:
        compressor = module.compressobj(level, module.DEFLATED, 31)
        member = bytearray(compressor.compress(data))
        member += compressor.flush()
        # Header: ID1 ID2 CM FLG MTIME(4) XFL OS. Normalise XFL and OS.
        member[8] = 0
        member[9] = 255
        return bytes(member)

    return compress


class ThreadLocalUnitCompressor:
    """Calls a per-thread unit compressor made by `factory` (for thread pools)."""

    def __init__(self, factory: Callable[[], UnitCompressor]) -> None:
        self._factory = factory
        self._local = threading.local()

    def __call__(self, data: bytes) -> bytes:
        compress = getattr(self._local, "compress", None)
        if compress is None:
            compress = self._local.compress = self._factory()
        return compress(data)


def _gzip_decompressobj() -> Any:
    if _isal_zlib is not None:
        return _isal_zlib.decompressobj(31)
    return zlib.decompressobj(31)


_GZIP_ERRORS: Tuple[type, ...] = (zlib.error,) + ((_isal_zlib.error,) if _isal_zlib is not None else ())


class GzipMembersReader(io.RawIOBase):
    """Reads the decompressed bytes of a run of concatenated gzip members.

    Output is produced only as requested (`read(n)` never returns more than n
    bytes), so a caller that reads at most the size it expects is safe from
    decompression bombs. Raises ImageFormatError for bad or truncated input.
    """

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self._decompressor: Any = None
        self._pending = b""  # compressed input not yet given to a decompressor
        self._source_done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        want = len(buffer)
        if want == 0:
            return 0
        while True:
            if self._decompressor is None:
                if not self._pending and not self._fill():
                    return 0  # clean end: every member was complete
                self._decompressor = _gzip_decompressobj()
            decompressor = self._decompressor
            if decompressor.unconsumed_tail:
                data = decompressor.unconsumed_tail
            else:
                if not self._pending and not self._fill():
                    raise ImageFormatError("truncated gzip member")
                data, self._pending = self._pending, b""
            try:
                out = decompressor.decompress(data, want)
            except _GZIP_ERRORS as error:
                raise ImageFormatError(f"invalid gzip data: {error}") from None
            if decompressor.eof:
                self._pending = decompressor.unused_data + self._pending
                self._decompressor = None
            if out:
                buffer[: len(out)] = out
                return len(out)

    def _fill(self) -> bool:
        if self._source_done:
            return False
        chunk = self._source.read(_READ_CHUNK)
        if not chunk:
            self._source_done = True
            return False
        self._pending += chunk
        return True


class _ZstdFramesReader(io.RawIOBase):
    """Reads the decompressed bytes of a run of concatenated zstd frames, bounded
    like GzipMembersReader; errors become ImageFormatError."""

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        context = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW_SIZE)
        self._reader = context.stream_reader(source, read_size=_READ_CHUNK, read_across_frames=True)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        try:
            data = self._reader.read(len(buffer))
        except zstandard.ZstdError as error:
            raise ImageFormatError(f"invalid zstd data: {error}") from None
        buffer[: len(data)] = data
        return len(data)


def open_decompressed(source: BinaryIO, compression: Compression) -> BinaryIO:
    """A reader of the uncompressed bytes of `source`, a run of whole units."""
    if compression is Compression.UNCOMPRESSED:
        return source
    if compression is Compression.ZSTD:
        raw: io.RawIOBase = _ZstdFramesReader(source)
    else:
        raw = GzipMembersReader(source)
    return io.BufferedReader(raw, buffer_size=_READ_CHUNK)  # type: ignore[return-value]


def read_exactly(reader: BinaryIO, size: int, what: str) -> bytes:
    """`size` bytes from `reader`, or ImageFormatError saying `what` was truncated."""
    parts = []
    remaining = size
    while remaining > 0:
        chunk = reader.read(remaining)
        if not chunk:
            raise ImageFormatError(f"{what} is truncated: {size - remaining} of {size} bytes")
        parts.append(chunk)
        remaining -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
