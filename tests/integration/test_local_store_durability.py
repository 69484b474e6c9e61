"""Acknowledged writes survive `kill -9`, and nothing partial ever becomes visible.

A child process writes blobs (whole and streamed) and action results from three
threads and prints a line for each one after the call has returned. The test
SIGKILLs it at a random moment, reopens the store, and checks every printed item.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Set, Tuple

from oci_cache.digests import Digest
from oci_cache.store.local_store import LocalStore

CHILD = r"""
import random, sys, threading
from pathlib import Path
from oci_cache.digests import Digest
from oci_cache.store.local_store import LocalStore

root, run_seed = Path(sys.argv[1]), int(sys.argv[2])
store = LocalStore(root, 1 << 30)
print_lock = threading.Lock()

def say(line):
    with print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

def result_for(action, version):
    return b"result %d of " % version + action.hash.encode() * (1 + version % 50)

def worker(n):
    rng = random.Random(run_seed * 100 + n)
    for i in range(1000000):
        seed = run_seed * 10**9 + n * 10**6 + i
        kind = rng.random()
        if kind < 0.5:
            data = random.Random(seed).randbytes(rng.choice([1, 100, 5000, 40000]))
            digest = Digest.of(data)
            if kind < 0.25:
                store.put_bytes(digest, data)
            else:
                writer = store.begin_write(digest)
                for offset in range(0, len(data), 16384):
                    writer.write(data[offset:offset + 16384])
                writer.commit()
            say("B %d %d" % (seed, len(data)))
        else:
            action = Digest.of(b"action %d" % rng.randrange(40))
            version = rng.randrange(1000)
            store.put_action_result(action, result_for(action, version))
            say("A %s %d %d" % (action.hash, action.size_bytes, version))

say("READY")
threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def result_for(action: Digest, version: int) -> bytes:
    return b"result %d of " % version + action.hash.encode() * (1 + version % 50)


def run_and_kill(root: Path, run_seed: int, delay: float) -> List[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(run_seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first == b"READY\n", child.stderr.read() if child.stderr else first
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err.decode(errors="replace")
    lines = out.decode().split("\n")
    return lines[:-1]  # the last piece is "" or a line cut by the kill


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    root = tmp_path / "store"
    rng = random.Random(1234)
    acked_blobs: List[Tuple[int, int]] = []
    latest_action_versions: dict = {}
    written_versions: dict = {}
    total_lines = 0
    for trial in range(12):
        lines = run_and_kill(root, trial, rng.uniform(0.0, 0.25))
        total_lines += len(lines)
        for line in lines:
            parts = line.split()
            if parts[0] == "B":
                acked_blobs.append((int(parts[1]), int(parts[2])))
            else:
                action = Digest(parts[1], int(parts[2]))
                written_versions.setdefault(action, set()).add(int(parts[3]))
                latest_action_versions[action] = int(parts[3])

        with LocalStore(root, 1 << 30) as store:
            assert list((root / "tmp").iterdir()) == [], "leftover temp files are removed at open"
            for seed, size in acked_blobs:
                data = random.Random(seed).randbytes(size)
                assert store.read_bytes(Digest.of(data)) == data
            journal = {entry.action_digest for entry in store.iter_action_writes_since(None)}
            for action in latest_action_versions:
                assert action in journal
                result = store.get_action_result(action)
                assert result is not None
                # Concurrent threads may overwrite each other; the result must be a
                # complete one that was written, never a torn or partial file.
                assert any(result == result_for(action, v) for v in range(1000)), result[:80]
            assert_nothing_partial(root, store)
    assert total_lines > 30, "the child wrote too little before being killed to test anything"


def assert_nothing_partial(root: Path, store: LocalStore) -> None:
    blob_files = [p for p in (root / "cas").rglob("*") if p.is_file()]
    for path in blob_files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"corrupt blob file {path}"
    indexed: Set[Digest] = set(store.iter_blob_digests())
    assert {p.name for p in blob_files} == {d.hash for d in indexed}
    for path in (root / "ac").rglob("*"):
        if path.is_file():
            assert path.read_bytes().startswith(b"result "), f"corrupt action result file {path}"
