"""Start or reuse the daemon for a repository and configuration (Pants-independent).

    handle = ensure_daemon(settings)      # DaemonHandle, or raises DaemonUnavailable
    handle.address                        # "grpc://127.0.0.1:PORT"
    handle.token                          # for "authorization: Bearer <token>"

One daemon per repository and cache configuration lives in
STATE_DIR/<repo>-<key>/ (see daemon_dir and settings). A running daemon is reused
when its daemon.json records the same config fingerprint and it answers a status
call within a second (the fast path: one loopback HTTP request, no lock). Otherwise,
under launch.lock (so that two Pants runs starting together start one daemon):

- a daemon of another configuration is asked to shut down (it exports first) and
  waited for; one that does not answer but still holds daemon.lock (it is starting
  or stopping) is waited for; a daemon.json nobody holds daemon.lock for is stale
  and removed;
- a new daemon is started fully detached: `sh` starts
  `PYTHON -m oci_cache.cli.main serve ...` in the background of a new session, with
  stdin from /dev/null, stdout and stderr appended to daemon.log and no other
  descriptors, then exits, so the daemon is nobody's child (no zombie in pantsd);
- the launcher waits (bounded) until that daemon's daemon.json appears and it
  answers a status call; if the daemon exits first, the error quotes its log.

The daemon listens again on the port it last used when that port is free, so that
the address a Pants plugin hands to Pants stays the same across daemon restarts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from oci_cache.daemon.control_client import ControlClient, ControlError, DaemonStatus
from oci_cache.daemon.daemon_dir import DaemonDir
from oci_cache.daemon.life_lock import is_locked, wait_for_lock, wait_until_unlocked
from oci_cache.daemon.settings import (
    DaemonSettings,
    config_fingerprint,
    daemon_directory,
    effective_cache_entries,
    masking_key_file,
)
from oci_cache.daemon.token_file import ensure_token
from oci_cache.daemon_state import DaemonState, read_daemon_state, remove_daemon_state

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 15.0
STATUS_TIMEOUT_SECONDS = 1.0
LOG_ROTATE_BYTES = 10 * 1024 * 1024
_POLL_SECONDS = 0.02
_LOG_TAIL_LINES = 15
# Starts "$@" in the background with the log as stdout/stderr, prints its pid, exits.
_DETACH_SCRIPT = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


class DaemonUnavailable(Exception):
    """The daemon could not be started or reached; the message says why and what to do."""


@dataclass(frozen=True)
class DaemonHandle:
    address: str  # "grpc://HOST:PORT"
    token: str
    control_url: str
    directory: Path
    pid: int
    # As of the reuse check; None for a daemon this call started (its counters start at 0,
    # and asking would wait for its store to open, which Pants need not wait for).
    status: Optional[DaemonStatus]
    started: bool  # True when this call started the daemon

    def client(self) -> ControlClient:
        return ControlClient(self.control_url, self.token)


def ensure_daemon(
    settings: DaemonSettings,
    *,
    start_timeout: float = START_TIMEOUT_SECONDS,
    stop_timeout: float = STOP_TIMEOUT_SECONDS,
) -> DaemonHandle:
    """A running daemon for `settings` (reused or started); raises DaemonUnavailable."""
    try:
        settings.validate()
    except ValueError as error:
        raise DaemonUnavailable(f"invalid settings: {error}") from None
    directory = DaemonDir(daemon_directory(settings))
    try:
        directory.create()
        token = ensure_token(directory.token_file)
    except OSError as error:
        raise DaemonUnavailable(f"cannot use the state directory {directory.path}: {error}") from None
    fingerprint = config_fingerprint(settings)

    handle = _reusable(directory, token, fingerprint)
    if handle is not None:
        return handle
    try:
        lock = wait_for_lock(directory.launch_lock, start_timeout + stop_timeout)
    except OSError as error:
        raise DaemonUnavailable(f"cannot lock {directory.launch_lock}: {error}") from None
    if lock is None:
        raise DaemonUnavailable(f"another process has been starting the daemon in {directory.path} for too long")
    with lock:
        handle = _reusable(directory, token, fingerprint)  # started by the run we waited for
        if handle is not None:
            return handle
        _retire_previous(directory, token, fingerprint, stop_timeout)
        return _start(settings, directory, token, fingerprint, start_timeout)


def _reusable(directory: DaemonDir, token: str, fingerprint: str) -> Optional[DaemonHandle]:
    state = read_daemon_state(directory.path)
    if state is None or state.config_fingerprint != fingerprint or not state.control_url:
        return None
    status = _status(state, token, STATUS_TIMEOUT_SECONDS)
    if status is None or status.pid != state.pid or status.config_fingerprint != fingerprint:
        return None
    return _handle(state, token, directory, status, started=False)


def _status(state: DaemonState, token: str, timeout: float) -> Optional[DaemonStatus]:
    try:
        return ControlClient(state.control_url, token).status(timeout=timeout)
    except ControlError:
        return None


def _handle(
    state: DaemonState, token: str, directory: DaemonDir, status: Optional[DaemonStatus], started: bool
) -> DaemonHandle:
    return DaemonHandle(
        address=state.address,
        token=token,
        control_url=state.control_url,
        directory=directory.path,
        pid=state.pid,
        status=status,
        started=started,
    )


def _retire_previous(directory: DaemonDir, token: str, fingerprint: str, timeout: float) -> None:
    """Makes room for a new daemon in `directory` (see the module docstring)."""
    state = read_daemon_state(directory.path)
    if not is_locked(directory.daemon_lock):
        if state is not None:
            remove_daemon_state(directory.path, pid=state.pid)  # left by a daemon that was killed
        return
    if state is not None and state.control_url and state.config_fingerprint != fingerprint:
        try:  # another configuration: it exports, then exits
            ControlClient(state.control_url, token).shutdown(timeout=STATUS_TIMEOUT_SECONDS)
        except ControlError:
            pass
    if not wait_until_unlocked(directory.daemon_lock, timeout):
        who = f"pid {state.pid}" if state is not None else "a process"
        raise DaemonUnavailable(
            f"the daemon in {directory.path} ({who}) neither answers nor exits (still starting, or exporting "
            f"before it stops); its log is {directory.log_file}. `oci-cache stop --state-dir {directory.path}` "
            f"stops it."
        )


def _start(
    settings: DaemonSettings, directory: DaemonDir, token: str, fingerprint: str, timeout: float
) -> DaemonHandle:
    _rotate_log(directory.log_file)
    preferred = _preferred_listen(settings.listen, directory)
    try:
        return _start_once(settings, directory, token, fingerprint, timeout, preferred)
    except _ExitedEarly as error:
        if preferred == settings.listen:
            raise DaemonUnavailable(str(error)) from None
    # The previous port was taken between our check and the daemon's bind: any port will do.
    try:
        return _start_once(settings, directory, token, fingerprint, timeout, settings.listen)
    except _ExitedEarly as error:
        raise DaemonUnavailable(str(error)) from None


class _ExitedEarly(Exception):
    pass


def _start_once(
    settings: DaemonSettings, directory: DaemonDir, token: str, fingerprint: str, timeout: float, listen: str
) -> DaemonHandle:
    argv = serve_argv(settings, directory, fingerprint, listen)
    pid = _spawn_detached(argv, directory, settings.env, settings.pythonpath)
    deadline = time.monotonic() + timeout
    while True:
        state = read_daemon_state(directory.path)
        if state is not None and state.pid == pid and state.control_url:
            # The process we spawned wrote it once its server and control endpoint listen.
            _remember_port(directory, state.address)
            return _handle(state, token, directory, None, started=True)
        if not _pid_exists(pid):
            raise _ExitedEarly(f"the daemon exited at start; {_log_tail(directory.log_file)}")
        if time.monotonic() >= deadline:
            raise DaemonUnavailable(
                f"the daemon (pid {pid}) did not answer within {timeout:.0f}s of its start; "
                f"{_log_tail(directory.log_file)}"
            )
        time.sleep(_POLL_SECONDS)


def serve_argv(settings: DaemonSettings, directory: DaemonDir, fingerprint: str, listen: str) -> List[str]:
    cache_from, cache_to = effective_cache_entries(settings, directory.path)
    argv = [
        settings.python,
        "-m",
        "oci_cache.cli.main",
        "serve",
        "--log-level",
        settings.log_level,
        "--listen",
        listen,
        "--state-dir",
        str(directory.path),
        "--max-size",
        settings.max_size,
        "--token-file",
        str(directory.token_file),
        "--idle-timeout",
        settings.idle_timeout or "0",
        "--log-file",
        str(directory.log_file),
        "--config-fingerprint",
        fingerprint,
        "--control-http",
    ]
    for entry in cache_from:
        argv += ["--cache-from", entry]
    for entry in cache_to:
        argv += ["--cache-to", entry]
    argv += ["--secret-masking-key-file", str(masking_key_file(settings))]
    for name in settings.secret_env_names:
        argv += ["--secret-env", name]
    return argv


def daemon_environment(base: Optional[Mapping[str, str]], pythonpath: Tuple[str, ...]) -> Dict[str, str]:
    """The daemon's environment: `base` (default os.environ) with PYTHONPATH replaced by
    `pythonpath` and PYTHONHOME dropped."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    else:
        env.pop("PYTHONPATH", None)
    return env


def _spawn_detached(
    argv: List[str], directory: DaemonDir, env: Optional[Mapping[str, str]], pythonpath: Tuple[str, ...]
) -> int:
    if not os.access(argv[0], os.X_OK):
        raise DaemonUnavailable(f"the daemon's Python interpreter {argv[0]} does not exist or is not executable")
    try:
        completed = subprocess.run(
            ["/bin/sh", "-c", _DETACH_SCRIPT, "sh", str(directory.log_file), *argv],
            cwd=str(directory.path),
            env=daemon_environment(env, pythonpath),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise DaemonUnavailable(f"cannot start the daemon: {error}") from None
    output = completed.stdout.decode("utf-8", errors="replace").strip()
    if completed.returncode != 0 or not output.isdigit():
        detail = completed.stderr.decode("utf-8", errors="replace").strip()
        raise DaemonUnavailable(f"cannot start the daemon (sh exited {completed.returncode}): {detail or output}")
    return int(output)


def _pid_exists(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return not fields or fields[0] not in (b"Z", b"X")


def _preferred_listen(listen: str, directory: DaemonDir) -> str:
    """`listen`, or with port 0 the port the daemon last used when it is free now."""
    host, _, port = listen.rpartition(":")
    if port != "0":
        return listen
    try:
        last_port = int(directory.last_port_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return listen
    if not 0 < last_port < 65536 or not _port_is_free(host, last_port):
        return listen
    return f"{host}:{last_port}"


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def _remember_port(directory: DaemonDir, address: str) -> None:
    port = address.rpartition(":")[2]
    try:
        directory.last_port_file.write_text(port + "\n", encoding="ascii")
    except OSError:
        pass


def _rotate_log(log_file: Path) -> None:
    try:
        if log_file.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(log_file, log_file.with_name(log_file.name + ".1"))
    except OSError:
        pass


def _log_tail(log_file: Path) -> str:
    try:
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except OSError:
        return f"no log at {log_file}"
    if not lines:
        return f"its log {log_file} is empty"
    return f"last lines of {log_file}:\n" + "\n".join(lines)


__all__: List[str] = [
    "DaemonHandle",
    "DaemonUnavailable",
    "daemon_environment",
    "ensure_daemon",
    "serve_argv",
]
