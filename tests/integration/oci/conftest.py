"""Makes the real-registry fixtures of tests/registry_fixtures.py available here."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parents[2])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from registry_fixtures import *  # noqa: E402,F401,F403
