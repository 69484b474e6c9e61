"""cache-to / cache-from entries: every key's good and bad values, round trips,
and that credentials never show up in text or errors."""

from __future__ import annotations

import pytest

from oci_cache.cache_entries import CacheEntryError, CacheFrom, CacheTo, parse_cache_from, parse_cache_to, redact
from oci_cache.image_format.compression import Compression

REF = "ghcr.io/acme/mono:cache-main"


def test_defaults_of_a_registry_cache_to_entry() -> None:
    entry = parse_cache_to(f"type=registry,ref={REF}")
    assert entry == CacheTo(type="registry", ref=REF)
    assert (entry.mode, entry.compression, entry.compression_level) == ("min", Compression.ZSTD, None)
    assert (entry.force_compression, entry.oci_mediatypes, entry.image_manifest) == (False, True, True)
    assert (entry.ignore_error, entry.insecure, entry.keep_duration, entry.keep_bytes) == (False, False, None, None)
    assert entry.location == REF


def test_every_key_of_a_cache_to_entry() -> None:
    entry = parse_cache_to(
        "type=registry,ref=localhost:5000/cache/repo:v1,mode=max,compression=gzip,compression-level=9,"
        "force-compression=true,oci-mediatypes=false,image-manifest=false,ignore-error=1,insecure=TRUE,"
        "keep-duration=168h,keep-bytes=10GB"
    )
    assert entry == CacheTo(
        type="registry",
        ref="localhost:5000/cache/repo:v1",
        mode="max",
        compression=Compression.GZIP,
        compression_level=9,
        force_compression=True,
        oci_mediatypes=False,
        image_manifest=False,
        ignore_error=True,
        insecure=True,
        keep_duration=168 * 3600.0,
        keep_bytes=10 * 10**9,
    )


def test_local_entries_use_dest_and_src_and_an_optional_tag() -> None:
    to = parse_cache_to("type=local,dest=/var/cache/oci,tag=main")
    assert (to.type, to.dest, to.tag, to.ref, to.location) == ("local", "/var/cache/oci", "main", None, "/var/cache/oci")
    source = parse_cache_from("type=local,src=/var/cache/oci")
    assert source == CacheFrom(type="local", src="/var/cache/oci")
    assert source.tag is None


def test_a_bare_reference_is_shorthand_for_a_registry_entry() -> None:
    assert parse_cache_from(REF) == CacheFrom(type="registry", ref=REF)
    assert parse_cache_to(REF) == CacheTo(type="registry", ref=REF)


def test_keys_are_case_insensitive_and_spaces_around_fields_are_ignored() -> None:
    assert parse_cache_to(f" Type=registry, REF={REF} , Mode=max") == CacheTo(type="registry", ref=REF, mode="max")


def test_a_quoted_field_may_hold_a_comma() -> None:
    entry = parse_cache_to('type=local,"dest=/tmp/a,b"')
    assert entry.dest == "/tmp/a,b"
    assert parse_cache_to(entry.to_text()) == entry


@pytest.mark.parametrize("compression", ["uncompressed", "gzip", "estargz", "zstd"])
def test_every_compression_is_accepted(compression: str) -> None:
    assert parse_cache_to(f"type=registry,ref={REF},compression={compression}").compression.value == compression


@pytest.mark.parametrize(
    "compression, level",
    [("gzip", 0), ("gzip", 9), ("estargz", 0), ("estargz", 9), ("zstd", 0), ("zstd", 22), ("zstd", 3)],
)
def test_compression_levels_at_the_bounds(compression: str, level: int) -> None:
    entry = parse_cache_to(f"type=registry,ref={REF},compression={compression},compression-level={level}")
    assert entry.compression_level == level


def test_the_level_alone_applies_to_the_default_zstd() -> None:
    assert parse_cache_to(f"type=registry,ref={REF},compression-level=19").compression_level == 19


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1"])
def test_true_booleans(value: str) -> None:
    assert parse_cache_to(f"type=registry,ref={REF},ignore-error={value}").ignore_error is True


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_false_booleans(value: str) -> None:
    assert parse_cache_to(f"type=registry,ref={REF},oci-mediatypes={value}").oci_mediatypes is False


@pytest.mark.parametrize(
    "duration, seconds", [("168h", 604800.0), ("7d", 604800.0), ("1h30m", 5400.0), ("90", 90.0), ("250ms", 0.25)]
)
def test_keep_duration_values(duration: str, seconds: float) -> None:
    assert parse_cache_to(f"type=registry,ref={REF},keep-duration={duration}").keep_duration == seconds


@pytest.mark.parametrize("size, value", [("10GB", 10**10), ("10GiB", 10 << 30), ("512M", 512 << 20), ("123", 123)])
def test_keep_bytes_values(size: str, value: int) -> None:
    assert parse_cache_to(f"type=registry,ref={REF},keep-bytes={size}").keep_bytes == value


def _error(parse: object, text: str) -> str:
    with pytest.raises(CacheEntryError) as caught:
        parse(text)  # type: ignore[operator]
    return str(caught.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("type=registry,mode=all", 'cache-to entry "type=registry,mode=all": mode must be one of min, max (got "all")'),
        (f"type=registry,ref={REF},compression=lz4", "compression must be one of uncompressed, gzip, estargz, zstd"),
        (f"type=registry,ref={REF},compression=gzip,compression-level=10", "from 0 to 9 for compression=gzip"),
        (f"type=registry,ref={REF},compression=estargz,compression-level=-1", "from 0 to 9 for compression=estargz"),
        (f"type=registry,ref={REF},compression-level=23", "from 0 to 22 for compression=zstd"),
        (f"type=registry,ref={REF},compression-level=fast", 'from 0 to 22 for compression=zstd (got "fast")'),
        (f"type=registry,ref={REF},compression=uncompressed,compression-level=1", "does not apply to compression=uncompressed"),
        (f"type=registry,ref={REF},force-compression=yes", 'force-compression must be true or false (got "yes")'),
        (f"type=registry,ref={REF},oci-mediatypes=2", "oci-mediatypes must be true or false"),
        (f"type=registry,ref={REF},image-manifest=on", "image-manifest must be true or false"),
        (f"type=registry,ref={REF},ignore-error=", "ignore-error has an empty value"),
        (f"type=registry,ref={REF},insecure=maybe", "insecure must be true or false"),
        (f"type=registry,ref={REF},keep-duration=5weeks", "keep-duration: invalid duration"),
        (f"type=registry,ref={REF},keep-duration=0s", "keep-duration must be greater than zero"),
        (f"type=registry,ref={REF},keep-bytes=lots", "keep-bytes: invalid size"),
        (f"type=registry,ref={REF},keep-bytes=0", "keep-bytes must be greater than zero"),
        ("type=s3,ref=x", 'type must be one of registry, local (got "s3")'),
        (f"ref={REF}", "type is required; one of registry, local"),
        ("type=registry", "ref is required for type=registry"),
        ("type=registry,ref=Acme/Repo", "repository names must be lowercase"),
        ("type=registry,ref=ghcr.io/acme/repo:-bad", "invalid tag"),
        ("type=registry,ref=ghcr.io/acme/repo@sha256:" + "a" * 64, "must name a tag, not a digest"),
        ("type=local", "dest is required for type=local"),
        ("type=local,dest=/x,ref=ghcr.io/a/b", "ref applies to type=registry; a type=local entry uses dest="),
        ("type=registry,ref=ghcr.io/a/b,dest=/x", "dest applies to type=local"),
        ("type=registry,ref=ghcr.io/a/b,tag=v1", "tag applies to type=local"),
        ("type=local,dest=/x,tag=.bad", "tag: invalid tag"),
        ("type=local,dest=/x,insecure=true", "insecure applies to type=registry only"),
        ("type=local,src=/x", "src is for cache-from entries; a type=local cache-to entry uses dest="),
        (f"type=registry,ref={REF},colour=blue", "unknown key 'colour'; the keys of a cache-to entry are type, ref"),
        (f"type=registry,ref={REF},mode=max,mode=min", "key 'mode' is given more than once"),
        (f"type=registry,ref={REF},MODE=max,mode=min", "key 'mode' is given more than once"),
        (f"type=registry,ref={REF},nonsense", "field 'nonsense' is not key=value"),
        ("", "the entry is empty"),
        ("   ", "the entry is empty"),
        ('type=registry,"ref=x', "cannot split the entry into fields"),
        ("type=registry,ref=a\ntype=local,dest=/x", "one line"),
    ],
)
def test_bad_cache_to_entries_name_the_key_and_the_accepted_values(text: str, message: str) -> None:
    assert message in _error(parse_cache_to, text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("type=local,dest=/x", "dest is for cache-to entries; a type=local cache-from entry uses src="),
        ("type=local", "src is required for type=local"),
        (f"type=registry,ref={REF},mode=all", "mode must be one of min, max"),
        (f"type=registry,ref={REF},compression=brotli", "compression must be one of"),
        (f"type=registry,ref={REF},colour=blue", "the keys of a cache-from entry are type, ref, src"),
        ("type=registry,ref=UPPER/case", "repository names must be lowercase"),
    ],
)
def test_bad_cache_from_entries(text: str, message: str) -> None:
    assert message in _error(parse_cache_from, text)


def test_cache_from_accepts_and_reports_export_only_keys() -> None:
    text = f"type=registry,ref={REF},mode=max,compression=gzip,compression-level=5,keep-bytes=1GB,ignore-error=true"
    entry = parse_cache_from(text)
    assert entry == CacheFrom(type="registry", ref=REF)
    assert entry.ignored_keys == ("mode", "compression", "compression-level", "ignore-error", "keep-bytes")
    assert entry.to_text() == f"type=registry,ref={REF}"


@pytest.mark.parametrize("size, value", [("64MiB", 64 << 20), ("0", 0), ("1GB", 10**9)])
def test_a_cache_from_prefetch_bound_is_a_size_and_round_trips(size: str, value: int) -> None:
    entry = parse_cache_from(f"type=registry,ref={REF},prefetch={size}")
    assert entry.prefetch_bytes == value
    assert parse_cache_from(entry.to_text()) == entry
    assert parse_cache_from(f"type=registry,ref={REF}").prefetch_bytes is None


def test_a_bad_prefetch_bound_is_refused_and_cache_to_checks_then_ignores_the_key() -> None:
    assert "prefetch must be a size such as 256MiB, or 0 for no prefetch" in _error(
        parse_cache_from, f"type=registry,ref={REF},prefetch=lots"
    )
    assert "prefetch must be a size" in _error(parse_cache_to, f"type=registry,ref={REF},prefetch=-1")
    assert parse_cache_to(f"type=registry,ref={REF},prefetch=8MiB") == parse_cache_to(f"type=registry,ref={REF}")


def test_cache_from_may_pin_a_digest_and_be_insecure() -> None:
    ref = "localhost:5000/cache@sha256:" + "b" * 64
    entry = parse_cache_from(f"type=registry,ref={ref},insecure=true")
    assert (entry.ref, entry.insecure) == (ref, True)
    assert parse_cache_from(entry.to_text()) == entry


@pytest.mark.parametrize(
    "text",
    [
        f"type=registry,ref={REF}",
        f"type=registry,ref={REF},mode=max,compression=estargz,compression-level=0",
        f"type=registry,ref={REF},compression=uncompressed,force-compression=true,oci-mediatypes=false",
        f"type=registry,ref={REF},image-manifest=false,ignore-error=true,insecure=true",
        f"type=registry,ref={REF},keep-duration=1h30m,keep-bytes=10GB",
        f"type=registry,ref={REF},keep-duration=0.25,keep-bytes=1.5GiB",
        f"type=registry,ref={REF},keep-duration=1.0001s,keep-bytes=1000001",
        'type=local,"dest=/tmp/with,comma and ""quote""",tag=v1.2',
        "type=local,dest=relative/dir",
    ],
)
def test_cache_to_round_trips_through_to_text(text: str) -> None:
    entry = parse_cache_to(text)
    again = parse_cache_to(entry.to_text())
    assert again == entry
    assert again.to_text() == entry.to_text()
    assert str(entry) == entry.to_text()


def test_to_text_leaves_out_defaults() -> None:
    assert parse_cache_to(f"type=registry,ref={REF},mode=min,compression=zstd,oci-mediatypes=true").to_text() == (
        f"type=registry,ref={REF}"
    )


@pytest.mark.parametrize(
    "ref",
    [
        "user:s3cret@ghcr.io/acme/repo:tag",
        "https://user:s3cret@ghcr.io/acme/repo:tag",
        "s3cret@ghcr.io/acme/repo",
        "user:s3cret@repo@sha256:" + "c" * 64,
    ],
)
def test_credentials_are_rejected_and_never_echoed(ref: str) -> None:
    for parse, kind in ((parse_cache_to, "cache-to"), (parse_cache_from, "cache-from")):
        message = _error(parse, f"type=registry,ref={ref}")
        assert "s3cret" not in message
        assert "***@" in message
        assert "credentials" in message
        assert message.startswith(f'{kind} entry "')


def test_credentials_are_masked_in_errors_about_other_keys() -> None:
    message = _error(parse_cache_to, "type=registry,ref=user:s3cret@ghcr.io/a/b,mode=all")
    assert "s3cret" not in message and "mode must be one of min, max" in message


def test_redact_keeps_digests_and_plain_references() -> None:
    text = "type=registry,ref=ghcr.io/a/b@sha256:" + "d" * 64
    assert redact(text) == text
    assert redact("ref=u:p@host/x") == "ref=***@host/x"
    assert redact("u:p@host/x,mode=max") == "***@host/x,mode=max"


def test_to_text_never_contains_credentials_because_parsing_refuses_them() -> None:
    entry = parse_cache_to(f"type=registry,ref={REF},insecure=true")
    assert "@" not in entry.to_text()
