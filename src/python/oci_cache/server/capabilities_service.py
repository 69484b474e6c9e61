"""REAPI Capabilities: what this cache offers (no remote execution)."""

from __future__ import annotations

from typing import Any

import grpc

from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import semver_pb2
from oci_cache.server.method_handlers import Dispatcher, Method, check_parsed, generic_handler

SERVICE_NAME = "build.bazel.remote.execution.v2.Capabilities"
LOW_API_VERSION = (2, 0)
HIGH_API_VERSION = (2, 3)


def server_capabilities(max_batch_total_size_bytes: int) -> Any:
    """The ServerCapabilities message this server answers with."""
    zstd = [re_pb2.Compressor.ZSTD]
    return re_pb2.ServerCapabilities(
        cache_capabilities=re_pb2.CacheCapabilities(
            digest_functions=[re_pb2.DigestFunction.SHA256],
            action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(update_enabled=True),
            max_batch_total_size_bytes=max_batch_total_size_bytes,
            symlink_absolute_path_strategy=re_pb2.SymlinkAbsolutePathStrategy.ALLOWED,
            supported_compressors=zstd,
            supported_batch_update_compressors=zstd,
        ),
        low_api_version=semver_pb2.SemVer(major=LOW_API_VERSION[0], minor=LOW_API_VERSION[1]),
        high_api_version=semver_pb2.SemVer(major=HIGH_API_VERSION[0], minor=HIGH_API_VERSION[1]),
    )


class CapabilitiesService:
    def __init__(self, max_batch_total_size_bytes: int) -> None:
        # Same answer for every instance name: serialize it once.
        self._answer = server_capabilities(max_batch_total_size_bytes).SerializeToString()

    def get_capabilities(self, request: Any) -> bytes:
        check_parsed(request)
        return self._answer

    def handler(self, dispatcher: Dispatcher) -> grpc.GenericRpcHandler:
        return generic_handler(
            SERVICE_NAME, [Method("GetCapabilities", self.get_capabilities, re_pb2.GetCapabilitiesRequest)], dispatcher
        )
