"""Checks shared by the service adapters: digest functions and digests in requests."""

from __future__ import annotations

from typing import Any

from oci_cache.digests import Digest
from oci_cache.errors import InvalidArgumentError
from oci_cache.reapi import remote_execution_pb2 as re_pb2

_ACCEPTED_DIGEST_FUNCTIONS = frozenset({re_pb2.DigestFunction.UNKNOWN, re_pb2.DigestFunction.SHA256})


def check_digest_function(value: int) -> None:
    """Accepts SHA256 and the unset value (which means SHA256 here)."""
    if value not in _ACCEPTED_DIGEST_FUNCTIONS:
        raise InvalidArgumentError(f"unsupported digest function {value}: this server supports SHA256 only")


def parse_digest(message: Any, what: str) -> Digest:
    """A validated Digest from a Digest message; the error names `what` it was."""
    try:
        return Digest.parse(message.hash, message.size_bytes)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"{what}: {error}") from None


def check_action_result(result: Any) -> None:
    """Every digest an ActionResult carries must be well formed."""
    if result.HasField("stdout_digest"):
        parse_digest(result.stdout_digest, "stdout_digest")
    if result.HasField("stderr_digest"):
        parse_digest(result.stderr_digest, "stderr_digest")
    for output_file in result.output_files:
        parse_digest(output_file.digest, f"output file {output_file.path[:200]!r}")
    for output_directory in result.output_directories:
        parse_digest(output_directory.tree_digest, f"output directory {output_directory.path[:200]!r}")
        if output_directory.HasField("root_directory_digest"):
            parse_digest(output_directory.root_directory_digest, f"output directory {output_directory.path[:200]!r}")
