"""`oci-cache prune ENTRY --keep-duration D --keep-bytes B`: rewrite a cache image
under limits and move its tag.

ENTRY names the image like `oci-cache inspect` does (a bare `HOST/REPO:TAG`, a
`type=registry,ref=…` or `type=local,src=DIR|dest=DIR` entry); it must name a tag.
Actions not used for `--keep-duration`, then the least recently used ones until
the image is under `--keep-bytes`, are dropped with the blobs only they needed
(the OCI tier's pruner decides; it merges with concurrent exports and moves the tag
last, like an export). When ENTRY is a cache-to entry, its keep-duration /
keep-bytes / compression / media-type keys apply; the flags override the limits.

Prints what was dropped — computed by comparing the image before and after — or
that nothing had to go. Exit status: 0 pruned or nothing to drop; 1 no image at
ENTRY, unreachable, or the rewrite failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, List, Optional

from oci_cache.cache_entries import CacheEntryError, redact
from oci_cache.cache_image.errors import CacheImageNotFoundError
from oci_cache.cache_image.exporting.exporter import prune_cache_image
from oci_cache.cache_image.loaded_image import load_cache_image
from oci_cache.cli.image_entry import add_image_arguments, parse_image_entry
from oci_cache.cli.command_logging import quiet_library_info
from oci_cache.cli.progress import Progress
from oci_cache.cli.prune_diff import diff_images, diff_json, diff_lines
from oci_cache.errors import CacheError
from oci_cache.sizes import parse_duration, parse_size

NAME = "prune"
HELP = "rewrite a cache image under --keep-duration / --keep-bytes and move its tag"


def configure(parser: argparse.ArgumentParser) -> None:
    add_image_arguments(parser, "HOST/REPO:TAG, type=registry,ref=HOST/REPO:TAG[,…] or type=local,src=DIR[,tag=TAG]")
    parser.add_argument("--keep-duration", metavar="D", help="drop entries not used for this long, e.g. 168h or 7d")
    parser.add_argument(
        "--keep-bytes", metavar="B", help="keep the image under this size, least recently used dropped first, e.g. 10GB"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")


def run(args: argparse.Namespace) -> int:
    quiet_library_info(args)
    try:
        entry = parse_image_entry(args.entry)
        keep_duration = _positive("--keep-duration", args.keep_duration, parse_duration)
        keep_bytes_value = _positive("--keep-bytes", args.keep_bytes, parse_size)
        keep_bytes = None if keep_bytes_value is None else int(keep_bytes_value)
    except (CacheEntryError, ValueError) as error:
        return _usage(str(error))
    if entry.pins_digest:
        return _usage("ENTRY must name a tag (prune moves it), not a digest")
    cache_to = entry.cache_to
    if keep_duration is None and cache_to is not None:
        keep_duration = cache_to.keep_duration
    if keep_bytes is None and cache_to is not None:
        keep_bytes = cache_to.keep_bytes
    if keep_duration is None and keep_bytes is None:
        return _usage("give --keep-duration and/or --keep-bytes (or keep-duration=/keep-bytes= in ENTRY)")
    progress = Progress("prune", sys.stderr)
    target = entry.open(docker_config_dir=os.path.expanduser(args.docker_config) if args.docker_config else None)
    location = target.describe()
    try:
        progress.update(f"reading {location}", force=True)
        before = load_cache_image(target)
        location = target.describe()  # now that the scheme is known
        progress.update(f"rewriting {location}", force=True)
        rewrite = entry.rewrite_entry(
            before.config.mode, before.config.compression, before.parsed.oci_mediatypes, before.parsed.image_manifest
        )
        report = prune_cache_image(target, keep_duration=keep_duration, keep_bytes=keep_bytes, entry=rewrite)
        if not report.ok:
            return _fail(progress, f"{location}: {redact(report.message or 'the rewrite failed')}")
        progress.update("comparing", force=True)
        after = load_cache_image(target, report.manifest_digest or None)
        diff = diff_images(before, after)
    except CacheImageNotFoundError as error:
        return _fail(progress, f"{error}; nothing to prune")
    except CacheError as error:
        return _fail(progress, redact(str(error)))
    finally:
        target.close()
    progress.clear()
    if args.json:
        sys.stdout.write(json.dumps(diff_json(diff, location, entry.text), indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(diff_lines(diff, location)) + "\n")
    sys.stdout.flush()
    return 0


def _positive(flag: str, text: Optional[str], parse: Callable[[str], float]) -> Optional[float]:
    if text is None:
        return None
    try:
        value = parse(text)
    except ValueError as error:
        raise ValueError(f"{flag}: {error}") from None
    if value <= 0:
        raise ValueError(f"{flag} must be greater than zero (got {text!r})")
    return value


def _usage(message: str) -> int:
    print(f"oci-cache prune: {message}", file=sys.stderr)
    return 2


def _fail(progress: Progress, message: str) -> int:
    progress.clear()
    print(f"oci-cache prune: {message}", file=sys.stderr)
    return 1


__all__: List[str] = ["NAME", "HELP", "configure", "run"]
