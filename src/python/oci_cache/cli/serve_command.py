"""`oci-cache serve`: run the REAPI cache server in the foreground.

Prints `listening on grpc://HOST:PORT` as the first line on stdout once the
server accepts calls, records the daemon in STATE_DIR/daemon.json (both before the
local store is open: calls that come first wait for it), and stops
gracefully on SIGTERM or SIGINT (removing daemon.json). The local store lives in
STATE_DIR/store.

The daemon side (server/daemon_runtime.py): the Control service (GetStatus, Export,
Shutdown) on the same port and, with --control-http, as JSON over HTTP on loopback
(its URL is in daemon.json), counters of what clients did, and one way to stop for SIGTERM, a
Shutdown call and `--idle-timeout` (no call for that long): stop accepting, export
once when there is somewhere to export to, remove daemon.json, exit. Only one
`serve` runs per state directory (STATE_DIR/daemon.lock).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

from oci_cache import __version__
from oci_cache.cache_entries import CacheFrom, CacheTo, parse_cache_from, parse_cache_to
from oci_cache.cache_image.importing.early_manifests import EarlyManifests
from oci_cache.cache_image.opening_stack import OpeningStack
from oci_cache.daemon.daemon_dir import DAEMON_LOCK_FILE
from oci_cache.daemon.life_lock import try_lock
from oci_cache.daemon_state import DaemonState, remove_daemon_state, write_daemon_state
from oci_cache.errors import CacheError
from oci_cache.secret_masking.names import check_secret_name
from oci_cache.server.token_file import read_token_file
from oci_cache.sizes import parse_duration, parse_size

if TYPE_CHECKING:
    from oci_cache.cache_image.serving_stack import ServingStack

NAME = "serve"
HELP = "run the cache server in the foreground"

DEFAULT_LISTEN = "127.0.0.1:0"
DEFAULT_STATE_DIR = "~/.cache/pants-oci-cache"
DEFAULT_MAX_SIZE = "10GiB"
CONNECTIONS_LEFT_BY_THE_IMPORT = 2
"""The config and the index are read at once, each on a connection of its own to the
registry's storage host (where blob GETs redirect), left open for the prefetch."""

logger = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to listen on; port 0 picks a free one (default {DEFAULT_LISTEN})"
    )
    parser.add_argument(
        "--state-dir", default=DEFAULT_STATE_DIR, help=f"daemon state and local store (default {DEFAULT_STATE_DIR})"
    )
    parser.add_argument(
        "--max-size", default=DEFAULT_MAX_SIZE, help=f"bound of the local store, e.g. 10GiB (default {DEFAULT_MAX_SIZE})"
    )
    parser.add_argument(
        "--cache-from",
        action="append",
        default=[],
        metavar="ENTRY",
        help="import this cache image at start (buildx syntax, e.g. type=registry,ref=host/repo:tag); "
        "repeatable, tried in order",
    )
    parser.add_argument(
        "--cache-to",
        action="append",
        default=[],
        metavar="ENTRY",
        help="export to this cache image (buildx syntax, e.g. type=registry,ref=host/repo:tag,mode=max); repeatable",
    )
    parser.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="NAME",
        help="an environment variable (or pattern, e.g. '*_DSN') whose value is a secret even though its name "
        "does not look secret; mode=max exports mask it; repeatable",
    )
    parser.add_argument(
        "--secret-masking-key-file",
        metavar="PATH",
        help="the key that masks secret values in mode=max exports, created 0600 when absent "
        "(default STATE_DIR/secret-masking.key)",
    )
    parser.add_argument(
        "--token-file", help="require `authorization: Bearer <token>` on every call; the token is this file's content"
    )
    parser.add_argument(
        "--idle-timeout",
        default="0",
        help="exit (exporting first) after this long without any call, e.g. 30m; 0 = never (default)",
    )
    parser.add_argument("--log-file", help="append the log to this file instead of stderr")
    parser.add_argument(
        "--config-fingerprint", default="", help="recorded in daemon.json and GetStatus (set by the Pants plugin)"
    )
    parser.add_argument(
        "--control-http",
        action="store_true",
        help="also serve the Control service as JSON over HTTP on a free loopback port, recorded in daemon.json "
        "(for clients without grpcio, e.g. the Pants plugin)",
    )


@dataclass
class ServeConfig:
    listen: str
    state_dir: Path
    max_size_bytes: int
    bearer_token: Optional[str] = None
    cache_from: List[CacheFrom] = field(default_factory=list)
    cache_to: List[CacheTo] = field(default_factory=list)
    idle_timeout_seconds: float = 0.0  # 0: never
    token_file: Optional[Path] = None
    config_fingerprint: str = ""
    control_http: bool = False
    secret_env_names: Tuple[str, ...] = ()
    masking_key_file: Optional[Path] = None  # None: STATE_DIR/secret-masking.key


def run(args: argparse.Namespace) -> int:
    # The state dir holds build outputs and the daemon's token: everything the
    # daemon creates is private to the user (directories 0700, files 0600).
    os.umask(0o077)
    try:
        config = ServeConfig(
            listen=args.listen,
            state_dir=Path(os.path.expanduser(args.state_dir)),
            max_size_bytes=parse_size(args.max_size),
            cache_from=[parse_cache_from(text) for text in args.cache_from],
            cache_to=[parse_cache_to(text) for text in args.cache_to],
            bearer_token=read_token_file(Path(args.token_file)) if args.token_file else None,
            idle_timeout_seconds=parse_duration(args.idle_timeout),
            token_file=Path(os.path.abspath(args.token_file)) if args.token_file else None,
            config_fingerprint=args.config_fingerprint,
            control_http=args.control_http,
            secret_env_names=tuple(check_secret_name(name) for name in args.secret_env),
            masking_key_file=Path(os.path.abspath(args.secret_masking_key_file))
            if args.secret_masking_key_file
            else None,
        )
        if args.log_file:
            _log_to_file(Path(args.log_file))
    except (ValueError, OSError) as error:
        print(f"oci-cache serve: {error}", file=sys.stderr)
        return 2
    return serve(config)


def _log_to_file(path: Path) -> None:
    """Sends the log to `path` (appended) instead of stderr."""
    handler = logging.FileHandler(str(path), encoding="utf-8")
    root = logging.getLogger()
    for existing in list(root.handlers):
        handler.setFormatter(existing.formatter)
        root.removeHandler(existing)
    root.addHandler(handler)


def open_stack(config: ServeConfig, early: Optional["EarlyManifests"] = None) -> "ServingStack":
    """The serving stack for `config`; `serve` starts its import before the server
    listens. `early`: the cache-from manifests already being read."""
    from oci_cache.cache_image.serving_stack import open_serving_stack  # here: `serve --help` does not need it

    return open_serving_stack(
        config.state_dir,
        config.max_size_bytes,
        config.cache_from,
        config.cache_to,
        start_import=False,
        secret_env_names=config.secret_env_names,
        masking_key_file=config.masking_key_file,
        early_manifests=early,
    )


def serve(config: ServeConfig) -> int:
    """Runs until SIGTERM/SIGINT, a Shutdown call or the idle timeout; the exit status."""
    stop = _stop_on_signals()
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        life_lock = try_lock(config.state_dir / DAEMON_LOCK_FILE)
    except OSError as error:
        print(f"oci-cache serve: cannot open the store in {config.state_dir}: {error}", file=sys.stderr)
        return 1
    if life_lock is None:
        print(f"oci-cache serve: another oci-cache serve uses the state directory {config.state_dir}", file=sys.stderr)
        return 1
    with life_lock:  # held until this process is done with the state directory
        # The import's first round trips (set-up, manifest) start now, while the rest loads.
        early = _early_manifests(config) if config.cache_from else None
        # The server listens before the stack opens (cache_image/opening_stack.py): a run of
        # Pants waits for this daemon to answer, and its first cache call comes much later.
        opening = OpeningStack(
            can_export=bool(config.cache_to), has_imports=bool(config.cache_from), max_bytes=config.max_size_bytes
        )
        try:
            return _serve_stack(config, opening, stop, lambda: _open_and_start(config, early, opening))
        finally:
            if early is not None:
                early.close()  # taken over by the import, or left over when the stack did not open
            opening.close()


def _early_manifests(config: ServeConfig) -> EarlyManifests:
    """The early reads of the cache-from entries, with the prefetch's first connections
    (early_manifests.py): enough that each prefetch thread starts on a ready connection to
    the storage host, counting the two that the config and index reads leave open; none
    for an entry whose prefetch bound is 0."""
    from oci_cache.cache_image.importing.hot_set_prefetch import PREFETCH_THREADS, entry_prefetch_bound, prefetch_bytes_bound

    default_bound = prefetch_bytes_bound(config.max_size_bytes)
    bounds = [entry_prefetch_bound(entry.prefetch_bytes, default_bound, config.max_size_bytes) for entry in config.cache_from]
    connections = max(0, PREFETCH_THREADS - CONNECTIONS_LEFT_BY_THE_IMPORT)
    return EarlyManifests(config.cache_from, connections=connections, prefetch_bounds=bounds)


def _open_and_start(config: ServeConfig, early: Optional["EarlyManifests"], opening: OpeningStack) -> bool:
    """Opens the stack behind `opening` and starts its import; False (and says why) when it cannot."""
    try:
        stack = open_stack(config, early)
    except (CacheError, OSError, ValueError) as error:
        message = f"cannot open the store in {config.state_dir}: {error}"
        opening.failed(message)
        print(f"oci-cache serve: {message}", file=sys.stderr)
        logger.error("%s", message)
        return False
    # The import's round trips to the registry (the manifest, the config, the index).
    stack.start()
    opening.opened(stack)
    return True


def _serve_stack(
    config: ServeConfig, stack: "OpeningStack", stop: threading.Event, open_now: Callable[[], bool]
) -> int:
    # Imported here, after the manifests' round trips have started: grpc takes a few hundred ms to load.
    from oci_cache.server.daemon_control import DaemonIdentity
    from oci_cache.server.daemon_runtime import DaemonRuntime
    from oci_cache.server.grpc_server import ServerOptions, build_server

    identity = DaemonIdentity(
        state_dir=str(config.state_dir),
        version=__version__,
        cache_from=_entry_texts(config.cache_from),
        cache_to=_entry_texts(config.cache_to),
        config_fingerprint=config.config_fingerprint,
        idle_timeout_seconds=config.idle_timeout_seconds,
    )
    runtime = DaemonRuntime(
        identity,
        stack,
        stop,
        bearer_token=config.bearer_token,
        control_http=config.control_http,
        miss_recorder=_miss_recorder(config, stack),
    )
    try:
        server, port = build_server(
            runtime.blobs,
            runtime.action_cache,
            config.listen,
            runtime.server_options(ServerOptions(bearer_token=config.bearer_token)),
        )
    except CacheError as error:
        print(f"oci-cache serve: {error}", file=sys.stderr)
        return 1
    server.start()
    address = f"grpc://{_host_of(config.listen)}:{port}"
    opened = False
    try:
        control_url = runtime.started(address)
        state = DaemonState(
            address,
            os.getpid(),
            time.time(),
            __version__,
            config_fingerprint=config.config_fingerprint,
            control_url=control_url,
            token_file=str(config.token_file or ""),
        )
        write_daemon_state(config.state_dir, state)
        sys.stdout.write(f"listening on {address}\n")
        sys.stdout.flush()
        logger.info("serving on %s (state %s, pid %d, control %s)", address, config.state_dir, os.getpid(), control_url)
        opened = open_now()
        if not opened:
            return 1
        reason = runtime.wait()
        logger.info("stopping (%s)", reason)
    finally:
        # Stop accepting calls, export once (if the store opened), and only then say that we are gone.
        runtime.stop(server, final_export=opened)
        remove_daemon_state(config.state_dir, pid=os.getpid())
    return 0


def _miss_recorder(config: ServeConfig, stack: "OpeningStack") -> Any:
    """What records this daemon's misses for `oci-cache explain` (explain/daemon_hook.py):
    candidates from the local store and the imported images (reached once the stack is open)."""
    from oci_cache.explain.candidates import ExplainSources
    from oci_cache.explain.daemon_hook import open_miss_recorder

    sources = ExplainSources(lambda: stack.local.iter_action_digests(), stack.imports)
    return open_miss_recorder(
        config.state_dir,
        stack.blobs,
        sources,
        key_file=getattr(config, "masking_key_file", None),
        extra_secret_names=getattr(config, "secret_env_names", ()),
    )


def _entry_texts(entries: Sequence[object]) -> Tuple[str, ...]:
    """cache-from / cache-to entries as text (parsed entries print as buildx text)."""
    return tuple(str(entry) for entry in entries or ())


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)
    return stop


def _host_of(listen: str) -> str:
    host, _, _ = listen.rpartition(":")
    return host or "127.0.0.1"


__all__: List[str] = ["NAME", "HELP", "configure", "open_stack", "run", "serve", "ServeConfig"]
