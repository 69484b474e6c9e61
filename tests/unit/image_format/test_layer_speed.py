"""Layer export speed against the CLI ceiling (the same bytes through
`tar | zstd -3` / `tar | gzip -6`), compared in CPU seconds so that a busy
machine does not decide the result. Marked slow; prints the numbers."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from layer_fixtures import make_blob
from oci_cache.digests import Digest
from oci_cache.image_format.compression import Compression
from oci_cache.image_format.layer_writer import write_layer

pytestmark = pytest.mark.slow


def _blobs(directory: Path) -> List[Tuple[Digest, str]]:
    directory.mkdir()
    sources = []
    text = make_blob(1 << 20, 1)
    for number in range(96):
        size = (64 << 10) << (number % 6)
        content = b"%d " % number + ((os.urandom(size // 2) + text[: size // 2]) if number % 2 else text[:size])
        path = directory / Digest.of(content).hash
        path.write_bytes(content)
        sources.append((Digest.of(content), str(path)))
    return sources


def _cli_cpu_seconds(command: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["sh", "-c", command], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.parametrize(
    "compression, cli, bound",
    [(Compression.ZSTD, "zstd -q -3 -T2", 2.0), (Compression.GZIP, "gzip -6", 1.0), (Compression.ESTARGZ, "gzip -6", 1.0)],
)
def test_export_cpu_cost_is_near_the_cli(tmp_path: Path, compression: Compression, cli: str, bound: float) -> None:
    if shutil.which(cli.split()[0]) is None:
        pytest.fail(f"{cli.split()[0]} is required")
    blobs = _blobs(tmp_path / "blobs")
    total = sum(d.size_bytes for d, _ in blobs)
    cli_cpu = min(_cli_cpu_seconds(f"tar -cf - -C {tmp_path / 'blobs'} . | {cli} > {tmp_path / 'cli.out'}") for _ in range(2))
    ours = []
    for _ in range(2):
        started_cpu, started = time.process_time(), time.perf_counter()
        write_layer(str(tmp_path / "layer"), blobs, compression)
        ours.append((time.process_time() - started_cpu, time.perf_counter() - started))
    cpu, wall = min(ours)
    print(f"\n{compression.value}: {total / 1e6:.0f} MB, ours {cpu:.2f} s CPU ({wall:.2f} s wall), `{cli}` {cli_cpu:.2f} s CPU, ratio {cpu / cli_cpu:.2f}")
    assert cpu <= bound * cli_cpu
