"""Real registries (tests/registry_fixtures.py) and the action scenarios of
tests/unit/cache_image for the import/export tests."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS_DIR = Path(__file__).resolve().parents[2]
for _path in (_TESTS_DIR, _TESTS_DIR / "unit" / "cache_image", Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from registry_fixtures import *  # noqa: E402,F401,F403
