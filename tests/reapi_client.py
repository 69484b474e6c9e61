"""A small REAPI client written for the tests, independent of the server's code.

It computes digests itself (hashlib), builds Directory/Tree messages from a
directory on disk, uploads them (FindMissingBlobs, then BatchUpdateBlobs for small
blobs and ByteStream.Write for large ones) and downloads a tree back (GetTree,
then ByteStream.Read per file). It uses only the generated protocol code.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import grpc

from oci_cache.reapi import bytestream_pb2, bytestream_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc

BATCH_LIMIT_BYTES = 1 << 20
WRITE_CHUNK_BYTES = 1 << 20


def digest_of(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def key_of(digest: re_pb2.Digest) -> Tuple[str, int]:
    return digest.hash, digest.size_bytes


@dataclass
class UploadedTree:
    root_digest: re_pb2.Digest
    tree: re_pb2.Tree
    tree_digest: re_pb2.Digest


class ReapiClient:
    def __init__(self, channel: grpc.Channel, instance_name: str = "", metadata: Optional[List[Tuple[str, str]]] = None):
        self.instance_name = instance_name
        self.metadata = metadata or []
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.action_cache = re_grpc.ActionCacheStub(channel)
        self.bytestream = bytestream_pb2_grpc.ByteStreamStub(channel)

    # --- blobs -------------------------------------------------------------------------

    def upload_blobs(self, blobs: Dict[Tuple[str, int], bytes]) -> None:
        """Uploads the blobs the server is missing."""
        digests = [re_pb2.Digest(hash=h, size_bytes=s) for h, s in blobs]
        missing = self.cas.FindMissingBlobs(
            re_pb2.FindMissingBlobsRequest(instance_name=self.instance_name, blob_digests=digests),
            metadata=self.metadata,
        ).missing_blob_digests
        batch: List[re_pb2.BatchUpdateBlobsRequest.Request] = []
        batch_bytes = 0
        for digest in missing:
            data = blobs[key_of(digest)]
            if len(data) > BATCH_LIMIT_BYTES:
                self.write_blob(data)
                continue
            if batch_bytes + len(data) > BATCH_LIMIT_BYTES:
                self._batch_update(batch)
                batch, batch_bytes = [], 0
            batch.append(re_pb2.BatchUpdateBlobsRequest.Request(digest=digest, data=data))
            batch_bytes += len(data)
        if batch:
            self._batch_update(batch)

    def _batch_update(self, entries: List[re_pb2.BatchUpdateBlobsRequest.Request]) -> None:
        response = self.cas.BatchUpdateBlobs(
            re_pb2.BatchUpdateBlobsRequest(instance_name=self.instance_name, requests=entries),
            metadata=self.metadata,
        )
        failed = [r for r in response.responses if r.status.code != 0]
        if failed:
            raise RuntimeError(f"BatchUpdateBlobs failed: {failed}")

    def write_blob(self, data: bytes, chunk_bytes: int = WRITE_CHUNK_BYTES) -> re_pb2.Digest:
        digest = digest_of(data)
        prefix = f"{self.instance_name}/" if self.instance_name else ""
        name = f"{prefix}uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size_bytes}"

        def requests() -> Iterator[bytestream_pb2.WriteRequest]:
            offset = 0
            while True:
                chunk = data[offset : offset + chunk_bytes]
                last = offset + len(chunk) >= len(data)
                yield bytestream_pb2.WriteRequest(
                    resource_name=name if offset == 0 else "", write_offset=offset, data=chunk, finish_write=last
                )
                offset += len(chunk)
                if last:
                    return

        response = self.bytestream.Write(requests(), metadata=self.metadata)
        if response.committed_size != len(data):
            raise RuntimeError(f"Write committed {response.committed_size} of {len(data)} bytes")
        return digest

    def read_blob(self, digest: re_pb2.Digest) -> bytes:
        prefix = f"{self.instance_name}/" if self.instance_name else ""
        name = f"{prefix}blobs/{digest.hash}/{digest.size_bytes}"
        data = b"".join(
            r.data for r in self.bytestream.Read(bytestream_pb2.ReadRequest(resource_name=name), metadata=self.metadata)
        )
        if key_of(digest_of(data)) != key_of(digest):
            raise RuntimeError(f"downloaded bytes do not match {digest.hash}/{digest.size_bytes}")
        return data

    # --- directory trees ---------------------------------------------------------------

    def upload_directory(self, root: Path) -> UploadedTree:
        """Uploads every file and Directory message under `root`, and the Tree message."""
        blobs: Dict[Tuple[str, int], bytes] = {}
        children: Dict[Tuple[str, int], re_pb2.Directory] = {}
        root_directory = self._directory_message(Path(root), blobs, children)
        root_bytes = root_directory.SerializeToString()
        root_digest = digest_of(root_bytes)
        blobs[key_of(root_digest)] = root_bytes
        tree = re_pb2.Tree(root=root_directory, children=list(children.values()))
        tree_bytes = tree.SerializeToString()
        tree_digest = digest_of(tree_bytes)
        blobs[key_of(tree_digest)] = tree_bytes
        self.upload_blobs(blobs)
        return UploadedTree(root_digest=root_digest, tree=tree, tree_digest=tree_digest)

    def _directory_message(
        self,
        path: Path,
        blobs: Dict[Tuple[str, int], bytes],
        children: Dict[Tuple[str, int], re_pb2.Directory],
    ) -> re_pb2.Directory:
        directory = re_pb2.Directory()
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_symlink():
                directory.symlinks.add(name=entry.name, target=os.readlink(entry.path))
            elif entry.is_dir():
                child = self._directory_message(Path(entry.path), blobs, children)
                child_bytes = child.SerializeToString()
                child_digest = digest_of(child_bytes)
                blobs[key_of(child_digest)] = child_bytes
                children[key_of(child_digest)] = child
                directory.directories.add(name=entry.name, digest=child_digest)
            else:
                data = Path(entry.path).read_bytes()
                file_digest = digest_of(data)
                if data:
                    blobs[key_of(file_digest)] = data
                executable = bool(entry.stat().st_mode & stat.S_IXUSR)
                directory.files.add(name=entry.name, digest=file_digest, is_executable=executable)
        return directory

    def download_directory(self, root_digest: re_pb2.Digest, destination: Path) -> None:
        """Recreates the tree rooted at `root_digest` under `destination` (GetTree + Read)."""
        directories: Dict[Tuple[str, int], re_pb2.Directory] = {}
        page_token = ""
        while True:
            pages = list(
                self.cas.GetTree(
                    re_pb2.GetTreeRequest(
                        instance_name=self.instance_name, root_digest=root_digest, page_token=page_token
                    ),
                    metadata=self.metadata,
                )
            )
            for page in pages:
                for directory in page.directories:
                    directories[key_of(digest_of(directory.SerializeToString()))] = directory
            page_token = pages[-1].next_page_token if pages else ""
            if not page_token:
                break
        self._materialize(directories[key_of(root_digest)], directories, Path(destination))

    def _materialize(
        self, directory: re_pb2.Directory, directories: Dict[Tuple[str, int], re_pb2.Directory], path: Path
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for file_node in directory.files:
            target = path / file_node.name
            target.write_bytes(self.read_blob(file_node.digest) if file_node.digest.size_bytes else b"")
            target.chmod(0o755 if file_node.is_executable else 0o644)
        for symlink in directory.symlinks:
            os.symlink(symlink.target, path / symlink.name)
        for directory_node in directory.directories:
            self._materialize(directories[key_of(directory_node.digest)], directories, path / directory_node.name)
