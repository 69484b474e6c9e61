"""Builds grpc.aio method handlers for the service adapters.

The services are written as plain functions `request -> response`; each Method
says where its function runs:
- INLINE: on the event loop (cheap reads). If the storage raises
  WouldBlockError (see oci_cache.nonblocking), the call is repeated on a worker
  thread.
- BLOCKING: on a worker thread (anything that writes and fsyncs, or reads much).
- ASYNC: the function is itself a coroutine function `(request, context)` or,
  for a streaming response, an async generator; it decides per step.
A BLOCKING method with a streaming response returns the list of its responses.

Beyond that, this module adds what the generated `add_*Servicer_to_server`
functions lack:
- a request that does not parse reaches the service as `MALFORMED` and is
  answered INVALID_ARGUMENT (grpc's own answer would be INTERNAL);
- a function may return already-serialized `bytes` instead of a message;
- every exception becomes a deliberate status (status_mapping): no request ever
  gets UNKNOWN or INTERNAL.
"""

from __future__ import annotations

import asyncio
import enum
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, Iterable, List, Type, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from oci_cache.errors import InvalidArgumentError
from oci_cache.nonblocking import WouldBlockError
from oci_cache.server.status_mapping import status_for_exception

T = TypeVar("T")


class _Malformed:
    """Stands for a request message that did not parse."""

    def __repr__(self) -> str:
        return "MALFORMED"


MALFORMED: Any = _Malformed()


def check_parsed(request: Any) -> None:
    """Raises InvalidArgumentError when `request` is the MALFORMED marker."""
    if request is MALFORMED:
        raise InvalidArgumentError("request message does not parse")


def _deserializer(message_class: Type[Message]) -> Callable[[bytes], Any]:
    from_string = message_class.FromString

    def deserialize(data: bytes) -> Any:
        try:
            return from_string(data)
        except (DecodeError, ValueError, TypeError, RuntimeError):
            return MALFORMED

    return deserialize


def serialize_response(response: Any) -> bytes:
    """Accepts a message or bytes that are already its serialized form."""
    if response.__class__ is bytes:
        return response
    return response.SerializeToString()


class Runs(enum.Enum):
    INLINE = "inline"
    BLOCKING = "blocking"
    ASYNC = "async"


@dataclass(frozen=True)
class Method:
    """One RPC of a service: its function, its request type and where it runs."""

    name: str
    function: Callable[..., Any]
    request_class: Type[Message]
    runs: Runs = Runs.INLINE
    request_streaming: bool = False
    response_streaming: bool = False


class Dispatcher:
    """Runs storage calls inline (falling back to a worker thread) or on a worker thread."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def inline_first(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        except WouldBlockError:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def blocking(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)


def generic_handler(service_name: str, methods: Iterable[Method], dispatcher: Dispatcher) -> grpc.GenericRpcHandler:
    handlers: Dict[str, grpc.RpcMethodHandler] = {}
    for method in methods:
        behaviour = _behaviour(f"/{service_name}/{method.name}", method, dispatcher)
        if method.response_streaming:
            factory = (
                grpc.stream_stream_rpc_method_handler
                if method.request_streaming
                else grpc.unary_stream_rpc_method_handler
            )
        else:
            factory = (
                grpc.stream_unary_rpc_method_handler
                if method.request_streaming
                else grpc.unary_unary_rpc_method_handler
            )
        handlers[method.name] = factory(
            behaviour,
            request_deserializer=_deserializer(method.request_class),
            response_serializer=serialize_response,
        )
    return grpc.method_handlers_generic_handler(service_name, handlers)


def _behaviour(full_name: str, method: Method, dispatcher: Dispatcher) -> Callable[..., Any]:
    function = method.function
    if method.response_streaming:
        if method.runs is Runs.INLINE:
            raise ValueError(f"{full_name}: a streaming response runs ASYNC or BLOCKING")

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                if method.runs is Runs.ASYNC:
                    async for response in function(request, context):
                        yield response
                else:  # BLOCKING: the function returns the list of responses
                    for response in await dispatcher.blocking(function, request):
                        yield response
                return
            except Exception as error:  # noqa: BLE001 - deliberate catch-all, see status_mapping
                code, details = status_for_exception(error, full_name)
            context.set_code(code)
            context.set_details(details)

        return streaming

    if method.runs is Runs.ASYNC:

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await function(request, context)
            except Exception as error:  # noqa: BLE001
                code, details = status_for_exception(error, full_name)
            await context.abort(code, details)

    elif method.runs is Runs.INLINE:

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                try:
                    return function(request)
                except WouldBlockError:
                    return await dispatcher.blocking(function, request)
            except Exception as error:  # noqa: BLE001
                code, details = status_for_exception(error, full_name)
            await context.abort(code, details)

    else:

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await dispatcher.blocking(function, request)
            except Exception as error:  # noqa: BLE001
                code, details = status_for_exception(error, full_name)
            await context.abort(code, details)

    return call


__all__: List[str] = [
    "MALFORMED",
    "Dispatcher",
    "Method",
    "Runs",
    "check_parsed",
    "generic_handler",
    "serialize_response",
]
