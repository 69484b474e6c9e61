"""One import point for the generated REAPI, ByteStream and control-service code."""

from oci_cache._proto.build.bazel.remote.execution.v2 import (  # noqa: F401
    remote_execution_pb2,
    remote_execution_pb2_grpc,
)
from oci_cache._proto.build.bazel.semver import semver_pb2  # noqa: F401
from oci_cache._proto.google.bytestream import bytestream_pb2, bytestream_pb2_grpc  # noqa: F401
from oci_cache._proto.google.rpc import status_pb2  # noqa: F401
from oci_cache._proto.oci_cache.v1 import control_pb2, control_pb2_grpc  # noqa: F401
