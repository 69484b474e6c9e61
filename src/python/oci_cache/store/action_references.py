"""The blobs an ActionResult references: the one parser behind honest hits (completeness
check) and export collection, and the one bounded cache of parsed Trees.

An ActionResult names blobs directly — stdout_digest, stderr_digest, every output
file's digest, every output directory's tree_digest (and root_directory_digest when
set) — and indirectly: the files of every Directory inside each Tree (and, with
root_directory_digest, the digests of the nested directories, which the client may
then fetch from the CAS). Empty digests are left out: the empty blob is always
present. An unparseable result or tree, or an invalid digest in either, raises
UnreadableResultError.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

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


class TreeReferences:
    """The non-empty digests one Tree references, in the order of its directories:
    each directory's files, then its subdirectories' digests."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Tuple[Tuple[Digest, bool], ...]) -> None:
        self._entries = entries  # (digest, is a directory)

    def needed(self, directories_in_cas: bool) -> Tuple[Digest, ...]:
        """What a hit needs: the files, plus the directories when they are fetched from the CAS."""
        if directories_in_cas:
            return tuple(dict.fromkeys(digest for digest, _ in self._entries))
        return tuple(dict.fromkeys(digest for digest, is_directory in self._entries if not is_directory))

    @property
    def weight(self) -> int:
        """What it costs to keep in the cache, in digests (1 for the tree itself)."""
        return 1 + len(self._entries)


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


def parse_tree_references(serialized: bytes) -> TreeReferences:
    """The references of a serialized Tree; raises UnreadableResultError."""
    try:
        tree = remote_execution_pb2.Tree.FromString(serialized)
    except DecodeError as error:
        raise UnreadableResultError(f"unparseable Tree ({error})") from None
    entries: List[Tuple[Digest, bool]] = []
    for directory in [tree.root, *tree.children]:
        for file_node in directory.files:
            digest = _valid(file_node.digest)
            if digest.size_bytes:
                entries.append((digest, False))
        for directory_node in directory.directories:
            digest = _valid(directory_node.digest)
            if digest.size_bytes:
                entries.append((digest, True))
    return TreeReferences(tuple(dict.fromkeys(entries)))


class TreeCache:
    """Parsed Trees by digest, least recently used dropped first; bounded both in trees
    and in the digests they hold (a tree larger than the whole bound is not kept).
    Trees are immutable, so a repeated hit neither re-reads nor re-parses its trees."""

    def __init__(self, *, max_trees: int = 4096, max_digests: int = 200_000) -> None:
        self._max_trees = max_trees
        self._max_digests = max_digests
        self._trees: "collections.OrderedDict[Digest, TreeReferences]" = collections.OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def references(self, tree: Digest, read: Callable[[Digest], bytes]) -> TreeReferences:
        """The references of `tree`, read with `read` and parsed unless cached.
        Raises what `read` raises, and UnreadableResultError."""
        cached = self.get(tree)
        if cached is not None:
            return cached
        found = parse_tree_references(read(tree))
        self._remember(tree, found)
        return found

    def get(self, tree: Digest) -> Optional[TreeReferences]:
        with self._lock:
            cached = self._trees.get(tree)
            if cached is not None:
                self._trees.move_to_end(tree)
            return cached

    def _remember(self, tree: Digest, found: TreeReferences) -> None:
        if found.weight > self._max_digests:
            return
        with self._lock:
            if tree in self._trees:
                return
            self._trees[tree] = found
            self._weight += found.weight
            while len(self._trees) > self._max_trees or self._weight > self._max_digests:
                _, evicted = self._trees.popitem(last=False)
                self._weight -= evicted.weight


def _valid(message: remote_execution_pb2.Digest) -> Digest:
    try:
        return Digest.from_proto(message)
    except InvalidArgumentError as error:
        raise UnreadableResultError(str(error)) from None


def _add(digests: List[Digest], message: remote_execution_pb2.Digest) -> None:
    digest = _valid(message)
    if digest.size_bytes:
        digests.append(digest)


__all__ = [
    "ResultReferences",
    "TreeCache",
    "TreeReferences",
    "UnreadableResultError",
    "parse_result_references",
    "parse_tree_references",
]
