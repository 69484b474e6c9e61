"""Fixtures of the image-format tests (helpers live in layer_fixtures.py)."""

from __future__ import annotations

from typing import List, Tuple

import pytest

from layer_fixtures import sample_blobs
from oci_cache.digests import Digest


@pytest.fixture
def blobs() -> List[Tuple[Digest, bytes]]:
    return sample_blobs()
