"""Input trees from a listing: the REAPI Directory messages of an input root, rebuilt
from its files' paths and digests, so that a miss's input files compare by path.

    root, directories = directories_of_listing(files, empty_directories)   # {Digest: Directory bytes}

Pants uploads an Action and its Command but not the input root's Directory messages;
its plugin can list an input root (path, file digest, executable) without reading any
file. The daemon rebuilds the Directory messages in REAPI's canonical form (names
sorted, no other fields) and keeps them only when the rebuilt root digest is the
Action's input root digest: then they are exactly the client's, and a mode=max export
carries them, so the next machine's explanation knows the tree of the cached version
too. File contents never travel: only Directory messages are stored.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple

from oci_cache.digests import Digest
from oci_cache.reapi import remote_execution_pb2

FileListing = Tuple[str, str, bool]
"""(path, "HASH/SIZE", is_executable)."""


def directories_of_listing(
    files: Iterable[FileListing], empty_directories: Iterable[str] = (), symlinks: Iterable[Tuple[str, str]] = ()
) -> Tuple[Digest, Dict[Digest, bytes]]:
    """(root digest, every Directory message by digest) of the tree the listing describes;
    raises ValueError on a bad path or digest."""
    tree: Dict[str, dict] = {}

    def node(parts: Sequence[str]) -> dict:
        current = tree
        for part in parts:
            if part in ("", ".", ".."):
                raise ValueError(f"bad path component {part!r}")
            current = current.setdefault(part, {})
            if not isinstance(current, dict):
                raise ValueError(f"{'/'.join(parts)} is both a file and a directory")
        return current

    for path, digest_text, executable in files:
        *parents, name = path.split("/")
        hash_hex, _, size = digest_text.partition("/")
        directory = node(parents)
        if name in directory:
            raise ValueError(f"{path} listed twice")
        directory[name] = ("file", Digest.parse(hash_hex, int(size)), bool(executable))
    for path, target in symlinks:
        *parents, name = path.split("/")
        node(parents)[name] = ("symlink", target)
    for path in empty_directories:
        node(path.split("/"))
    found: Dict[Digest, bytes] = {}
    return _store(tree, found), found


def _store(tree: dict, found: Dict[Digest, bytes]) -> Digest:
    message = remote_execution_pb2.Directory()
    subdirectories: List[Tuple[str, Digest]] = []
    for name in sorted(tree):
        entry = tree[name]
        if isinstance(entry, dict):
            subdirectories.append((name, _store(entry, found)))
        elif entry[0] == "file":
            message.files.add(name=name, digest=entry[1].to_proto(), is_executable=entry[2])
        else:
            message.symlinks.add(name=name, target=entry[1])
    for name, digest in subdirectories:
        message.directories.add(name=name, digest=digest.to_proto())
    data = message.SerializeToString(deterministic=True)
    digest = Digest.of(data)
    found[digest] = data
    return digest


__all__ = ["FileListing", "directories_of_listing", "root_of"]
