"""An ActionCache decorator that only reports hits whose outputs can all be served.

A client that gets an ActionResult fetches every blob it names; if one of them
is gone (evicted, never uploaded, missing from an imported image) the client
fails or falls back late. So `get_action_result` parses the result and returns
None (a miss) unless the blob store can serve every blob it references:

- stdout_digest and stderr_digest,
- every output file's digest,
- every output directory's tree_digest, and every file of every Directory in
  that Tree (root and children; the Tree carries its directories inline, so
  they need not be in the CAS) — unless the output directory also sets
  root_directory_digest, which tells the client it may fetch the Directory
  messages from the CAS: then that digest and every nested directory's digest
  must be present too.

Digests of size 0 are always present. An unparseable result or tree, or an
invalid digest in either, is a miss. Trees are immutable, so the digests found
in each are kept in a bounded LRU and repeated hits do not re-read or re-parse
them.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Iterator, List, Optional, Tuple

from google.protobuf.message import DecodeError

from oci_cache.digests import Digest
from oci_cache.errors import CacheError, InvalidArgumentError
from oci_cache.reapi import remote_execution_pb2
from oci_cache.store.interfaces import ActionCache, BlobStore

logger = logging.getLogger(__name__)


class _Incomplete(Exception):
    """Why a result cannot be served (internal; becomes a miss)."""


class _TreeContents:
    """The non-empty digests in one Tree: its files, and its directories' digests."""

    __slots__ = ("files", "directories")

    def __init__(self, files: Tuple[Digest, ...], directories: Tuple[Digest, ...]) -> None:
        self.files = files
        self.directories = directories

    @property
    def weight(self) -> int:
        return 1 + len(self.files) + len(self.directories)


class CompletenessCheckingActionCache:
    """Wraps an ActionCache; see the module docstring."""

    def __init__(
        self,
        inner: ActionCache,
        blobs: BlobStore,
        *,
        max_cached_trees: int = 4096,
        max_cached_digests: int = 200_000,
    ) -> None:
        self._inner = inner
        self._blobs = blobs
        self._max_cached_trees = max_cached_trees
        self._max_cached_digests = max_cached_digests
        self._trees: "collections.OrderedDict[Digest, _TreeContents]" = collections.OrderedDict()
        self._cached_weight = 0
        self._trees_lock = threading.Lock()

    def get_action_result(self, action_digest: Digest) -> Optional[bytes]:
        serialized = self._inner.get_action_result(action_digest)
        if serialized is None:
            return None
        try:
            self._check_complete(serialized)
        except _Incomplete as reason:
            logger.debug("action %s: hit downgraded to a miss: %s", action_digest, reason)
            return None
        return serialized

    def put_action_result(self, action_digest: Digest, serialized_result: bytes) -> None:
        self._inner.put_action_result(action_digest, serialized_result)

    def iter_action_digests(self) -> Iterator[Digest]:
        return self._inner.iter_action_digests()

    # ---- checking ----------------------------------------------------------------

    def _check_complete(self, serialized: bytes) -> None:
        try:
            result = remote_execution_pb2.ActionResult.FromString(serialized)
        except DecodeError as e:
            raise _Incomplete(f"unparseable ActionResult ({e})") from None
        direct: List[Digest] = []
        if result.HasField("stdout_digest"):
            _add(direct, result.stdout_digest, "stdout_digest")
        if result.HasField("stderr_digest"):
            _add(direct, result.stderr_digest, "stderr_digest")
        for output_file in result.output_files:
            _add(direct, output_file.digest, f"output file {output_file.path!r}")
        trees: List[Tuple[str, Digest, bool]] = []
        for output_directory in result.output_directories:
            what = f"output directory {output_directory.path!r}"
            tree_digest = _valid(output_directory.tree_digest, f"{what} tree_digest")
            _add(direct, output_directory.tree_digest, f"{what} tree_digest")
            directories_in_cas = output_directory.HasField("root_directory_digest")
            if directories_in_cas:
                _add(direct, output_directory.root_directory_digest, f"{what} root_directory_digest")
            trees.append((what, tree_digest, directories_in_cas))
        self._require_present(direct, "")

        for what, tree_digest, directories_in_cas in trees:
            contents = self._tree_contents(tree_digest, what)
            self._require_present(list(contents.files), f" (a file in the tree of {what})")
            if directories_in_cas:
                self._require_present(list(contents.directories), f" (a directory in the tree of {what})")

    def _require_present(self, digests: List[Digest], context: str) -> None:
        if not digests:
            return
        try:
            missing = self._blobs.find_missing(digests)
        except CacheError as e:
            raise _Incomplete(f"cannot check blobs{context}: {e}") from None
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise _Incomplete(f"blob {missing[0]}{context} is missing{more}")

    def _tree_contents(self, tree_digest: Digest, what: str) -> _TreeContents:
        if tree_digest.size_bytes == 0:
            return _TreeContents((), ())
        with self._trees_lock:
            cached = self._trees.get(tree_digest)
            if cached is not None:
                self._trees.move_to_end(tree_digest)
                return cached
        try:
            serialized = self._blobs.read_bytes(tree_digest)
        except CacheError as e:
            raise _Incomplete(f"cannot read the tree {tree_digest} of {what}: {e}") from None
        contents = _parse_tree(serialized, tree_digest, what)
        self._remember(tree_digest, contents)
        return contents

    def _remember(self, tree_digest: Digest, contents: _TreeContents) -> None:
        if contents.weight > self._max_cached_digests:
            return
        with self._trees_lock:
            if tree_digest in self._trees:
                return
            self._trees[tree_digest] = contents
            self._cached_weight += contents.weight
            while len(self._trees) > self._max_cached_trees or self._cached_weight > self._max_cached_digests:
                _, evicted = self._trees.popitem(last=False)
                self._cached_weight -= evicted.weight


def _valid(message: remote_execution_pb2.Digest, what: str) -> Digest:
    try:
        return Digest.from_proto(message)
    except InvalidArgumentError as e:
        raise _Incomplete(f"{what}: {e}") from None


def _add(digests: List[Digest], message: remote_execution_pb2.Digest, what: str) -> None:
    digest = _valid(message, what)
    if digest.size_bytes:
        digests.append(digest)


def _parse_tree(serialized: bytes, tree_digest: Digest, what: str) -> _TreeContents:
    try:
        tree = remote_execution_pb2.Tree.FromString(serialized)
    except DecodeError as e:
        raise _Incomplete(f"the tree {tree_digest} of {what} is unparseable ({e})") from None
    files: List[Digest] = []
    directories: List[Digest] = []
    context = f"the tree {tree_digest} of {what}"
    for directory in [tree.root, *tree.children]:
        for file_node in directory.files:
            _add(files, file_node.digest, f"file {file_node.name!r} in {context}")
        for directory_node in directory.directories:
            _add(directories, directory_node.digest, f"directory {directory_node.name!r} in {context}")
    return _TreeContents(tuple(dict.fromkeys(files)), tuple(dict.fromkeys(directories)))
