"""The `[oci-cache]` options scope."""

from __future__ import annotations

from enum import Enum

from pants.option.option_types import EnumOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem


class ExportOnFinish(Enum):
    wait = "wait"
    background = "background"
    off = "off"


class OciCacheSubsystem(Subsystem):
    options_scope = "oci-cache"
    help = (
        "A remote cache for Pants stored as OCI cache images in a registry (or a local OCI image "
        "layout). The plugin starts a local REAPI daemon, imports `cache_from`, serves Pants' "
        "remote-cache requests and exports to `cache_to` at the end of each run. Needs "
        "`remote_cache_read = true` and/or `remote_cache_write = true` in [GLOBAL]."
    )

    cache_from = StrListOption(
        default=[],
        help=(
            "Cache images to import, tried in order, in buildx syntax: "
            "`type=registry,ref=ghcr.io/acme/mono:cache-main` or `type=local,src=DIR[,tag=T]`. "
            "With neither `cache_from` nor `cache_to`, a local OCI layout under `state_dir` is used."
        ),
    )
    cache_to = StrListOption(
        default=[],
        help=(
            "Cache images to export to at the end of a run, in buildx syntax, e.g. "
            "`type=registry,ref=ghcr.io/acme/mono:cache-main,mode=max,compression=zstd`. Keys: "
            "type, ref, dest, tag, mode (min|max), compression (uncompressed|gzip|estargz|zstd), "
            "compression-level, force-compression, oci-mediatypes, image-manifest, ignore-error, "
            "insecure, keep-duration, keep-bytes, secret-env."
        ),
    )
    secret_env_names = StrListOption(
        default=[],
        help=(
            "Environment variables whose values are secrets although their names do not look secret "
            "(names holding TOKEN, SECRET, PASS, KEY, AUTH, CREDENTIAL, COOKIE, SESSION, PRIVATE or CERT "
            "always are), e.g. `[\"DATABASE_URL\", \"*_DSN\"]` (patterns allowed). A `mode=max` export "
            "never holds their values in clear: Commands carrying them are exported as records with the "
            "values masked."
        ),
    )
    state_dir = StrOption(
        default="~/.cache/pants-oci-cache",
        help="Daemon state: the local store, the daemon's token, address and logs.",
    )
    listen = StrOption(
        default="127.0.0.1:0",
        help="Address the daemon listens on; port 0 picks a free port.",
    )
    local_store_max_size = StrOption(
        default="10GiB",
        help="Bound of the daemon's local store (least recently used entries are evicted).",
    )
    idle_timeout = StrOption(
        default="30m",
        help="The daemon exits after this long without requests (e.g. 30m, 2h).",
    )
    python = StrOption(
        default="",
        help=(
            "The Python interpreter (3.9 or newer) that runs the daemon; it needs pants-oci-cache's "
            "dependencies (grpcio, protobuf, zstandard, urllib3), e.g. a virtualenv where "
            "`pip install pants-oci-cache` was run. Empty: the interpreter running Pants when those "
            "dependencies are importable in it, "
            "otherwise the interpreter of the `oci-cache` command on the PATH."
        ),
    )
    export_wait_limit = StrOption(
        default="15m",
        help=(
            "With `export_on_finish = \"wait\"`: how long the end of a run waits for the export "
            "(e.g. 15m, 90s; 0: no limit). After that the run ends with a warning and the daemon "
            "finishes the export on its own, so a registry that stalls never holds a build for long."
        ),
    )
    explain_input_trees = StrOption(
        default="auto",
        help=(
            "Whether the end of a run sends the daemon the listing (paths and file digests, no "
            "contents) of each process's input root, so that `oci-cache explain` names changed input "
            "files by path and mode=max images keep those Directory messages: `on`, `off`, or `auto` "
            "(on when a cache_to entry has mode=max)."
        ),
    )
    export_on_finish = EnumOption(
        default=ExportOnFinish.wait,
        help=(
            "What the end of a Pants run does: `wait` for the export to `cache_to`, start it in "
            "the `background`, or nothing (`off`)."
        ),
    )
