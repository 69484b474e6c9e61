"""The generated code in oci_cache/_proto must match protos/ (scripts/generate_protos.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current() -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (requirements-dev.txt) generates the code")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "generate_protos.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"generated code is stale:\n{result.stderr}"


def test_generated_modules_live_under_oci_cache() -> None:
    """No generated module claims the top-level `google` or `build` packages."""
    generated = REPO_ROOT / "src" / "python" / "oci_cache" / "_proto"
    for path in generated.rglob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("from build", "import build", "from google.rpc", "from google.bytestream")):
                pytest.fail(f"{path.relative_to(REPO_ROOT)} imports outside oci_cache._proto: {line}")
