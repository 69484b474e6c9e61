"""Lets storage code say "this would block" when it is called on the server's event loop.

The gRPC server runs on one asyncio event loop and calls cheap read paths
(GetActionResult, FindMissingBlobs, ByteStream reads) directly on it: a thread
hop per call would cost more than the work. A storage tier that is about to do
something slow (a registry request, a long computation) calls
`check_may_block()` first: on the event loop it raises WouldBlockError, and the
server retries the whole call on a worker thread, where the check passes. So:
raise it before changing anything (the call is repeated from the start).
"""

from __future__ import annotations

import asyncio


class WouldBlockError(Exception):
    """The operation must not run on the event loop; retry it on a worker thread."""


def on_event_loop() -> bool:
    """Whether the calling thread is running an asyncio event loop right now."""
    return asyncio._get_running_loop() is not None  # the cheap, non-raising form of get_running_loop()


def check_may_block(what: str = "") -> None:
    """Raises WouldBlockError when called on an event loop (see the module docstring)."""
    if asyncio._get_running_loop() is not None:
        raise WouldBlockError(what or "blocking operation on the event loop")
