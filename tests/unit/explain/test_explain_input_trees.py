"""An input root's Directory messages rebuilt from a listing of its files hash to the
client's root digest, so changed input files compare by path (oci_cache.explain.input_trees)."""

from __future__ import annotations

import pytest

from oci_cache.digests import Digest
from oci_cache.explain.actions import flatten_input_root
from oci_cache.explain.input_trees import directories_of_listing
from oci_cache.reapi import remote_execution_pb2 as re_pb2


def _client_tree():
    """The tree a REAPI client builds: data/words.txt, tool.sh (executable), empty/."""
    words = Digest.of(b"apple\n")
    tool = Digest.of(b"#!/bin/sh\n")
    data = re_pb2.Directory()
    data.files.add(name="words.txt", digest=words.to_proto())
    data_bytes = data.SerializeToString()
    empty_bytes = re_pb2.Directory().SerializeToString()
    root = re_pb2.Directory()
    root.files.add(name="tool.sh", digest=tool.to_proto(), is_executable=True)
    root.directories.add(name="data", digest=Digest.of(data_bytes).to_proto())
    root.directories.add(name="empty", digest=Digest.of(empty_bytes).to_proto())
    root_bytes = root.SerializeToString()
    blobs = {Digest.of(b): b for b in (data_bytes, empty_bytes, root_bytes)}
    return Digest.of(root_bytes), blobs, words, tool


def test_a_listing_rebuilds_the_clients_directories_byte_for_byte() -> None:
    root, blobs, words, tool = _client_tree()

    rebuilt, directories = directories_of_listing(
        [("data/words.txt", str(words), False), ("tool.sh", str(tool), True)], ["empty", "data"]
    )

    assert rebuilt == root
    assert directories == blobs
    assert flatten_input_root(rebuilt, directories.get) == {"data/words.txt": str(words), "tool.sh": str(tool)}


def test_a_listing_that_differs_rebuilds_another_root() -> None:
    root, _, words, tool = _client_tree()

    rebuilt, _ = directories_of_listing([("data/words.txt", str(words), False), ("tool.sh", str(tool), False)], ["empty"])

    assert rebuilt != root


@pytest.mark.parametrize("path", ["../etc/passwd", "a//b", "./x"])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        directories_of_listing([(path, str(Digest.of(b"x")), False)])
