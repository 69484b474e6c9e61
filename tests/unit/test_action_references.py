"""parse_result_references / parse_tree_references: what a hit needs."""

from __future__ import annotations

from typing import List

import pytest

from oci_cache.store.action_references import (
    TreeCache,
    UnreadableResultError,
    parse_result_references,
    parse_tree_references,
)
from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.reapi import remote_execution_pb2 as re_pb2


def _d(data: bytes) -> re_pb2.Digest:
    return Digest.of(data).to_proto()


def test_direct_references_in_order_without_empty_or_duplicates() -> None:
    result = re_pb2.ActionResult(exit_code=3, stdout_digest=_d(b"out"), stderr_digest=_d(b""))
    result.output_files.add(path="a", digest=_d(b"A"))
    result.output_files.add(path="b", digest=_d(b"A"))
    result.output_directories.add(path="d", tree_digest=_d(b"tree"), root_directory_digest=_d(b"root"))
    result.output_directories.add(path="e", tree_digest=_d(b"tree2"))
    refs = parse_result_references(result.SerializeToString())
    assert refs.exit_code == 3
    assert refs.direct == (
        Digest.of(b"out"),
        Digest.of(b"A"),
        Digest.of(b"tree"),
        Digest.of(b"root"),
        Digest.of(b"tree2"),
    )
    assert refs.trees == ((Digest.of(b"tree"), True), (Digest.of(b"tree2"), False))
    assert EMPTY_DIGEST not in refs.direct


def test_tree_files_and_directories_when_in_cas() -> None:
    child = re_pb2.Directory()
    child.files.add(name="x", digest=_d(b"X"))
    child.files.add(name="empty", digest=_d(b""))
    root = re_pb2.Directory()
    root.files.add(name="y", digest=_d(b"Y"))
    root.directories.add(name="sub", digest=_d(child.SerializeToString()))
    tree = re_pb2.Tree(root=root, children=[child]).SerializeToString()
    assert parse_tree_references(tree).needed(False) == (Digest.of(b"Y"), Digest.of(b"X"))
    assert parse_tree_references(tree).needed(True) == (Digest.of(b"Y"), Digest.of(child.SerializeToString()), Digest.of(b"X"))


def test_unreadable_results_and_invalid_digests_raise() -> None:
    with pytest.raises(UnreadableResultError):
        parse_result_references(b"\xff\xff\xff")
    bad = re_pb2.ActionResult()
    bad.output_files.add(path="a", digest=re_pb2.Digest(hash="nothex", size_bytes=3))
    with pytest.raises(UnreadableResultError):
        parse_result_references(bad.SerializeToString())
    with pytest.raises(UnreadableResultError):
        parse_tree_references(b"\x0a\x05garbage")


def test_the_tree_cache_is_bounded_in_digests_and_skips_a_tree_larger_than_the_bound() -> None:
    def tree_of(*names: bytes) -> bytes:
        root = re_pb2.Directory()
        for name in names:
            root.files.add(name=name.decode(), digest=_d(name))
        return re_pb2.Tree(root=root).SerializeToString()

    trees = {Digest.of(t): t for t in (tree_of(b"a", b"b"), tree_of(b"c", b"d"), tree_of(b"e", b"f", b"g", b"h"))}
    reads: List[Digest] = []

    def read(digest: Digest) -> bytes:
        reads.append(digest)
        return trees[digest]

    cache = TreeCache(max_trees=10, max_digests=4)  # room for one 2-file tree (weight 3)
    small, other, big = trees
    for tree in (small, small, other, small, big, big):
        cache.references(tree, read)
    assert reads == [small, other, small, big, big]
