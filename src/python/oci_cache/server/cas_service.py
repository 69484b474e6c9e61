"""REAPI ContentAddressableStorage: FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs, GetTree.

BatchReadBlobs (Pants 2.28+ with `remote_store_batch_load_enabled`) first fetches the
blobs that only an imported image holds, all at once, then reads every blob locally.

FindMissingBlobs runs on the event loop (an index lookup); the others read or
write many bytes and run on a worker thread.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, List, Optional, Set, Tuple

import grpc
from google.protobuf.message import DecodeError

from oci_cache.digests import EMPTY_DIGEST, Digest
from oci_cache.errors import InvalidArgumentError, NotFoundError
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import status_pb2
from oci_cache.server import zstd_codec
from oci_cache.server.method_handlers import Dispatcher, Method, Runs, check_parsed, generic_handler
from oci_cache.server.request_checks import check_digest_function, parse_digest
from oci_cache.server.status_mapping import status_for_exception
from oci_cache.store.interfaces import BlobStore

SERVICE_NAME = "build.bazel.remote.execution.v2.ContentAddressableStorage"
logger = logging.getLogger(__name__)

DEFAULT_TREE_PAGE_SIZE = 1000
MAX_TREE_PAGE_SIZE = 10000
_TREE_PAGE_TOKEN_PREFIX = "tree-v1:"
_IDENTITY = re_pb2.Compressor.IDENTITY
_ZSTD = re_pb2.Compressor.ZSTD
_OK_STATUS = status_pb2.Status()


class CasService:
    def __init__(self, blobs: BlobStore, max_batch_total_size_bytes: int) -> None:
        self._blobs = blobs
        self._max_batch_total_size_bytes = max_batch_total_size_bytes

    # --- FindMissingBlobs ---------------------------------------------------------------

    def find_missing_blobs(self, request: Any) -> Any:
        check_parsed(request)
        check_digest_function(request.digest_function)
        digests = [parse_digest(d, "blob_digests") for d in request.blob_digests]
        missing = self._blobs.find_missing([d for d in digests if d != EMPTY_DIGEST])
        return re_pb2.FindMissingBlobsResponse(missing_blob_digests=[d.to_proto() for d in missing])

    # --- BatchUpdateBlobs ---------------------------------------------------------------

    def batch_update_blobs(self, request: Any) -> Any:
        check_parsed(request)
        check_digest_function(request.digest_function)
        response = re_pb2.BatchUpdateBlobsResponse()
        for entry in request.requests:
            status = self._update_one(entry)
            response.responses.add(digest=entry.digest, status=status)
        return response

    def _update_one(self, entry: Any) -> Any:
        try:
            digest = parse_digest(entry.digest, "digest")
            data = entry.data
            if entry.compressor == _ZSTD:
                data = zstd_codec.decompress_bounded(data, digest.size_bytes)
            elif entry.compressor != _IDENTITY:
                raise InvalidArgumentError(f"unsupported compressor {entry.compressor}: supported: identity, zstd")
            if digest != EMPTY_DIGEST or data:
                self._blobs.put_bytes(digest, data)  # verifies, so the empty digest with data fails
            return _OK_STATUS
        except Exception as error:  # noqa: BLE001 - every blob gets its own status
            return _status_message(error, "BatchUpdateBlobs")

    # --- BatchReadBlobs -----------------------------------------------------------------

    def batch_read_blobs(self, request: Any) -> Any:
        check_parsed(request)
        check_digest_function(request.digest_function)
        digests = [parse_digest(d, "digests") for d in request.digests]
        total = sum(d.size_bytes for d in digests)
        if total > self._max_batch_total_size_bytes:
            raise InvalidArgumentError(
                f"BatchReadBlobs asks for {total} bytes, more than max_batch_total_size_bytes "
                f"{self._max_batch_total_size_bytes}: use ByteStream.Read"
            )
        use_zstd = _ZSTD in request.acceptable_compressors
        self._fetch_imported(digests)
        response = re_pb2.BatchReadBlobsResponse()
        for message, digest in zip(request.digests, digests):
            item = response.responses.add(digest=message)
            try:
                data = b"" if digest == EMPTY_DIGEST else self._blobs.read_bytes(digest)
                if use_zstd:
                    item.data = zstd_codec.compress(data)
                    item.compressor = _ZSTD
                else:
                    item.data = data
                item.status.CopyFrom(_OK_STATUS)
            except Exception as error:  # noqa: BLE001 - every blob gets its own status
                item.status.CopyFrom(_status_message(error, "BatchReadBlobs"))
        return response

    def _fetch_imported(self, digests: List[Digest]) -> None:
        """Brings the blobs of a batch that only an imported cache image holds into the local
        tier at once, concurrently (ImportingBlobStore.ensure_local), so that the batch costs
        one round of fetches instead of one fetch after another; then every blob is read
        locally. A failure here only means those blobs are fetched (or reported) one by one."""
        ensure_local = getattr(self._blobs, "ensure_local", None)
        if ensure_local is None or len(digests) < 2:
            return
        try:
            ensure_local(digests)
        except Exception as error:  # noqa: BLE001 - each blob still gets its own read and status
            logger.debug("BatchReadBlobs: fetching %d blobs at once failed: %s", len(digests), error)

    # --- GetTree ------------------------------------------------------------------------

    def get_tree(self, request: Any) -> List[Any]:
        """Every GetTreeResponse for `request` (Directory messages are small: build them in one go)."""
        check_parsed(request)
        check_digest_function(request.digest_function)
        root = parse_digest(request.root_digest, "root_digest")
        page_size = request.page_size
        if page_size < 0:
            raise InvalidArgumentError(f"negative page_size {page_size}")
        page_size = min(page_size or DEFAULT_TREE_PAGE_SIZE, MAX_TREE_PAGE_SIZE)
        start = _parse_page_token(request.page_token, root)
        responses: List[Any] = []
        page: List[Any] = []
        page_bytes = 0
        for position, (directory, size) in enumerate(self._walk_tree(root)):
            if position < start:
                continue
            if page and (len(page) >= page_size or page_bytes + size > self._max_batch_total_size_bytes):
                responses.append(re_pb2.GetTreeResponse(directories=page, next_page_token=_page_token(root, position)))
                page, page_bytes = [], 0
            page.append(directory)
            page_bytes += size
        responses.append(re_pb2.GetTreeResponse(directories=page))  # the last page, possibly empty
        return responses

    def _walk_tree(self, root: Digest) -> Iterator[Tuple[Any, int]]:
        """Breadth-first, each distinct directory once: (Directory, serialized size).
        A missing root is NOT_FOUND; missing subtrees are left out, as REAPI says."""
        seen: Set[Digest] = {root}
        queue: List[Digest] = [root]
        index = 0
        while index < len(queue):
            digest = queue[index]
            index += 1
            directory = self._read_directory(digest, required=(index == 1))
            if directory is None:
                continue
            yield directory, digest.size_bytes
            for node in directory.directories:
                child = parse_digest(node.digest, f"directory {node.name[:100]!r} in {digest}")
                if child not in seen:
                    seen.add(child)
                    queue.append(child)

    def _read_directory(self, digest: Digest, required: bool) -> Optional[Any]:
        try:
            data = b"" if digest == EMPTY_DIGEST else self._blobs.read_bytes(digest)
        except NotFoundError:
            if required:
                raise NotFoundError(f"tree root {digest} not found") from None
            return None
        try:
            return re_pb2.Directory.FromString(data)
        except DecodeError:
            raise InvalidArgumentError(f"blob {digest} is not a Directory message") from None

    def handler(self, dispatcher: Dispatcher) -> grpc.GenericRpcHandler:
        return generic_handler(
            SERVICE_NAME,
            [
                Method("FindMissingBlobs", self.find_missing_blobs, re_pb2.FindMissingBlobsRequest, Runs.INLINE),
                Method("BatchUpdateBlobs", self.batch_update_blobs, re_pb2.BatchUpdateBlobsRequest, Runs.BLOCKING),
                Method("BatchReadBlobs", self.batch_read_blobs, re_pb2.BatchReadBlobsRequest, Runs.BLOCKING),
                Method("GetTree", self.get_tree, re_pb2.GetTreeRequest, Runs.BLOCKING, response_streaming=True),
            ],
            dispatcher,
        )


def _status_message(error: Exception, method: str) -> Any:
    code, details = status_for_exception(error, method)
    return status_pb2.Status(code=code.value[0], message=details)


def _page_token(root: Digest, position: int) -> str:
    return f"{_TREE_PAGE_TOKEN_PREFIX}{root.hash}:{position}"


def _parse_page_token(token: str, root: Digest) -> int:
    """The position a page token points at; 0 for no token."""
    if not token:
        return 0
    prefix = f"{_TREE_PAGE_TOKEN_PREFIX}{root.hash}:"
    position_text = token[len(prefix) :]
    if not token.startswith(prefix) or not position_text.isdigit() or not position_text.isascii():
        raise InvalidArgumentError(f"invalid page_token {token[:100]!r} for root {root}")
    return int(position_text)

