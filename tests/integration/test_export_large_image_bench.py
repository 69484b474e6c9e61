"""bench/export_large_image.py runs and prints its ratios (a smoke run on a small image;
the figures in docs/performance.md come from the default size)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "export_large_image.py"


def test_the_large_image_export_bench_prints_each_export_against_its_ceiling() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--entries", "2000", "--runs", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
    )
    output = completed.stdout.decode()
    assert completed.returncode == 0, output
    for name, ceiling in (("publish", "index-rewrite"), ("unchanged-full", "index-rewrite"), ("unchanged", "index-read")):
        assert re.search(rf"^{name}\s+\d+\.\d\d\s+{ceiling}\s+\d+\.\d\d\s+\d+\.\d\d$", output, re.M), output
    assert re.search(r"^unchanged \(settled\) vs unchanged-full: \d+\.\dx faster$", output, re.M), output
