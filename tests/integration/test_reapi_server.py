"""Every REAPI/ByteStream RPC of `oci-cache serve`, happy and error paths, against the
real server subprocess (real local store) over a real channel."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import grpc
import pytest
import zstandard

from oci_cache.reapi import bytestream_pb2, bytestream_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from reapi_client import ReapiClient

MiB = 1 << 20
EMPTY = re_pb2.Digest(hash=hashlib.sha256(b"").hexdigest(), size_bytes=0)
RESERVED_INSTANCES = ["", "a", "a/b/c"]


def digest_of(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def unique(size: int = 64, tag: str = "") -> bytes:
    """Bytes no other test uses (the module shares one server)."""
    seed = (tag + uuid.uuid4().hex).encode()
    if size <= len(seed):
        return seed[:size]
    return seed + os.urandom(size - len(seed))


def prefix(instance: str) -> str:
    return f"{instance}/" if instance else ""


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.caps = re_grpc.CapabilitiesStub(channel)
        self.ac = re_grpc.ActionCacheStub(channel)
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.bs = bytestream_pb2_grpc.ByteStreamStub(channel)

    def batch_update(self, blobs: Sequence[bytes], instance: str = "") -> None:
        response = self.cas.BatchUpdateBlobs(
            re_pb2.BatchUpdateBlobsRequest(
                instance_name=instance,
                requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(b), data=b) for b in blobs],
            )
        )
        assert [r.status.code for r in response.responses] == [0] * len(blobs)

    def find_missing(self, digests: Sequence[re_pb2.Digest], instance: str = "") -> List[re_pb2.Digest]:
        return list(
            self.cas.FindMissingBlobs(
                re_pb2.FindMissingBlobsRequest(instance_name=instance, blob_digests=digests)
            ).missing_blob_digests
        )

    def read(self, name: str, offset: int = 0, limit: int = 0) -> bytes:
        return b"".join(
            r.data for r in self.bs.Read(bytestream_pb2.ReadRequest(resource_name=name, read_offset=offset, read_limit=limit))
        )

    def write(self, requests: Sequence[bytestream_pb2.WriteRequest]) -> int:
        return self.bs.Write(iter(requests)).committed_size


def chunked_write_requests(name: str, data: bytes, chunk: int, start: int = 0, finish: bool = True) -> List[bytestream_pb2.WriteRequest]:
    requests = []
    offset = start
    while True:
        piece = data[offset : offset + chunk]
        last = offset + len(piece) >= len(data)
        requests.append(
            bytestream_pb2.WriteRequest(
                resource_name=name if offset == start else "",
                write_offset=offset,
                data=piece,
                finish_write=last and finish,
            )
        )
        offset += len(piece)
        if last:
            return requests


def upload_name(digest: re_pb2.Digest, instance: str = "", compressed: bool = False) -> str:
    kind = "compressed-blobs/zstd" if compressed else "blobs"
    return f"{prefix(instance)}uploads/{uuid.uuid4()}/{kind}/{digest.hash}/{digest.size_bytes}"


def read_name(digest: re_pb2.Digest, instance: str = "", compressed: bool = False) -> str:
    kind = "compressed-blobs/zstd" if compressed else "blobs"
    return f"{prefix(instance)}{kind}/{digest.hash}/{digest.size_bytes}"


def status_of(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


@pytest.fixture(scope="module")
def stubs(module_server) -> Stubs:  # type: ignore[no-untyped-def]
    return Stubs(module_server.channel())


# --- Capabilities -------------------------------------------------------------------------


def test_capabilities(stubs: Stubs) -> None:
    for instance in RESERVED_INSTANCES:
        caps = stubs.caps.GetCapabilities(re_pb2.GetCapabilitiesRequest(instance_name=instance))
        cache = caps.cache_capabilities
        assert list(cache.digest_functions) == [re_pb2.DigestFunction.SHA256]
        assert cache.action_cache_update_capabilities.update_enabled
        assert cache.max_batch_total_size_bytes == 4 * MiB
        assert re_pb2.Compressor.ZSTD in cache.supported_compressors
        assert re_pb2.Compressor.ZSTD in cache.supported_batch_update_compressors
        assert cache.symlink_absolute_path_strategy == re_pb2.SymlinkAbsolutePathStrategy.ALLOWED
        assert (caps.low_api_version.major, caps.low_api_version.minor) == (2, 0)
        assert caps.high_api_version.major == 2 and caps.high_api_version.minor >= 1
        assert not caps.HasField("execution_capabilities")


# --- ActionCache --------------------------------------------------------------------------


def test_action_cache_miss_update_hit(stubs: Stubs) -> None:
    for instance in RESERVED_INSTANCES:
        action = digest_of(unique(tag="action"))
        stdout, output = unique(30), unique(5000)
        stubs.batch_update([stdout, output], instance)
        request = re_pb2.GetActionResultRequest(instance_name=instance, action_digest=action)
        assert status_of(lambda: stubs.ac.GetActionResult(request)) == grpc.StatusCode.NOT_FOUND
        result = re_pb2.ActionResult(
            exit_code=3,
            stdout_digest=digest_of(stdout),
            stderr_raw=b"warning",
            output_files=[re_pb2.OutputFile(path="out/a.txt", digest=digest_of(output), is_executable=True)],
        )
        echoed = stubs.ac.UpdateActionResult(
            re_pb2.UpdateActionResultRequest(instance_name=instance, action_digest=action, action_result=result)
        )
        assert echoed == result
        assert stubs.ac.GetActionResult(request) == result


def test_action_cache_inlines_small_blobs_when_asked(stubs: Stubs) -> None:
    action = digest_of(unique(tag="inline"))
    stdout, stderr, small, other = unique(20), unique(21), unique(100), unique(200)
    stubs.batch_update([stdout, stderr, small, other])
    result = re_pb2.ActionResult(
        stdout_digest=digest_of(stdout),
        stderr_digest=digest_of(stderr),
        output_files=[
            re_pb2.OutputFile(path="small", digest=digest_of(small)),
            re_pb2.OutputFile(path="other", digest=digest_of(other)),
        ],
    )
    stubs.ac.UpdateActionResult(re_pb2.UpdateActionResultRequest(action_digest=action, action_result=result))
    plain = stubs.ac.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action))
    assert plain.stdout_raw == b"" and plain.output_files[0].contents == b""
    inlined = stubs.ac.GetActionResult(
        re_pb2.GetActionResultRequest(
            action_digest=action, inline_stdout=True, inline_stderr=True, inline_output_files=["small"]
        )
    )
    assert inlined.stdout_raw == stdout and inlined.stderr_raw == stderr
    assert inlined.output_files[0].contents == small
    assert inlined.output_files[1].contents == b""  # not asked for


def _tree_with_file(file_data: bytes) -> Tuple[re_pb2.Tree, bytes]:
    leaf = re_pb2.Directory(files=[re_pb2.FileNode(name="f", digest=digest_of(file_data))])
    root = re_pb2.Directory(directories=[re_pb2.DirectoryNode(name="sub", digest=digest_of(leaf.SerializeToString()))])
    tree = re_pb2.Tree(root=root, children=[leaf])
    return tree, tree.SerializeToString()


@pytest.mark.parametrize("missing", ["stdout", "stderr", "output_file", "tree", "file_in_tree"])
def test_action_cache_hit_with_missing_blob_is_not_found(stubs: Stubs, missing: str) -> None:
    action = digest_of(unique(tag="incomplete"))
    stdout, stderr, output, file_in_tree = unique(10), unique(11), unique(12), unique(13)
    tree, tree_bytes = _tree_with_file(file_in_tree)
    blobs = {"stdout": stdout, "stderr": stderr, "output_file": output, "tree": tree_bytes, "file_in_tree": file_in_tree}
    stubs.batch_update([data for name, data in blobs.items() if name != missing])
    result = re_pb2.ActionResult(
        stdout_digest=digest_of(stdout),
        stderr_digest=digest_of(stderr),
        output_files=[re_pb2.OutputFile(path="o", digest=digest_of(output))],
        output_directories=[re_pb2.OutputDirectory(path="d", tree_digest=digest_of(tree_bytes))],
    )
    stubs.ac.UpdateActionResult(re_pb2.UpdateActionResultRequest(action_digest=action, action_result=result))
    request = re_pb2.GetActionResultRequest(action_digest=action)
    assert status_of(lambda: stubs.ac.GetActionResult(request)) == grpc.StatusCode.NOT_FOUND
    stubs.batch_update([blobs[missing]])  # now complete: a hit
    assert stubs.ac.GetActionResult(request) == result


def test_action_cache_rejects_malformed_requests(stubs: Stubs) -> None:
    good = digest_of(unique())
    bad_digests = [
        re_pb2.Digest(hash="abc", size_bytes=3),
        re_pb2.Digest(hash=good.hash.upper(), size_bytes=good.size_bytes),
        re_pb2.Digest(hash=good.hash, size_bytes=-1),
        re_pb2.Digest(),
    ]
    for bad in bad_digests:
        get = re_pb2.GetActionResultRequest(action_digest=bad)
        assert status_of(lambda: stubs.ac.GetActionResult(get)) == grpc.StatusCode.INVALID_ARGUMENT
        update = re_pb2.UpdateActionResultRequest(action_digest=bad, action_result=re_pb2.ActionResult())
        assert status_of(lambda: stubs.ac.UpdateActionResult(update)) == grpc.StatusCode.INVALID_ARGUMENT
        bad_result = re_pb2.ActionResult(output_files=[re_pb2.OutputFile(path="x", digest=bad)])
        update = re_pb2.UpdateActionResultRequest(action_digest=good, action_result=bad_result)
        assert status_of(lambda: stubs.ac.UpdateActionResult(update)) == grpc.StatusCode.INVALID_ARGUMENT
    missing_result = re_pb2.UpdateActionResultRequest(action_digest=good)
    assert status_of(lambda: stubs.ac.UpdateActionResult(missing_result)) == grpc.StatusCode.INVALID_ARGUMENT
    sha1 = re_pb2.GetActionResultRequest(action_digest=good, digest_function=re_pb2.DigestFunction.SHA1)
    assert status_of(lambda: stubs.ac.GetActionResult(sha1)) == grpc.StatusCode.INVALID_ARGUMENT
    # Nothing was stored for the good digest by the failed updates.
    get = re_pb2.GetActionResultRequest(action_digest=good)
    assert status_of(lambda: stubs.ac.GetActionResult(get)) == grpc.StatusCode.NOT_FOUND


def test_garbage_request_bytes_are_invalid_argument_not_internal(stubs: Stubs) -> None:
    for method in (
        "/build.bazel.remote.execution.v2.ActionCache/GetActionResult",
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
        "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities",
        "/google.bytestream.ByteStream/QueryWriteStatus",
    ):
        call = stubs.channel.unary_unary(method)
        assert status_of(lambda: call(b"\xff\xff\xff\xff")) == grpc.StatusCode.INVALID_ARGUMENT
    read = stubs.channel.unary_stream("/google.bytestream.ByteStream/Read")
    assert status_of(lambda: list(read(b"\x0a\xff"))) == grpc.StatusCode.INVALID_ARGUMENT
    write = stubs.channel.stream_unary("/google.bytestream.ByteStream/Write")
    assert status_of(lambda: write(iter([b"\x12\x80"]))) == grpc.StatusCode.INVALID_ARGUMENT


# --- CAS: FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs --------------------------------


def test_find_missing_blobs(stubs: Stubs) -> None:
    present, absent = unique(100), unique(100)
    stubs.batch_update([present])
    for instance in RESERVED_INSTANCES:
        missing = stubs.find_missing([digest_of(present), EMPTY, digest_of(absent)], instance)
        assert missing == [digest_of(absent)]
    request = re_pb2.FindMissingBlobsRequest(blob_digests=[re_pb2.Digest(hash="zz", size_bytes=1)])
    assert status_of(lambda: stubs.cas.FindMissingBlobs(request)) == grpc.StatusCode.INVALID_ARGUMENT


def test_batch_update_reports_each_blob(stubs: Stubs) -> None:
    good, bad, claimed = unique(50), unique(50), unique(50)
    response = stubs.cas.BatchUpdateBlobs(
        re_pb2.BatchUpdateBlobsRequest(
            requests=[
                re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(good), data=good),
                re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(claimed), data=bad),
                re_pb2.BatchUpdateBlobsRequest.Request(digest=re_pb2.Digest(hash="x", size_bytes=1), data=b"x"),
                re_pb2.BatchUpdateBlobsRequest.Request(digest=EMPTY, data=b""),
            ]
        )
    )
    codes = [grpc.StatusCode.OK.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0]]
    assert [r.status.code for r in response.responses] == [codes[0], codes[1], codes[1], codes[0]]
    assert response.responses[1].digest == digest_of(claimed)
    assert stubs.find_missing([digest_of(good), digest_of(claimed), digest_of(bad)]) == [
        digest_of(claimed),
        digest_of(bad),
    ]


def test_batch_update_of_a_4_mib_blob_like_pants(stubs: Stubs) -> None:
    data = unique(4 * MiB)
    stubs.batch_update([data])
    assert stubs.read(read_name(digest_of(data))) == data


def test_batch_update_and_read_with_zstd(stubs: Stubs) -> None:
    data = unique(32) * 1000
    digest = digest_of(data)
    response = stubs.cas.BatchUpdateBlobs(
        re_pb2.BatchUpdateBlobsRequest(
            requests=[
                re_pb2.BatchUpdateBlobsRequest.Request(
                    digest=digest, data=zstandard.ZstdCompressor().compress(data), compressor=re_pb2.Compressor.ZSTD
                )
            ]
        )
    )
    assert response.responses[0].status.code == 0
    read = stubs.cas.BatchReadBlobs(
        re_pb2.BatchReadBlobsRequest(digests=[digest, EMPTY], acceptable_compressors=[re_pb2.Compressor.ZSTD])
    )
    assert [r.status.code for r in read.responses] == [0, 0]
    assert read.responses[0].compressor == re_pb2.Compressor.ZSTD
    assert len(read.responses[0].data) < len(data)
    assert zstandard.ZstdDecompressor().decompress(read.responses[0].data) == data
    plain = stubs.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(digests=[digest]))
    assert plain.responses[0].data == data and plain.responses[0].compressor == re_pb2.Compressor.IDENTITY


def test_batch_update_zstd_errors(stubs: Stubs) -> None:
    bomb_source = b"\0" * (64 * MiB)
    bomb = zstandard.ZstdCompressor().compress(bomb_source)  # ~2 KiB that inflates to 64 MiB
    small = unique(100)
    wrong_content = zstandard.ZstdCompressor().compress(unique(100))
    response = stubs.cas.BatchUpdateBlobs(
        re_pb2.BatchUpdateBlobsRequest(
            requests=[
                # declared 100 bytes, inflates to 64 MiB: stopped early
                re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(small), data=bomb, compressor=re_pb2.Compressor.ZSTD),
                re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(small), data=b"not zstd", compressor=re_pb2.Compressor.ZSTD),
                re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(small), data=wrong_content, compressor=re_pb2.Compressor.ZSTD),
                re_pb2.BatchUpdateBlobsRequest.Request(digest=digest_of(small), data=small, compressor=re_pb2.Compressor.BROTLI),
            ]
        )
    )
    assert [r.status.code for r in response.responses] == [grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 4
    assert stubs.find_missing([digest_of(small)]) == [digest_of(small)]


def test_batch_read_missing_and_too_large(stubs: Stubs) -> None:
    present, absent = unique(10), unique(10)
    stubs.batch_update([present])
    response = stubs.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(digests=[digest_of(absent), digest_of(present)]))
    assert [r.status.code for r in response.responses] == [grpc.StatusCode.NOT_FOUND.value[0], 0]
    assert [r.digest for r in response.responses] == [digest_of(absent), digest_of(present)]
    assert response.responses[1].data == present
    too_much = re_pb2.BatchReadBlobsRequest(digests=[re_pb2.Digest(hash="a" * 64, size_bytes=5 * MiB)])
    assert status_of(lambda: stubs.cas.BatchReadBlobs(too_much)) == grpc.StatusCode.INVALID_ARGUMENT


# --- CAS: GetTree -------------------------------------------------------------------------


def _upload_nested_tree(stubs: Stubs, width: int) -> Tuple[re_pb2.Digest, List[re_pb2.Directory]]:
    """root -> `width` subdirectories, each holding one file and one sub-subdirectory."""
    blobs: List[bytes] = []
    directories: List[re_pb2.Directory] = []
    nodes = []
    for i in range(width):
        content = unique(20)
        leaf = re_pb2.Directory(files=[re_pb2.FileNode(name="leaf.txt", digest=digest_of(content))])
        middle = re_pb2.Directory(
            files=[re_pb2.FileNode(name="m.txt", digest=digest_of(content))],
            directories=[re_pb2.DirectoryNode(name="leaf", digest=digest_of(leaf.SerializeToString()))],
        )
        blobs += [content, leaf.SerializeToString(), middle.SerializeToString()]
        directories += [middle, leaf]
        nodes.append(re_pb2.DirectoryNode(name=f"d{i:02d}", digest=digest_of(middle.SerializeToString())))
    root = re_pb2.Directory(directories=nodes)
    blobs.append(root.SerializeToString())
    stubs.batch_update(blobs)
    return digest_of(root.SerializeToString()), [root] + directories


def _tree_directories(stubs: Stubs, root: re_pb2.Digest, page_size: int = 0, token: str = "") -> Tuple[List[re_pb2.Directory], List[str]]:
    directories: List[re_pb2.Directory] = []
    tokens: List[str] = []
    for response in stubs.cas.GetTree(re_pb2.GetTreeRequest(root_digest=root, page_size=page_size, page_token=token)):
        directories.extend(response.directories)
        tokens.append(response.next_page_token)
    return directories, tokens


def test_get_tree_returns_every_directory_once(stubs: Stubs) -> None:
    root, expected = _upload_nested_tree(stubs, width=5)
    directories, tokens = _tree_directories(stubs, root)
    assert directories[0].SerializeToString() == expected[0].SerializeToString()
    key = lambda d: d.SerializeToString()  # noqa: E731
    assert sorted(map(key, directories)) == sorted(map(key, expected))
    assert len(directories) == 11 and tokens[-1] == ""


def test_get_tree_pages_and_resumes_from_a_token(stubs: Stubs) -> None:
    root, expected = _upload_nested_tree(stubs, width=4)
    whole, _ = _tree_directories(stubs, root)
    pages = list(stubs.cas.GetTree(re_pb2.GetTreeRequest(root_digest=root, page_size=3)))
    assert [len(p.directories) for p in pages][:3] == [3, 3, 3]
    assert all(p.next_page_token for p in pages[:-1]) and pages[-1].next_page_token == ""
    assert [d for p in pages for d in p.directories] == whole
    # Resume after the first page, as a client whose stream broke would.
    rest, _ = _tree_directories(stubs, root, page_size=3, token=pages[0].next_page_token)
    assert rest == whole[3:]
    bad = re_pb2.GetTreeRequest(root_digest=root, page_token="garbage")
    assert status_of(lambda: list(stubs.cas.GetTree(bad))) == grpc.StatusCode.INVALID_ARGUMENT


def test_get_tree_missing_root_and_missing_subtree(stubs: Stubs) -> None:
    absent = re_pb2.Directory(files=[re_pb2.FileNode(name=uuid.uuid4().hex, digest=EMPTY)])
    missing_root = re_pb2.GetTreeRequest(root_digest=digest_of(absent.SerializeToString()))
    assert status_of(lambda: list(stubs.cas.GetTree(missing_root))) == grpc.StatusCode.NOT_FOUND
    root = re_pb2.Directory(directories=[re_pb2.DirectoryNode(name="gone", digest=digest_of(absent.SerializeToString()))])
    stubs.batch_update([root.SerializeToString()])
    directories, _ = _tree_directories(stubs, digest_of(root.SerializeToString()))
    assert directories == [root]  # the missing part is left out


# --- ByteStream ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [MiB, 16 * 1024], ids=["1MiB-chunks", "16KiB-chunks"])
def test_bytestream_write_in_chunks_then_read(stubs: Stubs, chunk: int) -> None:
    data = unique(3 * MiB + 12345)
    digest = digest_of(data)
    assert stubs.write(chunked_write_requests(upload_name(digest), data, chunk)) == len(data)
    assert stubs.find_missing([digest]) == []
    assert stubs.read(read_name(digest)) == data
    # Writing it again answers at once with the full size.
    assert stubs.write(chunked_write_requests(upload_name(digest), data, chunk)[:1]) == len(data)


def test_bytestream_write_errors(stubs: Stubs) -> None:
    data = unique(100_000)
    digest = digest_of(data)
    name = upload_name(digest)
    wrong_first = chunked_write_requests(name, data, 40_000)
    wrong_first[0].write_offset = 5
    assert status_of(lambda: stubs.write(wrong_first)) == grpc.StatusCode.INVALID_ARGUMENT
    gap = chunked_write_requests(upload_name(digest), data, 40_000)
    gap[1].write_offset += 1
    assert status_of(lambda: stubs.write(gap)) == grpc.StatusCode.INVALID_ARGUMENT
    other_name = chunked_write_requests(upload_name(digest), data, 40_000)
    other_name[1].resource_name = upload_name(digest)
    assert status_of(lambda: stubs.write(other_name)) == grpc.StatusCode.INVALID_ARGUMENT
    corrupted = bytearray(data)
    corrupted[77] ^= 1
    mismatch = chunked_write_requests(upload_name(digest), bytes(corrupted), 40_000)
    assert status_of(lambda: stubs.write(mismatch)) == grpc.StatusCode.INVALID_ARGUMENT
    too_long = chunked_write_requests(upload_name(digest), data + b"x", 40_000)
    assert status_of(lambda: stubs.write(too_long)) == grpc.StatusCode.INVALID_ARGUMENT
    assert stubs.find_missing([digest]) == [digest]
    assert status_of(lambda: stubs.write([])) == grpc.StatusCode.INVALID_ARGUMENT


def test_bytestream_compressed_write_and_read(stubs: Stubs) -> None:
    data = unique(16) * 200_000  # 3.2 MB, compressible
    digest = digest_of(data)
    compressed = zstandard.ZstdCompressor(level=3).compress(data)
    committed = stubs.write(chunked_write_requests(upload_name(digest, compressed=True), compressed, 16 * 1024))
    assert committed == len(compressed)
    assert stubs.read(read_name(digest)) == data
    assert stubs.write(chunked_write_requests(upload_name(digest, compressed=True), compressed, MiB)) == -1
    # Compressed read, whole and from an (uncompressed) offset.
    whole = stubs.read(read_name(digest, compressed=True))
    assert len(whole) < len(data)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(whole) == data
    tail = stubs.read(read_name(digest, compressed=True), offset=1_000_001)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(tail) == data[1_000_001:]


def test_bytestream_compressed_write_errors(stubs: Stubs) -> None:
    data = unique(50_000)
    digest = digest_of(data)
    wrong = zstandard.ZstdCompressor().compress(unique(50_000))
    assert status_of(lambda: stubs.write(chunked_write_requests(upload_name(digest, compressed=True), wrong, 8192))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (256 * MiB))
    assert status_of(lambda: stubs.write(chunked_write_requests(upload_name(digest, compressed=True), bomb, 8192))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    garbage = b"this is not zstd at all" * 10
    assert status_of(lambda: stubs.write(chunked_write_requests(upload_name(digest, compressed=True), garbage, 64))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert stubs.find_missing([digest]) == [digest]


def test_bytestream_read_offsets_and_limits(stubs: Stubs) -> None:
    data = unique(3 * MiB)
    stubs.write(chunked_write_requests(upload_name(digest_of(data)), data, MiB))
    name = read_name(digest_of(data))
    assert stubs.read(name, offset=10) == data[10:]
    assert stubs.read(name, offset=MiB - 1, limit=MiB + 2) == data[MiB - 1 : 2 * MiB + 1]
    assert stubs.read(name, limit=5) == data[:5]
    assert stubs.read(name, offset=len(data)) == b""
    assert stubs.read(name, offset=len(data) - 1, limit=100) == data[-1:]
    assert status_of(lambda: stubs.read(name, offset=len(data) + 1)) == grpc.StatusCode.OUT_OF_RANGE
    assert status_of(lambda: stubs.read(name, offset=-1)) == grpc.StatusCode.OUT_OF_RANGE
    assert status_of(lambda: stubs.read(name, limit=-1)) == grpc.StatusCode.INVALID_ARGUMENT
    compressed_name = read_name(digest_of(data), compressed=True)
    assert status_of(lambda: stubs.read(compressed_name, limit=10)) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(lambda: stubs.read(read_name(digest_of(unique(10))))) == grpc.StatusCode.NOT_FOUND
    assert stubs.read(read_name(EMPTY)) == b""
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stubs.read(read_name(EMPTY, compressed=True))) == b""


def test_read_chunks_are_about_1_mib(stubs: Stubs) -> None:
    data = unique(5 * MiB + 3)
    stubs.write(chunked_write_requests(upload_name(digest_of(data)), data, MiB))
    sizes = [len(r.data) for r in stubs.bs.Read(bytestream_pb2.ReadRequest(resource_name=read_name(digest_of(data))))]
    assert sizes == [MiB] * 5 + [3]


def test_query_write_status_and_resume(stubs: Stubs) -> None:
    data = unique(2 * MiB + 100)
    digest = digest_of(data)
    name = upload_name(digest)
    query = lambda: stubs.bs.QueryWriteStatus(bytestream_pb2.QueryWriteStatusRequest(resource_name=name))  # noqa: E731
    assert (query().committed_size, query().complete) == (0, False)
    # A stream that stops without finish_write leaves the upload resumable.
    first_part = chunked_write_requests(name, data[: MiB + 7], 64 * 1024, finish=False)
    assert stubs.write(first_part) == MiB + 7
    assert (query().committed_size, query().complete) == (MiB + 7, False)
    # The same uuid in another instance or another uuid is another upload.
    other = upload_name(digest)
    assert stubs.bs.QueryWriteStatus(bytestream_pb2.QueryWriteStatusRequest(resource_name=other)).committed_size == 0
    # Resuming at a wrong offset fails; at the committed size it completes.
    wrong = chunked_write_requests(name, data, 64 * 1024, start=MiB)
    assert status_of(lambda: stubs.write(wrong)) == grpc.StatusCode.INVALID_ARGUMENT
    second_try = chunked_write_requests(name, data[: MiB + 7], 64 * 1024, finish=False)
    assert stubs.write(second_try) == MiB + 7
    rest = chunked_write_requests(name, data, 64 * 1024, start=MiB + 7)
    assert stubs.write(rest) == len(data)
    assert (query().committed_size, query().complete) == (len(data), True)
    assert stubs.read(read_name(digest)) == data
    # An upload name for a blob that exists is complete whatever its uuid.
    status = stubs.bs.QueryWriteStatus(bytestream_pb2.QueryWriteStatusRequest(resource_name=other))
    assert (status.committed_size, status.complete) == (len(data), True)


def test_restarting_an_upload_at_offset_zero(stubs: Stubs) -> None:
    data = unique(300_000)
    name = upload_name(digest_of(data))
    stubs.write(chunked_write_requests(name, data[:100_000], 50_000, finish=False))
    assert stubs.write(chunked_write_requests(name, data, 50_000)) == len(data)
    assert stubs.read(read_name(digest_of(data))) == data


MALFORMED_NAMES = [
    "",
    "blobs",
    "blobs/abc/3",
    "blobs/" + "a" * 64,
    "blobs/" + "a" * 64 + "/x",
    "blobs/" + "a" * 64 + "/-1",
    "/blobs/" + "a" * 64 + "/1",
    "compressed-blobs/gzip/" + "a" * 64 + "/1",
    "uploads/u/blobs/" + "a" * 64,
    "a//b/blobs/" + "a" * 64 + "/1",
    "instance/" + "a" * 64 + "/1",
]


@pytest.mark.parametrize("name", MALFORMED_NAMES)
def test_malformed_resource_names_are_invalid_argument(stubs: Stubs, name: str) -> None:
    assert status_of(lambda: stubs.read(name)) == grpc.StatusCode.INVALID_ARGUMENT
    write_name = name.replace("blobs/", "uploads/u/blobs/", 1) if "uploads" not in name else name
    request = bytestream_pb2.WriteRequest(resource_name=write_name, data=b"x", finish_write=True)
    assert status_of(lambda: stubs.write([request])) == grpc.StatusCode.INVALID_ARGUMENT
    query = bytestream_pb2.QueryWriteStatusRequest(resource_name=write_name)
    assert status_of(lambda: stubs.bs.QueryWriteStatus(query)) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("instance", RESERVED_INSTANCES, ids=["empty", "one-segment", "three-segments"])
def test_instance_names(stubs: Stubs, instance: str) -> None:
    data = unique(70_000)
    digest = digest_of(data)
    assert stubs.write(chunked_write_requests(upload_name(digest, instance), data, 16 * 1024)) == len(data)
    assert stubs.read(read_name(digest, instance)) == data
    assert stubs.find_missing([digest], instance) == []
    compressed = zstandard.ZstdCompressor().compress(data)
    other = unique(1000)
    assert stubs.write(
        chunked_write_requests(upload_name(digest_of(other), instance, compressed=True), zstandard.ZstdCompressor().compress(other), 100)
    ) > 0
    assert stubs.read(read_name(digest_of(other), instance)) == other
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stubs.read(read_name(digest, instance, compressed=True))) == data
    assert len(compressed) > 0


# --- An independently written client ------------------------------------------------------


def test_independent_client_round_trips_a_directory_tree(module_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "source"
    (source / "a" / "b" / "c").mkdir(parents=True)
    (source / "empty-dir").mkdir()
    (source / "top.txt").write_bytes(b"top level\n")
    (source / "empty.txt").write_bytes(b"")
    (source / "a" / "tool.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (source / "a" / "tool.sh").chmod(0o755)
    (source / "a" / "b" / "big.bin").write_bytes(os.urandom(3 * MiB + 5))
    (source / "a" / "b" / "c" / "same.txt").write_bytes(b"top level\n")  # duplicate content
    (source / "a" / "b" / "c" / "deep.txt").write_bytes(unique(5000))
    os.symlink("../top.txt", source / "a" / "link")
    client = ReapiClient(module_server.channel(), instance_name="round/trip")
    uploaded = client.upload_directory(source)
    destination = tmp_path / "destination"
    client.download_directory(uploaded.root_digest, destination)
    assert _snapshot(destination) == _snapshot(source)
    # The Tree message uploaded by the client is itself a blob the server serves back.
    assert client.read_blob(uploaded.tree_digest) == uploaded.tree.SerializeToString()


def _snapshot(root: Path) -> List[Tuple[str, str, Optional[bytes], bool]]:
    entries = []
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            entries.append((relative, "link", os.readlink(path).encode(), False))
        elif path.is_dir():
            entries.append((relative, "dir", None, False))
        else:
            entries.append((relative, "file", path.read_bytes(), bool(path.stat().st_mode & stat.S_IXUSR)))
    return entries


# --- Bearer token -------------------------------------------------------------------------


def test_token_required_when_token_file_given(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    server = server_factory(None, "--token-file", str(token_file))
    stubs = Stubs(server.channel())
    request = re_pb2.GetCapabilitiesRequest()
    data = unique(10)
    read_request = bytestream_pb2.ReadRequest(resource_name=read_name(digest_of(data)))
    write_requests = chunked_write_requests(upload_name(digest_of(data)), data, 4)
    for metadata in ([], [("authorization", "Bearer wrong")], [("authorization", "s3cret-token")], [("authorization", "Bearer s3cret-token ")]):
        assert status_of(lambda: stubs.caps.GetCapabilities(request, metadata=metadata)) == grpc.StatusCode.UNAUTHENTICATED
        assert status_of(lambda: list(stubs.bs.Read(read_request, metadata=metadata))) == grpc.StatusCode.UNAUTHENTICATED
        assert status_of(lambda: stubs.bs.Write(iter(write_requests), metadata=metadata)) == grpc.StatusCode.UNAUTHENTICATED
    good = [("authorization", "Bearer s3cret-token")]
    assert stubs.caps.GetCapabilities(request, metadata=good).cache_capabilities.max_batch_total_size_bytes > 0
    assert stubs.bs.Write(iter(write_requests), metadata=good).committed_size == len(data)
    assert b"".join(r.data for r in stubs.bs.Read(read_request, metadata=good)) == data
    client = ReapiClient(server.channel(), metadata=good)
    assert client.read_blob(digest_of(data)) == data


def test_no_token_needed_without_token_file(stubs: Stubs) -> None:
    caps = stubs.caps.GetCapabilities(re_pb2.GetCapabilitiesRequest(), metadata=[("authorization", "Bearer anything")])
    assert caps.cache_capabilities.max_batch_total_size_bytes > 0


def test_a_zero_size_digest_other_than_the_empty_blob_is_never_present(stubs: Stubs) -> None:
    bogus = re_pb2.Digest(hash=hashlib.sha256(b"not empty").hexdigest(), size_bytes=0)
    assert stubs.find_missing([bogus, EMPTY]) == [bogus]
    assert status_of(lambda: stubs.read(read_name(bogus))) == grpc.StatusCode.NOT_FOUND
    response = stubs.cas.BatchUpdateBlobs(
        re_pb2.BatchUpdateBlobsRequest(requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=bogus, data=b"")])
    )
    assert response.responses[0].status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    write = [bytestream_pb2.WriteRequest(resource_name=upload_name(bogus), finish_write=True)]
    assert status_of(lambda: stubs.write(write)) == grpc.StatusCode.INVALID_ARGUMENT
    # The empty blob itself: present, readable, writable, complete.
    assert stubs.write([bytestream_pb2.WriteRequest(resource_name=upload_name(EMPTY), finish_write=True)]) == 0
    status = stubs.bs.QueryWriteStatus(bytestream_pb2.QueryWriteStatusRequest(resource_name=upload_name(EMPTY)))
    assert status.complete
