"""Human-readable sizes ("10GiB") and durations ("1h30m") for options and flags.

Sizes: a non-negative number (decimals allowed, e.g. "1.5G") with an optional
unit, case-insensitive, optional space between number and unit:

- no unit or "B": bytes
- IEC units KiB, MiB, GiB, TiB: powers of 1024
- SI units KB, MB, GB, TB: powers of 1000
- bare K, M, G, T: powers of 1024 (as in `ls -h`, Docker's `--memory`)

A fractional result is rounded down to whole bytes.

Durations: one or more number+unit pairs ("7d", "168h", "1h30m", "1.5h", "250ms"),
units d (24 h), h, m, s, ms; a bare number is seconds.
"""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Dict, List, Tuple

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
_SIZE_PATTERN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")
_SIZE_ACCEPTED = (
    "a non-negative number with an optional unit: B, KiB/MiB/GiB/TiB (1024-based), "
    "KB/MB/GB/TB (1000-based) or K/M/G/T (1024-based), e.g. '10GiB', '512MB', '1.5G', '123'"
)

_FORMAT_SIZE_UNITS: List[Tuple[str, int]] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
]


def parse_size(text: str) -> int:
    """Bytes in `text` (see the module docstring); raises ValueError saying what is accepted."""
    if not isinstance(text, str):
        raise ValueError(f"invalid size {text!r}: want {_SIZE_ACCEPTED}")
    match = _SIZE_PATTERN.fullmatch(text)
    if not match:
        raise ValueError(f"invalid size {text!r}: want {_SIZE_ACCEPTED}")
    number, unit = match.groups()
    multiplier = _SIZE_UNITS.get(unit.lower())
    if multiplier is None:
        raise ValueError(f"invalid size {text!r}: unknown unit {unit!r}; want {_SIZE_ACCEPTED}")
    value = Decimal(number) * multiplier
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def format_size(size_bytes: int) -> str:
    """A short IEC form ("10GiB", "1.5MiB", "123B") that `parse_size` reads back
    (exactly when the value has at most three decimals in its unit)."""
    if size_bytes < 0:
        raise ValueError(f"invalid size {size_bytes!r}: want a non-negative number of bytes")
    for unit, multiplier in _FORMAT_SIZE_UNITS:
        if size_bytes >= multiplier:
            return _trimmed(Decimal(size_bytes) / multiplier) + unit
    return f"{size_bytes}B"



def format_size_rounded(size_bytes: int) -> str:
    """At most one decimal, for people reading a summary line ("0B", "512B", "2KiB",
    "7.4MiB", "3000GiB"); unlike `format_size`, not meant to be read back."""
    if size_bytes < 1024:
        return f"{size_bytes}B"
    value = size_bytes / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return _one_decimal(value) + unit
        value /= 1024
    return _one_decimal(value) + "GiB"


def _one_decimal(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")

_DURATION_UNITS: Dict[str, Decimal] = {
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|d|h|m|s)")
_DURATION_ACCEPTED = (
    "one or more number+unit pairs with units d, h, m, s, ms (e.g. '168h', '30m', '7d', "
    "'1h30m', '1.5h'), or a bare number of seconds"
)


def parse_duration(text: str) -> float:
    """Seconds in `text` (see the module docstring); raises ValueError saying what is accepted."""
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: want {_DURATION_ACCEPTED}")
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError(f"invalid duration {text!r}: want {_DURATION_ACCEPTED}")
    try:
        return float(Decimal(compact)) if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", compact) else _sum_parts(compact)
    except (InvalidOperation, ValueError):
        raise ValueError(f"invalid duration {text!r}: want {_DURATION_ACCEPTED}") from None


def _sum_parts(compact: str) -> float:
    total = Decimal(0)
    position = 0
    while position < len(compact):
        match = _DURATION_PART.match(compact, position)
        if not match:
            raise ValueError(compact)
        total += Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return float(total)


def format_duration(seconds: float) -> str:
    """A compact form ("7d", "1h30m", "1m30s", "1.5s", "250ms", "0s") that
    `parse_duration` reads back."""
    if seconds < 0:
        raise ValueError(f"invalid duration {seconds!r}: want a non-negative number of seconds")
    remaining = Decimal(repr(float(seconds)))
    if remaining == 0:
        return "0s"
    if remaining < 1:
        return _trimmed(remaining * 1000) + "ms"
    parts: List[str] = []
    for unit in ("d", "h", "m"):
        whole = int(remaining // _DURATION_UNITS[unit])
        if whole:
            parts.append(f"{whole}{unit}")
            remaining -= whole * _DURATION_UNITS[unit]
    if remaining:
        parts.append(_trimmed(remaining) + "s")
    return "".join(parts)


def _trimmed(value: Decimal) -> str:
    """At most three decimals, trailing zeros removed."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text
