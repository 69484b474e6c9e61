"""REAPI ActionCache: GetActionResult and UpdateActionResult over an ActionCache.

Hits are answered with the stored serialized ActionResult as is (no parse, no
re-serialization) unless the client asks for inlined stdout/stderr/output files.
Lookups run on the event loop (the storage raises WouldBlockError to move one to
a worker thread); updates, which fsync, run on a worker thread.
Whether every referenced blob is still present is the ActionCache's business (see
store.completeness); this adapter only translates.
"""

from __future__ import annotations

from typing import Any

import grpc

from oci_cache.errors import InvalidArgumentError, NotFoundError
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.server.method_handlers import Dispatcher, Method, Runs, check_parsed, generic_handler
from oci_cache.server.request_checks import check_action_result, check_digest_function, parse_digest
from oci_cache.store.interfaces import ActionCache, BlobStore

SERVICE_NAME = "build.bazel.remote.execution.v2.ActionCache"


class ActionCacheService:
    def __init__(self, action_cache: ActionCache, blobs: BlobStore, max_inline_bytes: int) -> None:
        """`max_inline_bytes` bounds the total size of blobs inlined into one answer."""
        self._action_cache = action_cache
        self._blobs = blobs
        self._max_inline_bytes = max_inline_bytes

    def get_action_result(self, request: Any) -> Any:
        check_parsed(request)
        check_digest_function(request.digest_function)
        action_digest = parse_digest(request.action_digest, "action_digest")
        serialized = self._action_cache.get_action_result(action_digest)
        if serialized is None:
            raise NotFoundError(f"no action result for {action_digest}")
        if request.inline_stdout or request.inline_stderr or request.inline_output_files:
            return self._with_inlined_blobs(serialized, request)
        return serialized

    def update_action_result(self, request: Any) -> Any:
        check_parsed(request)
        check_digest_function(request.digest_function)
        action_digest = parse_digest(request.action_digest, "action_digest")
        if not request.HasField("action_result"):
            raise InvalidArgumentError("missing action_result")
        check_action_result(request.action_result)
        serialized = request.action_result.SerializeToString()
        self._action_cache.put_action_result(action_digest, serialized)
        return serialized

    def _with_inlined_blobs(self, serialized: bytes, request: Any) -> Any:
        """The ActionResult with the requested small blobs inlined, within the budget."""
        result = re_pb2.ActionResult.FromString(serialized)
        budget = self._max_inline_bytes
        if request.inline_stdout and result.HasField("stdout_digest") and not result.stdout_raw:
            data = self._read_within(result.stdout_digest, budget)
            if data is not None:
                result.stdout_raw = data
                budget -= len(data)
        if request.inline_stderr and result.HasField("stderr_digest") and not result.stderr_raw:
            data = self._read_within(result.stderr_digest, budget)
            if data is not None:
                result.stderr_raw = data
                budget -= len(data)
        wanted = frozenset(request.inline_output_files)
        for output_file in result.output_files:
            if output_file.path in wanted and not output_file.contents:
                data = self._read_within(output_file.digest, budget)
                if data is not None:
                    output_file.contents = data
                    budget -= len(data)
        return result

    def _read_within(self, digest_message: Any, budget: int) -> Any:
        """The blob's bytes if it fits the budget and is present, else None (not inlined)."""
        if digest_message.size_bytes > budget:
            return None
        try:
            return self._blobs.read_bytes(parse_digest(digest_message, "inlined blob"))
        except NotFoundError:
            return None

    def handler(self, dispatcher: Dispatcher) -> grpc.GenericRpcHandler:
        return generic_handler(
            SERVICE_NAME,
            [
                Method("GetActionResult", self.get_action_result, re_pb2.GetActionResultRequest, Runs.INLINE),
                Method(
                    "UpdateActionResult", self.update_action_result, re_pb2.UpdateActionResultRequest, Runs.BLOCKING
                ),
            ],
            dispatcher,
        )
