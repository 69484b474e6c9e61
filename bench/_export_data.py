"""Export benchmark data and its ceiling: blobs on disk, and the same bytes packed by
`tar`, compressed by the `zstd` / `gzip` CLIs and uploaded raw with the registry client.

Blobs are half incompressible (random) and half source text sliced from this
repository (so the whole compresses about like a real build cache, ~1.6x), each
starting with a unique line so that no two are equal.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from oci_cache.digests import Digest

_TEXT_SUFFIXES = (".py", ".md", ".proto", ".toml", ".txt")


@dataclass(frozen=True)
class BlobSet:
    directory: Path
    blobs: Tuple[Tuple[Digest, Path], ...]

    @property
    def total_bytes(self) -> int:
        return sum(digest.size_bytes for digest, _ in self.blobs)


def text_corpus(repo_root: str, at_least: int = 4 << 20) -> bytes:
    parts: List[bytes] = []
    for base in ("src", "tests", "docs", "bench", "protos"):
        for root, _, files in os.walk(os.path.join(repo_root, base)):
            if "_proto" in root or "__pycache__" in root:
                continue
            for name in sorted(files):
                if name.endswith(_TEXT_SUFFIXES):
                    with open(os.path.join(root, name), "rb") as f:
                        parts.append(f.read())
    corpus = b"".join(parts) or b"def f(x):\n    return x + 1\n"
    while len(corpus) < at_least:
        corpus += corpus
    return corpus


def write_blobs(directory: Path, count: int, total_bytes: int, repo_root: str, seed: int = 7) -> BlobSet:
    """`count` blobs of about `total_bytes` in all (sizes vary ±50%), one file each."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    corpus = text_corpus(repo_root)
    mean = total_bytes // count
    blobs = []
    for number in range(count):
        size = max(64, int(mean * (0.5 + rng.random())))
        head = f"bench blob {seed}/{number}\n".encode()
        body_size = max(0, size - len(head))
        if number % 2:
            body = os.urandom(body_size)
        else:
            start = rng.randrange(0, len(corpus) - body_size) if body_size < len(corpus) else 0
            body = corpus[start : start + body_size]
        data = head + body
        digest = Digest.of(data)
        path = directory / digest.hash
        path.write_bytes(data)
        blobs.append((digest, path))
    return BlobSet(directory, tuple(blobs))


@dataclass(frozen=True)
class PackedFile:
    path: Path
    digest: Digest
    seconds: float  # tar + compress + hash (one pipeline)
    cpu_seconds: float  # of the pipeline's processes


_COMMANDS = {
    "uncompressed": "cat",
    "gzip": "gzip -c",
    "zstd": "zstd -3 -T0 -q -c",
}


def pack_with_clis(blob_set: BlobSet, compression: str, out_path: Path) -> PackedFile:
    """`tar -cf - . | <compressor> | tee OUT | sha256sum` over the blob directory."""
    if shutil.which("tar") is None or shutil.which(_COMMANDS[compression].split()[0]) is None:
        raise RuntimeError(f"the ceiling of {compression} needs `tar` and `{_COMMANDS[compression].split()[0]}`")
    script = (
        f"set -o pipefail; tar -cf - -C {_quote(str(blob_set.directory))} . "
        f"| {_COMMANDS[compression]} | tee {_quote(str(out_path))} | sha256sum"
    )
    before = os.times()
    started = time.monotonic()
    completed = subprocess.run(["bash", "-c", script], capture_output=True, check=False)
    seconds = time.monotonic() - started
    after = os.times()
    if completed.returncode != 0:
        raise RuntimeError(f"ceiling pipeline failed: {completed.stderr.decode(errors='replace')[-500:]}")
    digest_hex = completed.stdout.split()[0].decode()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return PackedFile(out_path, Digest(digest_hex, out_path.stat().st_size), seconds, cpu)


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
