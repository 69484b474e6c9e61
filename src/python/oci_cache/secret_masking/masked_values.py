"""Masked values that still compare: a keyed digest with a key kept off the image.

    key = load_or_create_masking_key(state_dir / MASKING_KEY_FILE)
    mask_value("tok-123", key)      # '<masked:hmac:3f9c…(24 hex)>', the same every run
    key.key_id                      # 'k1:5e2d…', recorded beside masked values

A masked value is `<masked:hmac:` + the first 24 hex digits (96 bits) of
HMAC-SHA256(key, "pants-oci-cache/mask/v1\\0" + value as UTF-8) + `>`. The key is 32
random bytes in a file of the state directory, created 0600 on first use and never
exported, so the masked form of a short value cannot be brute-forced from an image
(a salted hash with the salt in the image could). The same value masks the same way
for every run that uses the same key file: on one machine, or on every machine that
is given a copy of the file (e.g. CI writes it from a CI secret before the build).
Masks made with different keys do not compare; `key_id` (a keyed digest of a
constant, which reveals nothing of the key) tells whether two masks can be compared.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

MASKING_KEY_FILE = "secret-masking.key"
KEY_BYTES = 32
MASK_HEX_DIGITS = 24
MASKED_PATTERN = re.compile(r"<masked:hmac:[0-9a-f]{%d}>" % MASK_HEX_DIGITS)
_DOMAIN = b"pants-oci-cache/mask/v1\0"
_KEY_ID_DOMAIN = b"pants-oci-cache/key-id/v1"


@dataclass(frozen=True)
class MaskingKey:
    secret: bytes = field(repr=False)
    ephemeral: bool = False
    """True for a key made up for this process because no key file could be used:
    its masks compare within this process only."""

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("a masking key needs at least 16 bytes")

    @property
    def key_id(self) -> str:
        return "k1:" + hmac.new(self.secret, _KEY_ID_DOMAIN, hashlib.sha256).hexdigest()[:16]

    @classmethod
    def random(cls, *, ephemeral: bool = False) -> "MaskingKey":
        return cls(secrets.token_bytes(KEY_BYTES), ephemeral=ephemeral)


def mask_value(value: str, key: MaskingKey) -> str:
    """The printable masked form of `value` (see the module docstring)."""
    mac = hmac.new(key.secret, _DOMAIN + value.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return f"<masked:hmac:{mac.hexdigest()[:MASK_HEX_DIGITS]}>"


def is_masked(text: str) -> bool:
    """Whether `text` is exactly one masked value."""
    return MASKED_PATTERN.fullmatch(text) is not None


def load_or_create_masking_key(path: Path) -> MaskingKey:
    """The key in `path`, created (0600, 32 random bytes, atomically) when absent;
    raises OSError when it can be neither read nor created, ValueError when the file is
    too short to be a key."""
    path = Path(path)
    existing = _read_key(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(str(temp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(str(temp), str(path))  # fails if another process created it meanwhile: use theirs
    except FileExistsError:
        pass
    finally:
        os.unlink(str(temp))
    key = _read_key(path)
    if key is None:
        raise OSError(f"cannot read the masking key {path} just created")
    return key


def _read_key(path: Path) -> Optional[MaskingKey]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(4096)
    except FileNotFoundError:
        return None
    if len(data) < 16:
        raise ValueError(f"{path} holds {len(data)} bytes, too few for a masking key (want {KEY_BYTES})")
    return MaskingKey(data)


__all__ = [
    "MASKED_PATTERN",
    "MASKING_KEY_FILE",
    "MaskingKey",
    "is_masked",
    "load_or_create_masking_key",
    "mask_value",
]
