from __future__ import annotations

import pytest

from oci_cache.sizes import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    "text, expected",
    [
        ("123", 123),
        ("0", 0),
        ("123B", 123),
        ("10GiB", 10 * 1024**3),
        ("10GB", 10 * 1000**3),
        ("512MiB", 512 * 1024**2),
        ("512MB", 512 * 1000**2),
        ("1.5G", 1536 * 1024**2),
        ("4K", 4096),
        ("4kb", 4000),
        ("4 KiB", 4096),
        (" 2TiB ", 2 * 1024**4),
        ("1TB", 10**12),
        ("0.1K", 102),  # rounded down to whole bytes
        (".5M", 512 * 1024),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", " ", "x", "-1", "1.2.3", "10XB", "GiB", "inf", "nan", "1e9", "10 G B"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(text)
    message = str(info.value)
    assert repr(text) in message
    assert "KiB/MiB/GiB/TiB (1024-based)" in message and "KB/MB/GB/TB (1000-based)" in message


def test_parse_size_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_size(10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "size, expected",
    [
        (0, "0B"),
        (123, "123B"),
        (1023, "1023B"),
        (1024, "1KiB"),
        (1536, "1.5KiB"),
        (10 * 1024**3, "10GiB"),
        (3 * 1024**4, "3TiB"),
    ],
)
def test_format_size(size: int, expected: str) -> None:
    assert format_size(size) == expected


@pytest.mark.parametrize("size", [0, 1, 4096, 1536 * 1024**2, 10 * 1024**3, 5 * 1024**4 + 512 * 1024**3])
def test_format_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_format_size_rejects_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        format_size(-1)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("168h", 168 * 3600.0),
        ("30m", 1800.0),
        ("90s", 90.0),
        ("7d", 7 * 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("1m0.5s", 60.5),
        ("90", 90.0),
        ("0", 0.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "h", "1x", "-1s", "1h30", "1w", "s1", "1.2.3s", "1hh"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert "units d, h, m, s, ms" in str(info.value)


@pytest.mark.parametrize(
    "seconds, expected",
    [(0, "0s"), (0.25, "250ms"), (1.5, "1.5s"), (90, "1m30s"), (5400, "1h30m"), (604800, "7d"), (90061, "1d1h1m1s")],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected
    assert parse_duration(expected) == pytest.approx(seconds)


def test_format_duration_rejects_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        format_duration(-1)
