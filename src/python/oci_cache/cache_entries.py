"""`cache_to` / `cache_from` entries, in buildx syntax.

An entry is comma-separated `key=value` fields, read as one CSV record like buildx
does (so a value holding a comma can be quoted: `"dest=/tmp/a,b"`). Keys are
case-insensitive; a bare reference with no `=` is shorthand for
`type=registry,ref=<reference>`. Keys (docs/configuration.md):

    type               registry | local (required)
    ref                registry reference [host[:port]/]repository[:tag] (type=registry)
    dest / src         OCI layout directory (type=local; dest for cache-to, src for cache-from)
    tag                tag inside the layout (type=local; default: the layout code's default)
    mode               min | max (default min)
    compression        uncompressed | gzip | estargz | zstd (default zstd)
    compression-level  gzip/estargz 0-9, zstd 0-22 (default: the codec's default)
    force-compression  bool (default false)
    oci-mediatypes     bool (default true)
    image-manifest     bool (default true)
    ignore-error       bool (default false)
    insecure           bool (default false; type=registry)
    keep-duration      e.g. 168h, 7d (default none)
    keep-bytes         e.g. 10GB, 512MiB (default none)
    secret-env         names (or patterns) of environment variables whose values are
                       secrets, beyond those whose names look secret, separated by `;`
                       (e.g. DATABASE_URL;*_DSN; default none; mode=max records mask them)
    prefetch           cache-from: compressed bytes of the image's hot set read right after
                       the import, e.g. 64MiB; 0 for none (default 256 MiB, at most a quarter
                       of the local store)

Booleans are true/false or 1/0. Unknown and repeated keys are errors, and so is a
key that does not fit the entry (`dest` on a registry entry, `src` on cache-to).

On cache-from, the export-only keys (mode, compression, compression-level,
force-compression, oci-mediatypes, image-manifest, ignore-error, keep-duration,
keep-bytes, secret-env) are accepted and ignored, as BuildKit does — so one string can serve
as both cache_from and cache_to — but their values are still checked, and
`CacheFrom.ignored_keys` names them so that the caller can say so. Likewise `prefetch`,
an import key, is checked and ignored on cache-to.

Credentials never belong in an entry: a reference with user info (`user:pw@host`)
is rejected, and error messages show the entry with any user info masked.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from oci_cache.image_format.compression import Compression, parse_compression
from oci_cache.oci.errors import InvalidReferenceError
from oci_cache.oci.reference import Reference, parse_reference, validate_tag
from oci_cache.secret_masking.names import parse_secret_names
from oci_cache.sizes import format_duration, format_size, parse_duration, parse_size

TYPE_REGISTRY = "registry"
TYPE_LOCAL = "local"
TYPES = (TYPE_REGISTRY, TYPE_LOCAL)
MODE_MIN = "min"
MODE_MAX = "max"
MODES = (MODE_MIN, MODE_MAX)

_EXPORT_ONLY_KEYS = (
    "mode",
    "compression",
    "compression-level",
    "force-compression",
    "oci-mediatypes",
    "image-manifest",
    "ignore-error",
    "keep-duration",
    "keep-bytes",
    "secret-env",
)
_CACHE_TO_KEYS = ("type", "ref", "dest", "tag", "insecure", "prefetch") + _EXPORT_ONLY_KEYS
_CACHE_FROM_KEYS = ("type", "ref", "src", "tag", "insecure", "prefetch") + _EXPORT_ONLY_KEYS

_DIGEST_SUFFIX = re.compile(r"@sha256:[0-9a-f]{64}$")
_USER_INFO = re.compile(r"(^|[=,\"\s])((?:[a-zA-Z][a-zA-Z0-9+.-]*://)?)[^=,\"/@\s]*@(?!sha256:)")


class CacheEntryError(ValueError):
    """A malformed cache-to / cache-from entry; the message names the key and
    the accepted values."""


@dataclass(frozen=True)
class CacheTo:
    """A parsed cache-to entry (defaults as in docs/configuration.md)."""

    type: str
    ref: Optional[str] = None
    dest: Optional[str] = None
    tag: Optional[str] = None
    mode: str = MODE_MIN
    compression: Compression = Compression.ZSTD
    compression_level: Optional[int] = None
    force_compression: bool = False
    oci_mediatypes: bool = True
    image_manifest: bool = True
    ignore_error: bool = False
    insecure: bool = False
    keep_duration: Optional[float] = None
    """Seconds."""
    keep_bytes: Optional[int] = None
    secret_env: Tuple[str, ...] = ()
    """Extra secret variable names or patterns (secret_masking.names)."""

    @property
    def location(self) -> str:
        """The registry reference or the layout directory."""
        return self.ref if self.type == TYPE_REGISTRY else self.dest  # type: ignore[return-value]

    def to_text(self) -> str:
        """The entry in canonical buildx syntax (defaults left out);
        `parse_cache_to(e.to_text()) == e`."""
        fields = _location_fields(self.type, self.ref, "dest", self.dest, self.tag)
        if self.mode != MODE_MIN:
            fields.append(("mode", self.mode))
        if self.compression is not Compression.ZSTD:
            fields.append(("compression", self.compression.value))
        if self.compression_level is not None:
            fields.append(("compression-level", str(self.compression_level)))
        for key, value, default in (
            ("force-compression", self.force_compression, False),
            ("oci-mediatypes", self.oci_mediatypes, True),
            ("image-manifest", self.image_manifest, True),
            ("ignore-error", self.ignore_error, False),
            ("insecure", self.insecure, False),
        ):
            if value != default:
                fields.append((key, "true" if value else "false"))
        if self.keep_duration is not None:
            fields.append(("keep-duration", _duration_text(self.keep_duration)))
        if self.keep_bytes is not None:
            fields.append(("keep-bytes", _size_text(self.keep_bytes)))
        if self.secret_env:
            fields.append(("secret-env", ";".join(self.secret_env)))
        return _join_fields(fields)

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True)
class CacheFrom:
    """A parsed cache-from entry."""

    type: str
    ref: Optional[str] = None
    src: Optional[str] = None
    tag: Optional[str] = None
    insecure: bool = False
    prefetch_bytes: Optional[int] = None
    """`prefetch=SIZE`: compressed bytes the hot-set prefetch reads at most after the
    import (0: none); None: the daemon's default (hot_set_prefetch.py)."""
    ignored_keys: Tuple[str, ...] = field(default=(), compare=False)
    """Export-only keys that were given, checked, and ignored."""

    @property
    def location(self) -> str:
        return self.ref if self.type == TYPE_REGISTRY else self.src  # type: ignore[return-value]

    def to_text(self) -> str:
        """The entry in canonical buildx syntax; ignored keys are left out."""
        fields = _location_fields(self.type, self.ref, "src", self.src, self.tag)
        if self.insecure:
            fields.append(("insecure", "true"))
        if self.prefetch_bytes is not None:
            fields.append(("prefetch", _size_text(self.prefetch_bytes)))
        return _join_fields(fields)

    def __str__(self) -> str:
        return self.to_text()


def parse_cache_to(text: str) -> CacheTo:
    """Parses a cache-to entry; raises CacheEntryError."""
    fields = _Fields("cache-to", text, _CACHE_TO_KEYS)
    entry_type = fields.entry_type()
    options = _export_options(fields)
    _prefetch(fields)  # an import key: checked, then ignored
    insecure = fields.boolean("insecure", False)
    ref, dest, tag = fields.location(entry_type, "dest", "src")
    if ref is not None and _parse_reference(fields, ref).digest:
        raise fields.error("ref of a cache-to entry must name a tag, not a digest (the export moves the tag)")
    if insecure and entry_type != TYPE_REGISTRY:
        raise fields.error("insecure applies to type=registry only")
    return CacheTo(
        type=entry_type,
        ref=ref,
        dest=dest,
        tag=tag,
        insecure=insecure,
        **options,  # type: ignore[arg-type]
    )


def parse_cache_from(text: str) -> CacheFrom:
    """Parses a cache-from entry; raises CacheEntryError."""
    fields = _Fields("cache-from", text, _CACHE_FROM_KEYS)
    entry_type = fields.entry_type()
    _export_options(fields)  # checked, then ignored
    insecure = fields.boolean("insecure", False)
    ref, src, tag = fields.location(entry_type, "src", "dest")
    if ref is not None:
        _parse_reference(fields, ref)
    if insecure and entry_type != TYPE_REGISTRY:
        raise fields.error("insecure applies to type=registry only")
    ignored = tuple(key for key in _EXPORT_ONLY_KEYS if key in fields.values)
    return CacheFrom(
        type=entry_type, ref=ref, src=src, tag=tag, insecure=insecure, prefetch_bytes=_prefetch(fields), ignored_keys=ignored
    )


def _prefetch(fields: _Fields) -> Optional[int]:
    text = fields.get("prefetch")
    if text is None:
        return None
    try:
        return int(parse_size(text))
    except ValueError:
        raise fields.error(f"prefetch must be a size such as 256MiB, or 0 for no prefetch (got {_quote(text)})") from None


def redact(text: str) -> str:
    """`text` with user info (`user:password@` before a host) masked."""
    return _USER_INFO.sub(r"\1\2***@", text)


class _Fields:
    """The key=value fields of one entry, with error messages that quote it."""

    def __init__(self, direction: str, text: str, allowed: Tuple[str, ...]) -> None:
        self.direction = direction
        self.text = text
        self.values: Dict[str, str] = {}
        if not isinstance(text, str) or not text.strip():
            raise self.error("the entry is empty; want e.g. type=registry,ref=host/repo:tag")
        try:
            records = list(csv.reader(io.StringIO(text), strict=True, skipinitialspace=True))
        except csv.Error as error:
            raise self.error(f"cannot split the entry into fields: {error}") from None
        if len(records) != 1:
            raise self.error("an entry is one line of comma-separated key=value fields")
        raw_fields = [item.strip() for item in records[0]]
        if len(raw_fields) == 1 and "=" not in raw_fields[0]:
            raw_fields = ["type=registry", f"ref={raw_fields[0]}"]
        for raw in raw_fields:
            key, sep, value = raw.partition("=")
            key = key.strip().lower()
            if not sep or not key:
                raise self.error(f"field {redact(raw)!r} is not key=value")
            if key not in allowed:
                raise self.error(self._unknown_key_message(key, allowed))
            if key in self.values:
                raise self.error(f"key {key!r} is given more than once")
            self.values[key] = value.strip()

    def _unknown_key_message(self, key: str, allowed: Tuple[str, ...]) -> str:
        if key == "src" and self.direction == "cache-to":
            return "src is for cache-from entries; a type=local cache-to entry uses dest="
        if key == "dest" and self.direction == "cache-from":
            return "dest is for cache-to entries; a type=local cache-from entry uses src="
        return f"unknown key {key!r}; the keys of a {self.direction} entry are {', '.join(allowed)}"

    def error(self, problem: str) -> CacheEntryError:
        return CacheEntryError(f"{self.direction} entry {_quote(redact(str(self.text)))}: {problem}")

    def get(self, key: str) -> Optional[str]:
        value = self.values.get(key)
        if value is not None and value == "":
            raise self.error(f"{key} has an empty value")
        return value

    def entry_type(self) -> str:
        value = self.get("type")
        if value is None:
            raise self.error(f"type is required; one of {', '.join(TYPES)}")
        return self.choice("type", TYPES, value)

    def choice(self, key: str, accepted: Tuple[str, ...], value: str) -> str:
        if value not in accepted:
            raise self.error(f"{key} must be one of {', '.join(accepted)} (got {_quote(value)})")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise self.error(f"{key} must be true or false (got {_quote(value)})")

    def location(self, entry_type: str, own_key: str, other_key: str) -> Tuple[Optional[str], Optional[str], Optional[str]]:
        """(ref, directory, tag) for the entry type; `own_key` is dest or src."""
        ref = self.get("ref")
        directory = self.get(own_key)
        tag = self.get("tag")
        if entry_type == TYPE_REGISTRY:
            if directory is not None:
                raise self.error(f"{own_key} applies to type=local; a type=registry entry uses ref=")
            if tag is not None:
                raise self.error("tag applies to type=local; put the tag in ref= (host/repo:tag)")
            if ref is None:
                raise self.error("ref is required for type=registry, e.g. ref=ghcr.io/acme/repo:cache")
            return ref, None, None
        if ref is not None:
            raise self.error(f"ref applies to type=registry; a type=local entry uses {own_key}=")
        if directory is None:
            raise self.error(f"{own_key} is required for type=local: the OCI layout directory")
        if tag is not None:
            try:
                validate_tag(tag)
            except InvalidReferenceError as error:
                raise self.error(f"tag: {error}") from None
        return None, directory, tag


def _export_options(fields: _Fields) -> Dict[str, object]:
    mode = fields.get("mode")
    compression_text = fields.get("compression")
    try:
        compression = Compression.ZSTD if compression_text is None else parse_compression(compression_text)
    except ValueError:
        accepted = ", ".join(c.value for c in Compression)
        raise fields.error(f"compression must be one of {accepted} (got {_quote(compression_text or '')})") from None
    level = _level(fields, compression)
    return {
        "mode": MODE_MIN if mode is None else fields.choice("mode", MODES, mode),
        "compression": compression,
        "compression_level": level,
        "force_compression": fields.boolean("force-compression", False),
        "oci_mediatypes": fields.boolean("oci-mediatypes", True),
        "image_manifest": fields.boolean("image-manifest", True),
        "ignore_error": fields.boolean("ignore-error", False),
        "keep_duration": _positive(fields, "keep-duration", parse_duration),
        "keep_bytes": _positive(fields, "keep-bytes", parse_size),
        "secret_env": _secret_names(fields),
    }


def _secret_names(fields: _Fields) -> Tuple[str, ...]:
    text = fields.get("secret-env")
    if text is None:
        return ()
    try:
        return parse_secret_names(text)
    except ValueError as error:
        raise fields.error(f"secret-env: {error}; separate names with ';', e.g. secret-env=DATABASE_URL;*_DSN") from None


def _level(fields: _Fields, compression: Compression) -> Optional[int]:
    text = fields.get("compression-level")
    if text is None:
        return None
    bounds = compression.level_range
    if bounds is None:
        raise fields.error(f"compression-level does not apply to compression={compression.value}")
    low, high = bounds
    if not re.fullmatch(r"[0-9]{1,3}", text) or not low <= int(text) <= high:
        raise fields.error(
            f"compression-level must be an integer from {low} to {high} for compression={compression.value} "
            f"(got {_quote(text)})"
        )
    return int(text)


def _positive(fields: _Fields, key: str, parse: Callable[[str], float]) -> Optional[float]:
    text = fields.get(key)
    if text is None:
        return None
    try:
        value = parse(text)
    except ValueError as error:
        raise fields.error(f"{key}: {error}") from None
    if value <= 0:
        raise fields.error(f"{key} must be greater than zero (got {_quote(text)})")
    return value


def _parse_reference(fields: _Fields, ref: str) -> Reference:
    if "@" in _DIGEST_SUFFIX.sub("", ref) or "://" in ref:
        raise fields.error(
            "ref must not hold credentials or a scheme; give host[:port]/repository[:tag] and put "
            "credentials in the Docker config (docker login)"
        )
    try:
        return parse_reference(ref)
    except InvalidReferenceError as error:
        raise fields.error(f"ref must be a registry reference host[:port]/repository[:tag]: {error}") from None


def _location_fields(
    entry_type: str, ref: Optional[str], directory_key: str, directory: Optional[str], tag: Optional[str]
) -> List[Tuple[str, str]]:
    fields = [("type", entry_type)]
    if entry_type == TYPE_REGISTRY:
        fields.append(("ref", ref or ""))
    else:
        fields.append((directory_key, directory or ""))
        if tag is not None:
            fields.append(("tag", tag))
    return fields


def _join_fields(fields: List[Tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    writer.writerow([f"{key}={value}" for key, value in fields])
    return buffer.getvalue()


def _duration_text(seconds: float) -> str:
    text = format_duration(seconds)
    return text if parse_duration(text) == seconds else f"{seconds!r}"


def _size_text(size: int) -> str:
    text = format_size(size)
    return text if parse_size(text) == size else str(size)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
