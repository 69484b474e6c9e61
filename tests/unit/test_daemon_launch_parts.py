"""The launcher's parts that need no daemon: fingerprints, token file, locks, daemon dirs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from oci_cache.cache_entries import parse_cache_to
from oci_cache.daemon.daemon_dir import DaemonDir, find_daemon_dirs
from oci_cache.daemon.life_lock import is_locked, try_lock, wait_for_lock, wait_until_unlocked
from oci_cache.daemon.settings import (
    DaemonSettings,
    config_fingerprint,
    daemon_directory,
    directory_key,
    effective_cache_entries,
)
from oci_cache.daemon.token_file import ensure_token
from oci_cache.daemon.launcher import daemon_environment, serve_argv


def settings(tmp_path: Path, **changes: object) -> DaemonSettings:
    base = DaemonSettings(repo_root=str(tmp_path / "my repo"), state_dir=str(tmp_path / "state"), python=sys.executable)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_fingerprints_are_stable_and_say_what_changed(tmp_path: Path) -> None:
    first = settings(tmp_path)
    assert directory_key(first) == directory_key(settings(tmp_path))
    assert config_fingerprint(first) == config_fingerprint(settings(tmp_path))
    assert directory_key(first).startswith("my_repo-") and len(directory_key(first)) == len("my_repo-") + 16
    assert daemon_directory(first) == tmp_path / "state" / directory_key(first)
    # The environment is not part of either.
    assert config_fingerprint(replace(first, env={"A": "1"})) == config_fingerprint(first)

    # Another cache: another directory (and store, token, daemon).
    for other in (replace(first, cache_to=("type=local,dest=/x",)), replace(first, cache_from=("r/x:y",)),
                  replace(first, repo_root=str(tmp_path / "other"))):
        assert directory_key(other) != directory_key(first)
    # Same cache, other daemon settings: same directory, another configuration.
    for other in (replace(first, max_size="1GiB"), replace(first, idle_timeout="1h"),
                  replace(first, listen="127.0.0.1:9092"), replace(first, python="/usr/bin/python3"),
                  replace(first, pythonpath=("/src",))):
        assert directory_key(other) == directory_key(first)
        assert config_fingerprint(other) != config_fingerprint(first)


def test_the_repository_is_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "my repo").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "my repo")
    assert directory_key(settings(tmp_path, repo_root=str(tmp_path / "link"))) == directory_key(settings(tmp_path))


def test_validate_names_the_bad_setting(tmp_path: Path) -> None:
    settings(tmp_path).validate()
    with pytest.raises(ValueError, match="local_store_max_size"):
        settings(tmp_path, max_size="lots").validate()
    with pytest.raises(ValueError, match="idle_timeout"):
        settings(tmp_path, idle_timeout="soon").validate()
    with pytest.raises(ValueError, match="listen"):
        settings(tmp_path, listen="localhost").validate()
    with pytest.raises(ValueError, match="absolute"):
        settings(tmp_path, state_dir="relative/state").validate()


def test_embedded_default_is_a_layout_in_the_daemon_dir_exported_in_mode_max(tmp_path: Path) -> None:
    plain = settings(tmp_path, embedded_default=True)
    directory = Path("/state/a,b")
    cache_from, cache_to = effective_cache_entries(plain, directory)
    assert cache_from == ('type=local,"src=/state/a,b/cache-image"',)  # quoted: the path holds a comma
    assert cache_to == ('type=local,"dest=/state/a,b/cache-image",mode=max',)
    assert parse_cache_to(cache_to[0]).mode == "max"
    configured = replace(plain, cache_to=("type=registry,ref=r.example/x:c",))
    assert effective_cache_entries(configured, directory) == ((), ("type=registry,ref=r.example/x:c",))
    assert settings(tmp_path).uses_embedded_default  # the default
    assert effective_cache_entries(settings(tmp_path, embedded_default=False), directory) == ((), ())


def test_serve_argv_and_environment(tmp_path: Path) -> None:
    configured = settings(tmp_path, cache_from=("a:1", "b:2"), cache_to=("type=local,dest=/d",), pythonpath=("/src", "/deps"))
    argv = serve_argv(configured, DaemonDir(tmp_path / "d"), "FP", "127.0.0.1:0")
    assert argv[:4] == [sys.executable, "-m", "oci_cache.cli.main", "serve"]
    flags = " ".join(argv[4:])
    for expected in ("--listen 127.0.0.1:0", f"--state-dir {tmp_path / 'd'}", "--max-size 10GiB",
                     f"--token-file {tmp_path / 'd' / 'token'}", "--idle-timeout 30m", "--config-fingerprint FP",
                     "--control-http", "--cache-from a:1 --cache-from b:2", "--cache-to type=local,dest=/d"):
        assert expected in flags
    env = daemon_environment({"PATH": "/bin", "PYTHONPATH": "/junk", "PYTHONHOME": "/h"}, ("/src", "/deps"))
    assert env == {"PATH": "/bin", "PYTHONPATH": os.pathsep.join(["/src", "/deps"])}


def test_token_is_private_random_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = ensure_token(path)
    assert len(token) >= 40 and token == ensure_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(tmp_path / "other") != token
    path.chmod(0o644)  # someone loosened it
    assert ensure_token(path) == token and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")  # a writer died before writing
    replaced = ensure_token(path)
    assert replaced and replaced != token and ensure_token(path) == replaced


def test_daemon_dir_is_private(tmp_path: Path) -> None:
    directory = DaemonDir(tmp_path / "state" / "repo-0123")
    directory.create()
    assert stat.S_IMODE(directory.path.stat().st_mode) == 0o700
    directory.path.chmod(0o755)
    directory.create()
    assert stat.S_IMODE(directory.path.stat().st_mode) == 0o700


def test_find_daemon_dirs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert find_daemon_dirs(state) == []
    (state / "b-1").mkdir(parents=True)
    (state / "b-1" / "daemon.lock").touch()
    (state / "a-2").mkdir()
    (state / "a-2" / "daemon.json").write_text("{}")
    (state / "unrelated").mkdir()
    assert find_daemon_dirs(state) == [state / "a-2", state / "b-1"]
    (state / "daemon.json").write_text("{}")  # a daemon of `oci-cache serve --state-dir state`
    assert find_daemon_dirs(state) == [state, state / "a-2", state / "b-1"]


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_life_lock_is_released_when_its_process_dies(tmp_path: Path) -> None:
    lock = tmp_path / "daemon.lock"
    assert not is_locked(lock)  # no file: nobody
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), "60"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert is_locked(lock)
        assert try_lock(lock) is None
        assert wait_for_lock(lock, 0.1) is None
        assert not wait_until_unlocked(lock, 0.1)
        holder.kill()  # as kill -9 would
        holder.wait(10)
        assert wait_until_unlocked(lock, 5)
        held = try_lock(lock)
        assert held is not None
        assert is_locked(lock)  # flock conflicts between open files, even within one process
        held.release()
        assert not is_locked(lock)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_wait_for_lock_gets_it_once_released(tmp_path: Path) -> None:
    lock = tmp_path / "launch.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), "0.5"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        started = time.monotonic()
        held = wait_for_lock(lock, 10)
        assert held is not None and time.monotonic() - started < 9
        held.release()
    finally:
        holder.wait(10)
