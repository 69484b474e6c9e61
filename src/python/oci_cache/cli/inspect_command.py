"""`oci-cache inspect ENTRY [--json]`: what a cache image holds.

ENTRY is a bare reference (`ghcr.io/acme/mono:cache`), a `type=registry,ref=…`
or `type=local,src=DIR[,tag=…]` entry, or any cache-from/cache-to text (see
cli/image_entry.py). Reads the manifest, the config and the entry index — never
blob data — and prints entries, bytes, layers (count, sizes, compression), mode,
created time, format version and the range of last-used times. `--json` prints
one JSON document with stable keys (docs/configuration.md, "Commands").

Exit status: 0 printed; 1 no image at ENTRY, unreachable, denied, or not a
readable cache image (the message says which); 2 a malformed ENTRY.
Credentials never appear: locations are printed the way the transport describes
them, and entries with user info are masked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from oci_cache.cache_entries import CacheEntryError, redact
from oci_cache.cache_image.errors import (
    CacheImageNotFoundError,
    CorruptCacheImageError,
    NewerFormatError,
    NotACacheImageError,
)
from oci_cache.cache_image.loaded_image import load_cache_image
from oci_cache.cli.image_entry import add_image_arguments, parse_image_entry
from oci_cache.cli.image_summary import format_summary, summarize, summary_json
from oci_cache.cli.command_logging import quiet_library_info
from oci_cache.cli.progress import Progress
from oci_cache.errors import CacheError
from oci_cache.oci.http_retry import RetryPolicy

NAME = "inspect"
HELP = "show what a cache image holds: entries, bytes, layers, compression, mode, age"

# A look, not a build step: give up on an unreachable registry within seconds.
READ_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.2, max_delay=2.0, total_timeout=15.0)


def configure(parser: argparse.ArgumentParser) -> None:
    add_image_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document (stable keys) instead of text")
    parser.add_argument("--all-layers", action="store_true", help="list every layer in the text output")


def run(args: argparse.Namespace) -> int:
    quiet_library_info(args)
    try:
        entry = parse_image_entry(args.entry)
    except CacheEntryError as error:
        print(f"oci-cache inspect: {error}", file=sys.stderr)
        return 2
    progress = Progress("inspect", sys.stderr)
    try:
        target = entry.open(docker_config_dir=_expand(args.docker_config), retry=READ_RETRY)
    except (CacheError, ValueError) as error:
        print(f"oci-cache inspect: {redact(str(error))}", file=sys.stderr)
        return 2
    try:
        try:
            progress.update(f"reading {target.describe()}", force=True)
            loaded = load_cache_image(target)
            progress.update("summarizing", force=True)
            summary = summarize(loaded, entry.text, target.describe())
        except CacheImageNotFoundError as error:
            return _fail(progress, str(error))
        except (NotACacheImageError, NewerFormatError, CorruptCacheImageError) as error:
            return _fail(progress, redact(str(error)))
        except CacheError as error:  # transport: unreachable, denied, corrupt content
            return _fail(progress, f"cannot read {target.describe()}: {redact(str(error))}")
    finally:
        target.close()
    progress.clear()
    if args.json:
        sys.stdout.write(json.dumps(summary_json(summary), indent=2) + "\n")
    else:
        sys.stdout.write(format_summary(summary, all_layers=args.all_layers) + "\n")
    sys.stdout.flush()
    return 0


def _fail(progress: Progress, message: str) -> int:
    progress.clear()
    print(f"oci-cache inspect: {message}", file=sys.stderr)
    return 1


def _expand(path: Optional[str]) -> Optional[str]:
    return os.path.expanduser(path) if path else None


__all__: List[str] = ["NAME", "HELP", "configure", "run"]
