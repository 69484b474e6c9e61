"""Pausing Python's cyclic garbage collector while a large structure is built.

Building the plan of a large cache image creates hundreds of thousands of small
objects that all stay alive; each of the collector's passes over the growing heap
finds nothing to free and costs a good part of the time (docs/performance.md has the
measurement). Reference counting still frees everything as usual while
paused; only the search for reference cycles waits until the block ends.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Disables the cyclic collector for the block (re-enabled after it if it was on)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["cyclic_gc_paused"]
