"""`oci-cache serve`: run the REAPI cache server in the foreground.

Prints `listening on grpc://HOST:PORT` as the first line on stdout once the
server accepts calls, records the daemon in STATE_DIR/daemon.json, and stops
gracefully on SIGTERM or SIGINT (removing daemon.json). The local store lives in
STATE_DIR/store.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from oci_cache import __version__
from oci_cache.daemon_state import DaemonState, remove_daemon_state, write_daemon_state
from oci_cache.errors import CacheError
from oci_cache.export_report import ExportReport
from oci_cache.server.auth_interceptor import read_token_file
from oci_cache.server.grpc_server import CacheServer, ServerOptions, build_server
from oci_cache.sizes import parse_size
from oci_cache.store.completeness import CompletenessCheckingActionCache
from oci_cache.store.interfaces import ActionCache, BlobStore
from oci_cache.store.local_store import LocalStore

NAME = "serve"
HELP = "run the cache server in the foreground"

DEFAULT_LISTEN = "127.0.0.1:0"
DEFAULT_STATE_DIR = "~/.cache/pants-oci-cache"
DEFAULT_MAX_SIZE = "10GiB"
STOP_GRACE_SECONDS = 5.0

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
        "--token-file", help="require `authorization: Bearer <token>` on every call; the token is this file's content"
    )


@dataclass
class ServeConfig:
    listen: str
    state_dir: Path
    max_size_bytes: int
    bearer_token: Optional[str] = None


@dataclass
class Tiers:
    """What the server serves from, and what to close when it stops."""

    blobs: BlobStore
    action_cache: ActionCache
    close: Callable[[], None]
    # Exports to every cache-to entry now (None: nothing to export to). Called by the
    # control service, and once more at shutdown.
    export: Optional[Callable[[], ExportReport]] = None


def open_local_tiers(config: ServeConfig) -> Tiers:
    """The local store under STATE_DIR/store; hits are checked for completeness."""
    store = LocalStore(config.state_dir / "store", config.max_size_bytes)
    return Tiers(blobs=store, action_cache=CompletenessCheckingActionCache(store, store), close=store.close)


def run(args: argparse.Namespace) -> int:
    try:
        config = ServeConfig(
            listen=args.listen,
            state_dir=Path(os.path.expanduser(args.state_dir)),
            max_size_bytes=parse_size(args.max_size),
            bearer_token=read_token_file(Path(args.token_file)) if args.token_file else None,
        )
    except (ValueError, OSError) as error:
        print(f"oci-cache serve: {error}", file=sys.stderr)
        return 2
    return serve(config)


def serve(config: ServeConfig, open_tiers: Callable[[ServeConfig], Tiers] = open_local_tiers) -> int:
    """Runs until SIGTERM/SIGINT; the exit status."""
    stop = _stop_on_signals()
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        tiers = open_tiers(config)
    except (CacheError, OSError, ValueError) as error:
        print(f"oci-cache serve: cannot open the store in {config.state_dir}: {error}", file=sys.stderr)
        return 1
    try:
        try:
            server, port = build_server(
                tiers.blobs,
                tiers.action_cache,
                config.listen,
                ServerOptions(bearer_token=config.bearer_token),
            )
        except CacheError as error:
            print(f"oci-cache serve: {error}", file=sys.stderr)
            return 1
        server.start()
        address = f"grpc://{_host_of(config.listen)}:{port}"
        try:
            write_daemon_state(config.state_dir, DaemonState(address, os.getpid(), time.time(), __version__))
            sys.stdout.write(f"listening on {address}\n")
            sys.stdout.flush()
            logger.info("serving on %s (state %s, pid %d)", address, config.state_dir, os.getpid())
            while not stop.wait(1.0):
                pass
            logger.info("stopping")
        finally:
            remove_daemon_state(config.state_dir, pid=os.getpid())
            _stop_server(server)
    finally:
        tiers.close()
    return 0


def _stop_server(server: CacheServer) -> None:
    server.stop(STOP_GRACE_SECONDS).wait()


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


__all__: List[str] = ["NAME", "HELP", "configure", "run", "serve", "ServeConfig", "Tiers", "open_local_tiers"]
