"""Real registries (tests/registry_fixtures.py) and the action scenarios of
tests/unit/cache_image for the import/export tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parents[2]
for _path in (_TESTS_DIR, _TESTS_DIR / "unit" / "cache_image", Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from registry_fixtures import *  # noqa: E402,F401,F403


@pytest.fixture
def lazy_reads_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hot-set prefetch after imports (hot_set_prefetch.py): for tests about what the
    lazy, per-blob reads fetch."""
    monkeypatch.setenv("OCI_CACHE_PREFETCH_BYTES", "0")
