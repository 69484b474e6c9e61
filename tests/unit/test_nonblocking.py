from __future__ import annotations

import asyncio

import pytest

from oci_cache.nonblocking import WouldBlockError, check_may_block, on_event_loop


def test_blocking_is_refused_on_an_event_loop_only() -> None:
    check_may_block("outside any loop")
    assert not on_event_loop()

    async def on_loop() -> None:
        assert on_event_loop()
        with pytest.raises(WouldBlockError, match="registry fetch"):
            check_may_block("registry fetch")
        # A worker thread of the loop may block.
        await asyncio.get_running_loop().run_in_executor(None, check_may_block, "in a worker")

    asyncio.run(on_loop())
