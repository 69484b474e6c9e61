from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Set, Tuple

import pytest

from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.store.completeness import CompletenessCheckingActionCache
from oci_cache.store.local_store import LocalStore

ACTION = Digest.of(b"the action")


class CountingBlobs:
    """A real LocalStore, counting read_bytes calls (to observe the tree cache),
    and able to pretend some blobs are gone."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.reads: List[Digest] = []
        self.hidden: Set[Digest] = set()

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def read_bytes(self, digest: Digest) -> bytes:
        self.reads.append(digest)
        return self.store.read_bytes(digest)

    def find_missing(self, digests: Iterable[Digest]) -> List[Digest]:
        digests = list(digests)
        missing = set(self.store.find_missing(digests)) | self.hidden
        return [d for d in digests if d in missing]

    def find_unservable(self, digests: Iterable[Digest]) -> List[Digest]:
        return self.find_missing(digests)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "store", 1 << 26) as opened:
        yield opened


@pytest.fixture
def blobs(store: LocalStore) -> CountingBlobs:
    return CountingBlobs(store)


@pytest.fixture
def cache(store: LocalStore, blobs: CountingBlobs) -> CompletenessCheckingActionCache:
    return CompletenessCheckingActionCache(store, blobs)  # type: ignore[arg-type]


def stored(store: LocalStore, data: bytes) -> re_pb2.Digest:
    digest = Digest.of(data)
    store.put_bytes(digest, data)
    return digest.to_proto()


def unstored(data: bytes) -> re_pb2.Digest:
    return Digest.of(data).to_proto()


def file_node(name: str, digest: re_pb2.Digest) -> re_pb2.FileNode:
    return re_pb2.FileNode(name=name, digest=digest)


def make_tree(
    store: LocalStore, root_files: List[re_pb2.FileNode], child_files: List[re_pb2.FileNode]
) -> Tuple[re_pb2.Tree, Dict[str, re_pb2.Digest]]:
    """A tree with one subdirectory "sub"; returns it and its Directory digests (not stored)."""
    child = re_pb2.Directory(files=child_files)
    child_digest = Digest.of(child.SerializeToString()).to_proto()
    root = re_pb2.Directory(files=root_files, directories=[re_pb2.DirectoryNode(name="sub", digest=child_digest)])
    root_digest = Digest.of(root.SerializeToString()).to_proto()
    return re_pb2.Tree(root=root, children=[child]), {"root": root_digest, "sub": child_digest}


def full_result(store: LocalStore, **missing: bool) -> re_pb2.ActionResult:
    """A result with every kind of reference; `missing` names the ones not stored."""

    def ref(name: str) -> re_pb2.Digest:
        data = b"content of " + name.encode()
        return unstored(data) if missing.get(name) else stored(store, data)

    tree, _ = make_tree(store, [file_node("a.txt", ref("root_file"))], [file_node("b.txt", ref("nested_file"))])
    tree_bytes = tree.SerializeToString()
    tree_digest = unstored(tree_bytes) if missing.get("tree") else stored(store, tree_bytes)
    return re_pb2.ActionResult(
        exit_code=0,
        stdout_digest=ref("stdout"),
        stderr_digest=ref("stderr"),
        output_files=[re_pb2.OutputFile(path="out/file", digest=ref("output_file"))],
        output_directories=[re_pb2.OutputDirectory(path="out/dir", tree_digest=tree_digest)],
    )


def test_a_complete_result_is_a_hit(store: LocalStore, cache: CompletenessCheckingActionCache) -> None:
    serialized = full_result(store).SerializeToString()
    cache.put_action_result(ACTION, serialized)
    assert cache.get_action_result(ACTION) == serialized
    assert list(cache.iter_action_digests()) == [ACTION]


def test_an_absent_result_is_a_miss(cache: CompletenessCheckingActionCache) -> None:
    assert cache.get_action_result(ACTION) is None


@pytest.mark.parametrize("missing", ["stdout", "stderr", "output_file", "tree", "root_file", "nested_file"])
def test_any_missing_blob_makes_a_miss(
    store: LocalStore, cache: CompletenessCheckingActionCache, missing: str, caplog: pytest.LogCaptureFixture
) -> None:
    store.put_action_result(ACTION, full_result(store, **{missing: True}).SerializeToString())
    with caplog.at_level(logging.DEBUG, logger="oci_cache.store.completeness"):
        assert cache.get_action_result(ACTION) is None
    assert "downgraded to a miss" in caplog.text
    assert Digest.of(b"content of " + missing.encode()).hash in caplog.text or missing == "tree"


def test_empty_digests_are_always_present(store: LocalStore, cache: CompletenessCheckingActionCache) -> None:
    empty_tree = EMPTY_DIGEST.to_proto()  # an empty Tree message serializes to nothing
    result = re_pb2.ActionResult(
        stdout_digest=EMPTY_DIGEST.to_proto(),
        output_files=[re_pb2.OutputFile(path="empty", digest=EMPTY_DIGEST.to_proto())],
        output_directories=[re_pb2.OutputDirectory(path="d", tree_digest=empty_tree)],
    )
    tree, _ = make_tree(store, [file_node("empty", EMPTY_DIGEST.to_proto())], [])
    result.output_directories.add(path="e", tree_digest=stored(store, tree.SerializeToString()))
    store.put_action_result(ACTION, result.SerializeToString())
    assert cache.get_action_result(ACTION) is not None


def test_an_empty_result_is_a_hit(store: LocalStore, cache: CompletenessCheckingActionCache) -> None:
    store.put_action_result(ACTION, b"")
    assert cache.get_action_result(ACTION) == b""


@pytest.mark.parametrize(
    "serialized",
    [
        b"\xff\xff\xff",
        re_pb2.ActionResult(stdout_digest=re_pb2.Digest(hash="XYZ", size_bytes=3)).SerializeToString(),
        re_pb2.ActionResult(
            output_files=[re_pb2.OutputFile(path="f", digest=re_pb2.Digest(hash="ab" * 32, size_bytes=-1))]
        ).SerializeToString(),
        re_pb2.ActionResult(output_directories=[re_pb2.OutputDirectory(path="no-tree-digest")]).SerializeToString(),
    ],
    ids=["unparseable", "bad-hash", "negative-size", "directory-without-tree"],
)
def test_a_corrupt_result_is_a_miss(
    store: LocalStore, cache: CompletenessCheckingActionCache, serialized: bytes
) -> None:
    store.put_action_result(ACTION, serialized)
    assert store.get_action_result(ACTION) == serialized
    assert cache.get_action_result(ACTION) is None


@pytest.mark.parametrize(
    "tree_bytes",
    [
        b"\xff\xff\xff",
        re_pb2.Tree(
            root=re_pb2.Directory(files=[file_node("f", re_pb2.Digest(hash="nothex", size_bytes=1))])
        ).SerializeToString(),
    ],
)
def test_a_corrupt_tree_is_a_miss(store: LocalStore, cache: CompletenessCheckingActionCache, tree_bytes: bytes) -> None:
    result = re_pb2.ActionResult(
        output_directories=[re_pb2.OutputDirectory(path="d", tree_digest=stored(store, tree_bytes))]
    )
    store.put_action_result(ACTION, result.SerializeToString())
    assert cache.get_action_result(ACTION) is None


def test_directory_digests_are_required_only_with_root_directory_digest(
    store: LocalStore, cache: CompletenessCheckingActionCache
) -> None:
    tree, directory_digests = make_tree(
        store, [file_node("a", stored(store, b"a"))], [file_node("b", stored(store, b"b"))]
    )
    tree_digest = stored(store, tree.SerializeToString())
    without = re_pb2.ActionResult(output_directories=[re_pb2.OutputDirectory(path="d", tree_digest=tree_digest)])
    store.put_action_result(ACTION, without.SerializeToString())
    assert cache.get_action_result(ACTION) is not None

    with_root = re_pb2.ActionResult(
        output_directories=[
            re_pb2.OutputDirectory(path="d", tree_digest=tree_digest, root_directory_digest=directory_digests["root"])
        ]
    )
    store.put_action_result(ACTION, with_root.SerializeToString())
    assert cache.get_action_result(ACTION) is None, "root directory not in the CAS"
    store.put_bytes(Digest.from_proto(directory_digests["root"]), tree.root.SerializeToString())
    assert cache.get_action_result(ACTION) is None, "nested directory not in the CAS"
    store.put_bytes(Digest.from_proto(directory_digests["sub"]), tree.children[0].SerializeToString())
    assert cache.get_action_result(ACTION) is not None


def test_trees_are_parsed_once(store: LocalStore, blobs: CountingBlobs, cache: CompletenessCheckingActionCache) -> None:
    result = full_result(store)
    store.put_action_result(ACTION, result.SerializeToString())
    for _ in range(5):
        assert cache.get_action_result(ACTION) is not None
    assert blobs.reads == [Digest.from_proto(result.output_directories[0].tree_digest)]


def test_the_tree_cache_is_bounded(store: LocalStore, blobs: CountingBlobs) -> None:
    cache = CompletenessCheckingActionCache(store, blobs, max_cached_trees=1)  # type: ignore[arg-type]
    actions = [Digest.of(b"one"), Digest.of(b"two")]
    for i, action in enumerate(actions):
        tree, _ = make_tree(store, [file_node("f", stored(store, b"file %d" % i))], [])
        tree_digest = stored(store, tree.SerializeToString())
        result = re_pb2.ActionResult(output_directories=[re_pb2.OutputDirectory(path="d", tree_digest=tree_digest)])
        store.put_action_result(action, result.SerializeToString())
    for action in actions + actions:
        assert cache.get_action_result(action) is not None
    assert len(blobs.reads) == 4, "with room for one tree, alternating trees are re-read"
    assert cache.get_action_result(actions[1]) is not None
    assert len(blobs.reads) == 4


def test_a_cached_trees_files_are_still_checked(
    store: LocalStore, blobs: CountingBlobs, cache: CompletenessCheckingActionCache
) -> None:
    store.put_action_result(ACTION, full_result(store).SerializeToString())
    assert cache.get_action_result(ACTION) is not None
    blobs.hidden.add(Digest.of(b"content of nested_file"))
    assert cache.get_action_result(ACTION) is None
    assert len(blobs.reads) == 1
