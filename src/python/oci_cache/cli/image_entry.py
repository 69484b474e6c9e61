"""The ENTRY argument of `oci-cache inspect` and `oci-cache prune`: which cache image.

Accepted forms (buildx syntax, see cache_entries.py):

    ghcr.io/acme/mono:cache                    a bare reference = type=registry,ref=…
    type=registry,ref=HOST/REPO:TAG[,insecure=true]
    type=local,src=DIR[,tag=TAG]               an OCI image layout (dest= works too)
    any full cache-from or cache-to entry      keys that do not apply are ignored

so the text of a `cache_from` or `cache_to` setting can be pasted as is. `prune`
needs a tag (it moves it); `inspect` also takes `HOST/REPO@sha256:…`.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field, replace
from typing import FrozenSet, List, Optional, Union

from oci_cache.cache_entries import CacheEntryError, CacheFrom, CacheTo, parse_cache_from, parse_cache_to, redact
from oci_cache.cache_image.entry_targets import open_entry_target
from oci_cache.image_format.compression import Compression
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.target import ImageTarget


ENTRY_FORMS = "HOST/REPO:TAG, type=registry,ref=HOST/REPO:TAG[,insecure=true] or type=local,src=DIR[,tag=TAG]"


def add_image_arguments(parser: argparse.ArgumentParser, entry_help: str = ENTRY_FORMS) -> None:
    """The ENTRY argument and --docker-config, shared by `inspect` and `prune`."""
    parser.add_argument("entry", metavar="ENTRY", help=entry_help)
    parser.add_argument(
        "--docker-config",
        metavar="DIR",
        help="the Docker config directory for credentials (default $DOCKER_CONFIG or ~/.docker)",
    )


@dataclass(frozen=True)
class ImageEntry:
    parsed: Union[CacheFrom, CacheTo]
    text: str
    """The entry in canonical form, without credentials (safe to print)."""
    keys: FrozenSet[str] = field(default=frozenset())
    """The keys written in the entry (none for a bare reference)."""

    @property
    def cache_to(self) -> Optional[CacheTo]:
        """The entry as a cache-to entry, when it is one (prune keeps its options)."""
        return self.parsed if isinstance(self.parsed, CacheTo) else None

    @property
    def pins_digest(self) -> bool:
        """A `HOST/REPO@sha256:…` reference (no tag to move)."""
        return isinstance(self.parsed, CacheFrom) and self.parsed.ref is not None and "@" in self.parsed.ref

    def rewrite_entry(self, mode: str, compression: Compression, oci_mediatypes: bool, image_manifest: bool) -> CacheTo:
        """A cache-to entry for rewriting the image in place: the options written in
        ENTRY, and for the others the given ones (the image's own)."""
        parsed = self.parsed
        if isinstance(parsed, CacheTo):
            base = parsed
        else:
            base = CacheTo(type=parsed.type, ref=parsed.ref, dest=parsed.src, tag=parsed.tag, insecure=parsed.insecure)
        keys = self.keys if isinstance(parsed, CacheTo) else frozenset()
        return replace(
            base,
            mode=base.mode if "mode" in keys else mode,
            compression=base.compression if "compression" in keys else compression,
            compression_level=base.compression_level if "compression" in keys else None,
            oci_mediatypes=base.oci_mediatypes if "oci-mediatypes" in keys else oci_mediatypes,
            image_manifest=base.image_manifest if "image-manifest" in keys else image_manifest,
        )

    def open(self, docker_config_dir: Optional[str] = None, retry: Optional[RetryPolicy] = None) -> ImageTarget:
        """The ImageTarget (no request made; the caller closes it)."""
        return open_entry_target(self.parsed, docker_config_dir=docker_config_dir, retry=retry)


def parse_image_entry(text: str) -> ImageEntry:
    """Reads ENTRY as a cache-to entry if it is one, else as a cache-from entry;
    raises CacheEntryError with the cache-from message (the usual form)."""
    try:
        cache_to = parse_cache_to(text)
    except CacheEntryError:
        cache_from = parse_cache_from(text)
        return ImageEntry(cache_from, redact(cache_from.to_text()), _keys(text))
    return ImageEntry(cache_to, redact(cache_to.to_text()), _keys(text))


def _keys(text: str) -> FrozenSet[str]:
    """The keys of a (successfully parsed) entry; none for a bare reference."""
    fields = next(csv.reader([text], skipinitialspace=True), [])
    return frozenset(item.partition("=")[0].strip().lower() for item in fields if "=" in item)


__all__: List[str] = ["ImageEntry", "parse_image_entry"]
