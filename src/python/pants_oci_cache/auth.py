"""`remote_auth`: start or reuse the daemon and point Pants' remote cache at it.

Pants calls it at the start of every run that has `remote_cache_read` or
`remote_cache_write` on (under pantsd: inside pantsd, with the client's environment
in `env`). It returns the daemon's `grpc://127.0.0.1:PORT` and an
`authorization: Bearer <token>` store header; both stay the same from run to run
(the token is stored once per daemon directory, and a restarted daemon listens on
its previous port when it is free), so pantsd keeps its scheduler.

It never fails the build: on any problem it prints a warning saying why and returns
UNAVAILABLE, and Pants builds without a remote cache.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Mapping, Optional

from pants.base.build_environment import get_buildroot

from oci_cache.daemon.launcher import DaemonUnavailable, ensure_daemon
from oci_cache.daemon.settings import DaemonSettings
from pants_oci_cache import run_state
from pants_oci_cache.daemon_python import NoDaemonPython, daemon_python
from pants_oci_cache.pants_compat import AuthPluginResult, auth_plugin_result

PLUGIN_NAME = "pants_oci_cache"
OPTIONS_SCOPE = "oci-cache"

logger = logging.getLogger(__name__)


def settings_from_options(values: Any, buildroot: str, env: Mapping[str, str]) -> DaemonSettings:
    """DaemonSettings from the `[oci-cache]` option values; raises NoDaemonPython."""
    python, pythonpath = daemon_python(str(values.python or ""), env)
    return DaemonSettings(
        repo_root=buildroot,
        state_dir=expand_path(str(values.state_dir), buildroot, env),
        python=python,
        pythonpath=pythonpath,
        cache_from=tuple(values.cache_from),
        cache_to=tuple(values.cache_to),
        listen=str(values.listen),
        max_size=str(values.local_store_max_size),
        idle_timeout=str(values.idle_timeout),
        secret_env_names=tuple(getattr(values, "secret_env_names", None) or ()),
        env=dict(env),
    )


def expand_path(path: str, buildroot: str, env: Mapping[str, str]) -> str:
    """`~` from the client's HOME (not pantsd's), relative paths from the build root."""
    if path == "~" or path.startswith("~/"):
        home = env.get("HOME") or os.path.expanduser("~")
        path = home + path[1:]
    return os.path.normpath(os.path.join(buildroot, path))


def remote_auth(
    initial_execution_headers: Dict[str, str],
    initial_store_headers: Dict[str, str],
    options: Any,
    env: Mapping[str, str],
    prior_result: Optional[AuthPluginResult],
) -> AuthPluginResult:
    run_state.record(None)
    waited_from = time.monotonic()
    try:
        settings = settings_from_options(options.for_scope(OPTIONS_SCOPE), get_buildroot(), env)
        handle = ensure_daemon(settings)
    except (DaemonUnavailable, NoDaemonPython) as error:
        return _unavailable(initial_execution_headers, initial_store_headers, str(error))
    except Exception as error:  # noqa: BLE001 - the cache must never fail the build
        return _unavailable(initial_execution_headers, initial_store_headers, f"{type(error).__name__}: {error}")
    # Pants waits for this before it goes on with its start-up (bench/wan_bench.py reads it).
    logger.debug(
        "oci-cache: the daemon answered in %.3fs (%s)",
        time.monotonic() - waited_from,
        "started by this run" if handle.started else "already running",
    )
    run_state.record(run_state.RunStart(handle))
    store_headers = dict(initial_store_headers)
    store_headers["authorization"] = f"Bearer {handle.token}"
    return auth_plugin_result(
        available=True,
        store_headers=store_headers,
        execution_headers=initial_execution_headers,
        store_address=handle.address,
        plugin_name=PLUGIN_NAME,
    )


def _unavailable(execution_headers: Dict[str, str], store_headers: Dict[str, str], reason: str) -> AuthPluginResult:
    logger.warning(
        f"[oci-cache] the remote cache is off for this run, the build goes on without it: {reason}"
    )
    return auth_plugin_result(
        available=False,
        store_headers=store_headers,
        execution_headers=execution_headers,
        plugin_name=PLUGIN_NAME,
    )


__all__: List[str] = ["PLUGIN_NAME", "expand_path", "remote_auth", "settings_from_options"]
