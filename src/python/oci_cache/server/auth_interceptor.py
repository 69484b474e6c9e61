"""Requires `authorization: Bearer <token>` on every RPC (UNAUTHENTICATED otherwise).

The daemon started by the Pants plugin listens on loopback, where any local
process could connect; the per-daemon token keeps them out. The comparison is
constant-time, and a rejected call never reaches the service (its request is
not even parsed).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Awaitable, Callable, Optional

import grpc


logger = logging.getLogger(__name__)

_AUTHORIZATION = "authorization"
_REJECTION = "missing or wrong 'authorization: Bearer' token"


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("empty bearer token")
        self._expected = f"Bearer {token}".encode("utf-8")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Optional[grpc.RpcMethodHandler]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Optional[grpc.RpcMethodHandler]:
        handler = await continuation(handler_call_details)
        if handler is None or self.is_authorized(handler_call_details.invocation_metadata):
            return handler
        return _rejecting(handler)

    def is_authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == _AUTHORIZATION:
                presented = value.encode("utf-8") if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(presented, self._expected)
        return False


def _rejecting(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def reject(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REJECTION)

    async def reject_stream(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REJECTION)
        yield  # pragma: no cover - makes this an async generator; abort() raises first

    serializer = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(reject_stream, None, serializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(reject, None, serializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(reject_stream, None, serializer)
    return grpc.unary_unary_rpc_method_handler(reject, None, serializer)
