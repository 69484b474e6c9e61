"""When the daemon was last called: what its idle timeout counts from.

`ActivityInterceptor` (a grpc.aio interceptor) stamps every RPC; the HTTP control
endpoint stamps its requests too. The stamp is one float assignment per call.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable, List, Optional

import grpc

_monotonic = time.monotonic


class Activity:
    """The monotonic time of the last call (initially: creation)."""

    __slots__ = ("last_call",)

    def __init__(self) -> None:
        self.last_call = _monotonic()

    def touch(self) -> None:
        self.last_call = _monotonic()

    def idle_seconds(self) -> float:
        return max(0.0, _monotonic() - self.last_call)


class ActivityInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, activity: Activity) -> None:
        self._activity = activity

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Optional[grpc.RpcMethodHandler]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Optional[grpc.RpcMethodHandler]:
        self._activity.last_call = _monotonic()
        return await continuation(handler_call_details)


__all__: List[str] = ["Activity", "ActivityInterceptor"]
