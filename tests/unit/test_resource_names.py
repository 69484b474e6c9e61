from __future__ import annotations

import hashlib

import pytest

from oci_cache.digests import Digest
from oci_cache.errors import InvalidArgumentError
from oci_cache.server.resource_names import parse_read_resource_name, parse_write_resource_name

HASH = hashlib.sha256(b"hello").hexdigest()
DIGEST = Digest(HASH, 5)


@pytest.mark.parametrize("instance", ["", "a", "a/b/c", "main-instance/x.y_z"])
def test_read_names_with_any_instance(instance: str) -> None:
    prefix = f"{instance}/" if instance else ""
    plain = parse_read_resource_name(f"{prefix}blobs/{HASH}/5")
    assert (plain.instance_name, plain.digest, plain.compressor) == (instance, DIGEST, None)
    compressed = parse_read_resource_name(f"{prefix}compressed-blobs/zstd/{HASH}/5")
    assert (compressed.instance_name, compressed.digest, compressed.compressor) == (instance, DIGEST, "zstd")
    assert compressed.is_compressed and not plain.is_compressed


@pytest.mark.parametrize("instance", ["", "a", "a/b/c"])
def test_write_names_with_any_instance_and_metadata(instance: str) -> None:
    prefix = f"{instance}/" if instance else ""
    name = f"{prefix}uploads/0b1c-uuid/blobs/{HASH}/5"
    for suffix in ("", "/some/metadata", "/x"):
        parsed = parse_write_resource_name(name + suffix)
        assert (parsed.instance_name, parsed.upload_id, parsed.digest, parsed.compressor) == (
            instance,
            "0b1c-uuid",
            DIGEST,
            None,
        )
    compressed = parse_write_resource_name(f"{prefix}uploads/u1/compressed-blobs/zstd/{HASH}/5/meta")
    assert (compressed.instance_name, compressed.upload_id, compressed.compressor) == (instance, "u1", "zstd")


def test_digest_function_segment_sha256_is_accepted() -> None:
    assert parse_read_resource_name(f"i/blobs/sha256/{HASH}/5").digest == DIGEST
    assert parse_write_resource_name(f"uploads/u/compressed-blobs/zstd/sha256/{HASH}/5").digest == DIGEST


def test_upload_key_separates_uploads_but_ignores_metadata() -> None:
    a = parse_write_resource_name(f"uploads/u1/blobs/{HASH}/5/meta1")
    b = parse_write_resource_name(f"uploads/u1/blobs/{HASH}/5/meta2")
    c = parse_write_resource_name(f"uploads/u2/blobs/{HASH}/5")
    d = parse_write_resource_name(f"uploads/u1/compressed-blobs/zstd/{HASH}/5")
    e = parse_write_resource_name(f"x/uploads/u1/blobs/{HASH}/5")
    assert a.upload_key == b.upload_key
    assert len({a.upload_key, c.upload_key, d.upload_key, e.upload_key}) == 4


BAD_READ_NAMES = [
    "",
    "blobs",
    f"blobs/{HASH}",
    f"blobs/{HASH}/",
    f"blobs/{HASH}/-5",
    f"blobs/{HASH}/+5",
    f"blobs/{HASH}/5x",
    f"blobs/{HASH}/٥",  # a non-ASCII digit
    f"blobs/{HASH}/99999999999999999999",
    f"blobs/{HASH}/5/extra",
    f"blobs/{HASH.upper()}/5",
    f"blobs/{HASH[:-1]}/5",
    "blobs/not-a-hash/5",
    f"/blobs/{HASH}/5",  # empty instance segment
    f"a//b/blobs/{HASH}/5",
    f"a/{HASH}/5",  # no keyword
    f"compressed-blobs/{HASH}/5",  # no compressor
    f"compressed-blobs/gzip/{HASH}/5",
    f"compressed-blobs/deflate/{HASH}/5",
    f"compressed-blobs/identity/{HASH}/5",
    f"blobs/blake3/{HASH}/5",
    f"blobs/sha256tree/{HASH}/5",
    f"uploads/u/blobs/{HASH}/5",  # a write name
    f"actionResults/{HASH}/5",
    "x" * 5000,
]


@pytest.mark.parametrize("name", BAD_READ_NAMES)
def test_malformed_read_names_are_invalid_argument(name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_read_resource_name(name)


BAD_WRITE_NAMES = [
    "",
    f"blobs/{HASH}/5",  # a read name
    f"uploads/blobs/{HASH}/5",  # no uuid
    f"uploads//blobs/{HASH}/5",
    f"uploads/u/{HASH}/5",
    f"uploads/u/blobs/{HASH}",
    f"uploads/u/blobs/{HASH}/abc",
    f"uploads/u/compressed-blobs/brotli/{HASH}/5",
    f"uploads/u/compressed-blobs/zstd/{HASH[:10]}/5",
    f"a//uploads/u/blobs/{HASH}/5",
    "uploads/u",
]


@pytest.mark.parametrize("name", BAD_WRITE_NAMES)
def test_malformed_write_names_are_invalid_argument(name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_write_resource_name(name)


def test_errors_name_the_problem() -> None:
    with pytest.raises(InvalidArgumentError, match="unsupported compressor 'deflate'"):
        parse_read_resource_name(f"compressed-blobs/deflate/{HASH}/5")
    with pytest.raises(InvalidArgumentError, match="unsupported digest function 'blake3'"):
        parse_read_resource_name(f"blobs/blake3/{HASH}/5")
    with pytest.raises(InvalidArgumentError, match="not a number"):
        parse_read_resource_name(f"blobs/{HASH}/five")
