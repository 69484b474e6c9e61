"""The blobs an ActionResult references, as import (honest hits) and export (mode=min)
need them.

An ActionResult names blobs directly — stdout_digest, stderr_digest, every output
file's digest, every output directory's tree_digest (and root_directory_digest when
set) — and indirectly: the files of every Directory inside each Tree (and, with
root_directory_digest, the digests of the nested directories, which the client may
then fetch from the CAS). Empty digests are left out: the empty blob is always
present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from google.protobuf.message import DecodeError

from oci_cache.digests import Digest
from oci_cache.errors import InvalidArgumentError
from oci_cache.reapi import remote_execution_pb2


class UnreadableResultError(InvalidArgumentError):
    """An ActionResult or Tree that does not parse or holds an invalid digest."""


@dataclass(frozen=True)
class ResultReferences:
    """What one ActionResult references directly."""

    exit_code: int
    direct: Tuple[Digest, ...]
    """stdout, stderr, output files, tree digests (and root directory digests)."""
    trees: Tuple[Tuple[Digest, bool], ...]
    """(tree digest, directories are fetched from the CAS too)."""


def parse_result_references(serialized: bytes) -> ResultReferences:
    """The direct references of a serialized ActionResult; raises UnreadableResultError."""
    try:
        result = remote_execution_pb2.ActionResult.FromString(serialized)
    except DecodeError as error:
        raise UnreadableResultError(f"unparseable ActionResult ({error})") from None
    direct: List[Digest] = []
    if result.HasField("stdout_digest"):
        _add(direct, result.stdout_digest)
    if result.HasField("stderr_digest"):
        _add(direct, result.stderr_digest)
    for output_file in result.output_files:
        _add(direct, output_file.digest)
    trees: List[Tuple[Digest, bool]] = []
    for output_directory in result.output_directories:
        tree = _valid(output_directory.tree_digest)
        _add(direct, output_directory.tree_digest)
        in_cas = output_directory.HasField("root_directory_digest")
        if in_cas:
            _add(direct, output_directory.root_directory_digest)
        trees.append((tree, in_cas))
    return ResultReferences(result.exit_code, tuple(dict.fromkeys(direct)), tuple(trees))


def parse_tree_references(serialized: bytes, directories_in_cas: bool) -> Tuple[Digest, ...]:
    """The non-empty file digests of a serialized Tree (plus its directories' digests
    when `directories_in_cas`); raises UnreadableResultError."""
    try:
        tree = remote_execution_pb2.Tree.FromString(serialized)
    except DecodeError as error:
        raise UnreadableResultError(f"unparseable Tree ({error})") from None
    found: List[Digest] = []
    for directory in [tree.root, *tree.children]:
        for file_node in directory.files:
            _add(found, file_node.digest)
        if directories_in_cas:
            for directory_node in directory.directories:
                _add(found, directory_node.digest)
    return tuple(dict.fromkeys(found))


def _valid(message: remote_execution_pb2.Digest) -> Digest:
    try:
        return Digest.from_proto(message)
    except InvalidArgumentError as error:
        raise UnreadableResultError(str(error)) from None


def _add(digests: List[Digest], message: remote_execution_pb2.Digest) -> None:
    digest = _valid(message)
    if digest.size_bytes:
        digests.append(digest)


__all__ = ["ResultReferences", "UnreadableResultError", "parse_result_references", "parse_tree_references"]
