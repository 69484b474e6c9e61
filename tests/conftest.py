"""Shared fixtures: `oci-cache serve` as a real subprocess (see server_fixtures.py).

    def test_something(running_server):
        stub = ...Stub(running_server.channel())

    def test_restart(server_factory, tmp_path):
        first = server_factory(tmp_path / "state")
        ...
        first.kill()                                   # SIGKILL
        second = server_factory(tmp_path / "state", "--max-size", "1GiB")

Helpers for test modules: `from server_fixtures import free_port, start_server,
ServerProcess` (not `from conftest import ...`: several conftest.py files exist).
"""

from __future__ import annotations

import os

# grpcio's fork handlers can abort a forked child (epoll_wait on a closed fd) while this
# process holds open channels; the tests start servers with subprocess, never plain fork.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import atexit
import shutil
import tempfile


def _use_a_private_home() -> None:
    """Every process the tests start gets a new, empty home directory: the caller's
    ~/.docker credentials, ~/.cache (pip, Pants), ~/.pex and the default state dir
    (~/.cache/pants-oci-cache) are neither read nor written, so what passes here passes
    on a fresh machine too. Tests that need such a file write it themselves."""
    home = tempfile.mkdtemp(prefix="oci-cache-tests-home-")
    for name in ("DOCKER_CONFIG", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "PEX_ROOT", "PIP_CACHE_DIR"):
        os.environ.pop(name, None)
    os.environ["HOME"] = home
    atexit.register(shutil.rmtree, home, True)


_use_a_private_home()

import itertools
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from server_fixtures import ServerProcess, free_port, start_server

ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def unused_tcp_port() -> int:
    """free_port() as a fixture."""
    return free_port()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """`factory(state_dir=None, *extra_args, listen="127.0.0.1:0")` starts a server;
    all are stopped at the end of the test. Without a state_dir, a fresh one is used."""
    started: List[ServerProcess] = []
    fresh = itertools.count(1)

    def factory(state_dir: Optional[Path] = None, *extra_args: str, listen: str = "127.0.0.1:0") -> ServerProcess:
        server = start_server(state_dir or tmp_path / f"state{next(fresh)}", *extra_args, listen=listen)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def running_server(server_factory: ServerFactory) -> ServerProcess:
    """A fresh server with its own state directory, for one test."""
    return server_factory()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests of a module (use digests unique to each test)."""
    server = start_server(tmp_path_factory.mktemp("module-server") / "state")
    yield server
    server.stop()
