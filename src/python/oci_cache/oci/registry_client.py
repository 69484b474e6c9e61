"""A client for one registry's OCI distribution API (/v2/): the API verbs.

One `RegistryClient` per registry host; methods take the repository name, and
`RegistryTarget` binds one repository to the `ImageTarget` interface. See
docs/registry-client.md for the why. How a request reaches the registry (the ping that
picks the scheme, authorization per scope, retries, redirects, connection pools) is the
transport's job, in layers: `oci/transport/`. Here is what the API means:
- blobs: HEAD for presence and size; GET (whole or a Range) verified against the digest,
  read again when the bytes do not match; a 200 to a range request is cut here;
- uploads: HEAD (skip if present) → optional mount → POST → PUT ?digest= (one
  streamed body), or PATCH chunks then PUT when `upload_chunk_size` is set; the
  upload URL's own query (`_state`) is preserved; an upload that fails
  transiently is restarted from a fresh POST;
- manifests: GET/HEAD/PUT/DELETE, byte-exact and digest-checked, at most
  MAX_MANIFEST_BYTES;
- errors: an OCI error body becomes the RegistryError subclass that says what to do.

Thread-safe; sized for many concurrent transfers (`max_connections` per host).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote, urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from oci_cache.oci.content import (
    BlobId,
    BlobSource,
    BlobStream,
    DigestLike,
    DigestVerifier,
    UploadSource,
    blob_id,
    sha256_digest,
    verify_bytes,
)
from oci_cache.oci.credentials import CredentialSource, DockerConfigCredentials
from oci_cache.oci.errors import (
    BlobNotFoundError,
    BlobRangeError,
    ContentMismatchError,
    InvalidReferenceError,
    RegistryDeniedError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnauthorizedError,
    RegistryUnavailableError,
)
from oci_cache.oci.http_retry import NO_RETRIES, RETRYABLE_STATUSES, RetryBudget, RetryPolicy
from oci_cache.oci.media_types import MANIFEST_ACCEPT
from oci_cache.oci.reference import (
    DOCKER_HUB,
    DOCKER_HUB_ALIASES,
    DOCKER_HUB_API_HOST,
    is_digest,
    is_loopback_host,
    validate_repository,
    validate_tag,
)
from oci_cache.oci.target import Manifest, PushOutcome
from oci_cache.oci.token_auth import Scopes, repository_scope
from oci_cache.oci.transport.request import BodyFactory, Request
from oci_cache.oci.transport.responses import (
    content_length,
    discard,
    error_codes,
    error_summary,
    read_all,
    read_error_body,
    reason,
)
from oci_cache.oci.transport.retries import sleep_or_raise
from oci_cache.oci.transport.stack import RegistryTransport

logger = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 16 << 20
READ_CHUNK = 1 << 20
CONTENT_MISMATCH_RETRIES = 2  # reads again of a blob/manifest whose bytes do not match its digest
DEFAULT_READ_TIMEOUT = 120.0  # seconds without a byte from the registry
READ_TIMEOUT_VARIABLE = "OCI_CACHE_REGISTRY_READ_TIMEOUT"  # overrides it (seconds)


class RegistryClient:
    """Talks to one registry. `registry` is host[:port] as in references ("docker.io" → Docker Hub)."""

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        ca_bundle: Optional[str] = None,
        credentials: Optional[CredentialSource] = None,
        docker_config_dir: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
        retry: RetryPolicy = RetryPolicy(),
        connect_timeout: float = 10.0,
        read_timeout: Optional[float] = None,
        max_connections: int = 16,
        upload_chunk_size: Optional[int] = None,
    ) -> None:
        if registry.lower() in DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
        self.registry = registry
        self.api_host = DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry
        self.insecure = insecure
        self.ca_bundle = ca_bundle
        self.retry = retry
        self.upload_chunk_size = upload_chunk_size
        if read_timeout is None:
            read_timeout = _seconds_from_environment(READ_TIMEOUT_VARIABLE, DEFAULT_READ_TIMEOUT)
        if credentials is None:
            credentials = DockerConfigCredentials(docker_config_dir, environ)
        self.transport = RegistryTransport(
            registry,
            self.api_host,
            urlsplit(f"//{self.api_host}").hostname or self.api_host,
            credentials,
            may_use_http=self._may_use_http(),
            insecure=insecure,
            ca_bundle=ca_bundle,
            retry=retry,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            max_connections=max_connections,
        )
        self.auth = self.transport.auth

    # ------------------------------------------------------------------ basics

    def connection_summary(self) -> str:
        """ "https", "http, insecure", … (the scheme is known after the first request;
        before it, "https or http" where plain HTTP may be used)."""
        base = self.transport.known_base_url()
        if base:
            scheme = urlsplit(base).scheme
        else:
            scheme = "https or http" if self._may_use_http() else "https"
        flags = ", insecure" if self.insecure else ""
        flags += ", CA bundle" if self.ca_bundle else ""
        return scheme + flags

    def describe(self) -> str:
        return f"{self.registry} ({self.connection_summary()})"

    def __repr__(self) -> str:
        return f"RegistryClient({self.describe()})"

    def close(self) -> None:
        self.transport.close()

    def base_url(self) -> str:
        """ "https://host[:port]" (or http://), found by pinging /v2/ once."""
        return self.transport.base_url()

    def _may_use_http(self) -> bool:
        return self.insecure or is_loopback_host(self.api_host)

    # ------------------------------------------------------------------ blobs

    def blob_exists(self, repository: str, digest: DigestLike) -> Optional[int]:
        bid = blob_id(digest)
        resp = self._request("HEAD", f"/v2/{repository}/blobs/{bid.digest}", _pull(repository))
        status, length = resp.status, resp.headers.get("Content-Length")
        discard(resp)
        if status == 404:
            return None
        if status != 200:
            raise self._error_from(status, None, f"checking blob {bid.digest} in {repository}")
        if length is not None and length.isdigit():
            return int(length)
        return bid.size if bid.size is not None else 0

    def read_blob(self, repository: str, digest: DigestLike, offset: int = 0, length: Optional[int] = None) -> bytes:
        bid = blob_id(digest)
        _check_range(offset, length)
        if length == 0:
            return b""
        whole = offset == 0 and length is None
        budget = RetryBudget(self.retry)
        where = f"blob {bid.digest} from {self.registry}/{repository}"
        mismatches = 0
        while True:
            resp = self._get_blob(repository, bid, offset, length)
            try:
                data = read_all(resp)
            except Urllib3Error as e:
                sleep_or_raise(budget, None, f"reading blob {bid.digest} from {repository}: {reason(e)}")
                continue
            if resp.status == 206:
                return self._checked_partial(resp, data, offset, length, where)
            try:
                verify_bytes(bid, data, where)  # a full body: verifiable even when a range was asked for
                break
            except ContentMismatchError as e:
                # Content-addressed: wrong bytes were damaged on the way (or are stored damaged).
                mismatches = _count_mismatch_or_raise(e, mismatches)
        if whole:
            return data
        if offset >= len(data) and len(data) > 0:
            raise BlobRangeError(f"offset {offset} is past the end of {where} ({len(data)} bytes)")
        return data[offset:] if length is None else data[offset : offset + length]

    def open_blob_stream(
        self, repository: str, digest: DigestLike, offset: int = 0, length: Optional[int] = None
    ) -> BlobStream:
        bid = blob_id(digest)
        _check_range(offset, length)
        if length == 0:
            return BlobStream(lambda n: b"", lambda: None)
        resp = self._get_blob(repository, bid, offset, length)
        where = f"blob {bid.digest} from {self.registry}/{repository}"
        whole = offset == 0 and length is None

        def close() -> None:
            discard(resp)

        def read(n: int) -> bytes:
            try:
                return resp.read(n)
            except Urllib3Error as e:
                raise RegistryUnavailableError(f"reading {where}: {reason(e)}") from None

        if whole:
            return BlobStream(read, close, verifier=DigestVerifier(bid, where), where=where)
        if resp.status == 206:
            expected = content_length(resp)
            return BlobStream(read, close, expected_length=expected, where=where)
        # 200 for a range request: skip to the offset and cut at the length ourselves.
        return BlobStream(_slice_reader(read, offset, length), close, where=where)

    def _get_blob(self, repository: str, bid: BlobId, offset: int, length: Optional[int]) -> Any:
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        resp = self._request("GET", f"/v2/{repository}/blobs/{bid.digest}", _pull(repository), headers=headers)
        if resp.status in (200, 206):
            return resp
        status, body = resp.status, read_error_body(resp)
        if status == 404:
            raise BlobNotFoundError(f"blob {bid.digest} is not in {self.registry}/{repository}")
        if status == 416:
            raise BlobRangeError(
                f"offset {offset} is past the end of blob {bid.digest} in {self.registry}/{repository}"
            )
        raise self._error_from(status, body, f"reading blob {bid.digest} from {repository}")

    def _checked_partial(self, resp: Any, data: bytes, offset: int, length: Optional[int], where: str) -> bytes:
        content_range = resp.headers.get("Content-Range", "")
        start, _, total = _parse_content_range(content_range)
        if start is not None and start != offset:
            raise ContentMismatchError(f"{where}: asked for bytes from {offset}, got a range starting at {start}")
        if length is not None:
            wanted = length if total is None else max(0, min(length, total - offset))
            if len(data) != wanted:
                raise ContentMismatchError(f"{where}: asked for {wanted} bytes at {offset}, got {len(data)}")
        return data

    def push_blob(
        self, repository: str, digest: DigestLike, source: BlobSource, mount_from: Optional[str] = None
    ) -> PushOutcome:
        bid = blob_id(digest)
        upload = source if isinstance(source, UploadSource) else UploadSource(source)
        if bid.size is not None and upload.size is not None and bid.size != upload.size:
            raise ContentMismatchError(
                f"pushing {bid.digest}: the source ({upload.describe()}) has {upload.size} bytes, "
                f"the digest says {bid.size}"
            )
        scopes = _push(repository)
        resp = self._request("HEAD", f"/v2/{repository}/blobs/{bid.digest}", scopes)
        status = resp.status
        discard(resp)
        if status == 200:
            return PushOutcome.PRESENT
        if status != 404:
            raise self._error_from(status, None, f"checking blob {bid.digest} in {repository}")
        location: Optional[str] = None
        if mount_from and mount_from != repository:
            mounted, location = self._start_upload(repository, bid, mount_from, self.retry)
            if mounted:
                return PushOutcome.MOUNTED
        budget = RetryBudget(self.retry)
        while True:
            try:
                if location is None:
                    _, location = self._start_upload(repository, None, None, NO_RETRIES)
                assert location is not None
                self._send_blob(repository, location, bid, upload)
                return PushOutcome.UPLOADED
            except RegistryUnavailableError as e:
                location = None
                if not upload.replayable:
                    raise
                delay = budget.next_delay(e.retry_after)
                if delay is None:
                    raise RegistryUnavailableError(
                        f"{e} (upload of {bid.digest} gave up {budget.gave_up_reason})", e.status, e.codes
                    ) from None
                logger.info("upload of %s to %s failed (%s); retrying in %.1fs", bid.digest, repository, e, delay)
                time.sleep(delay)

    def mount_blob(self, repository: str, digest: DigestLike, from_repository: str) -> bool:
        bid = blob_id(digest)
        # A declined mount leaves the upload session the registry opened instead; registries
        # purge idle sessions, and cancelling it would need a "delete" token on many of them.
        mounted, _ = self._start_upload(repository, bid, from_repository, self.retry)
        return mounted

    def _start_upload(
        self, repository: str, mount: Optional[BlobId], mount_from: Optional[str], retry: RetryPolicy
    ) -> Tuple[bool, Optional[str]]:
        """POST an upload (or a mount). (True, None) if mounted, else (False, upload URL)."""
        path = f"/v2/{repository}/blobs/uploads/"
        scopes = _push(repository)
        if mount is not None and mount_from:
            path += "?" + urlencode([("mount", mount.digest), ("from", mount_from)])
            scopes = scopes | _pull(mount_from)
        resp = self._request("POST", path, scopes, headers={"Content-Length": "0"}, body=_no_body, retry=retry)
        status, location = resp.status, resp.headers.get("Location")
        body = read_error_body(resp) if status not in (201, 202) else b""
        discard(resp)
        if status == 201 and mount is not None:
            return True, None
        if status == 202 and location:
            return False, urljoin(self.base_url() + path, location)
        raise self._error_from(status, body, f"starting an upload to {repository}")

    def _send_blob(self, repository: str, location: str, bid: BlobId, upload: UploadSource) -> None:
        scopes = _push(repository)
        chunk = self.upload_chunk_size
        body: BodyFactory
        if chunk is not None and (upload.size is None or upload.size > chunk):
            location = self._patch_chunks(repository, location, upload, chunk)
            body = _no_body
            headers = {"Content-Length": "0"}
        else:
            body = upload.open
            headers = {"Content-Type": "application/octet-stream"}
            if upload.size is not None:
                headers["Content-Length"] = str(upload.size)
        url = _add_query(location, "digest", bid.digest)
        resp = self._request("PUT", url, scopes, headers=headers, body=body, retry=NO_RETRIES)
        status, stored = resp.status, resp.headers.get("Docker-Content-Digest")
        error_body = read_error_body(resp) if status not in (201, 204) else b""
        discard(resp)
        if status in (201, 204):
            if stored and stored != bid.digest:
                raise ContentMismatchError(f"{self.registry}/{repository} stored {stored} when sent {bid.digest}")
            return
        codes = error_codes(error_body)
        if "DIGEST_INVALID" in codes or "SIZE_INVALID" in codes:
            raise ContentMismatchError(
                f"{self.registry} rejected the upload of {bid.digest} to {repository}: the bytes from "
                f"{upload.describe()} are not that blob ({', '.join(codes)})"
            )
        raise self._error_from(status, error_body, f"uploading blob {bid.digest} to {repository}")

    def _patch_chunks(self, repository: str, location: str, upload: UploadSource, chunk_size: int) -> str:
        offset = 0
        with upload.open() as reader:
            while True:
                data = reader.read(chunk_size)
                if not data:
                    return location
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(data) - 1}",
                    "Content-Length": str(len(data)),
                }
                resp = self._request(
                    "PATCH",
                    location,
                    _push(repository),
                    headers=headers,
                    body=functools.partial(bytes, data),
                    retry=NO_RETRIES,
                )
                status, next_location = resp.status, resp.headers.get("Location")
                error_body = read_error_body(resp) if status != 202 else b""
                discard(resp)
                if status != 202 or not next_location:
                    raise self._error_from(status, error_body, f"uploading a chunk at {offset} to {repository}")
                location = urljoin(location, next_location)
                offset += len(data)

    # ------------------------------------------------------------------ manifests

    def get_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = MANIFEST_ACCEPT
    ) -> Optional[Manifest]:
        _check_manifest_reference(reference)
        budget = RetryBudget(self.retry)
        mismatches = 0
        while True:
            resp = self._request(
                "GET",
                f"/v2/{repository}/manifests/{reference}",
                _pull(repository),
                headers={"Accept": ", ".join(accept)},
            )
            if resp.status == 404:
                discard(resp)
                return None
            if resp.status != 200:
                raise self._error_from(
                    resp.status, read_error_body(resp), f"reading manifest {repository}:{reference}"
                )
            declared = content_length(resp)
            if declared is not None and declared > MAX_MANIFEST_BYTES:
                discard(resp)
                raise RegistryError(
                    f"manifest {repository}:{reference} is {declared} bytes, over the {MAX_MANIFEST_BYTES} limit"
                )
            try:
                data = read_all(resp)
            except Urllib3Error as e:
                sleep_or_raise(budget, None, f"reading manifest {repository}:{reference}: {reason(e)}")
                continue
            try:
                digest = self._checked_manifest_digest(repository, reference, resp, data)
                break
            except ContentMismatchError as e:
                mismatches = _count_mismatch_or_raise(e, mismatches)
        media_type = _media_type_of(resp.headers.get("Content-Type"), data)
        return Manifest(media_type, data, digest)

    def _checked_manifest_digest(self, repository: str, reference: str, resp: Any, data: bytes) -> str:
        where = f"manifest {self.registry}/{repository}:{reference}"
        digest = sha256_digest(data)
        if is_digest(reference):
            verify_bytes(BlobId(reference), data, where)
        else:
            header = resp.headers.get("Docker-Content-Digest")
            if header and header != digest:
                raise ContentMismatchError(f"{where}: the registry says {header}, the bytes hash to {digest}")
        return digest

    def head_manifest(self, repository: str, reference: str, accept: Sequence[str] = MANIFEST_ACCEPT) -> Optional[str]:
        _check_manifest_reference(reference)
        resp = self._request(
            "HEAD", f"/v2/{repository}/manifests/{reference}", _pull(repository), headers={"Accept": ", ".join(accept)}
        )
        status, header = resp.status, resp.headers.get("Docker-Content-Digest")
        discard(resp)
        if status == 404:
            return None
        if status != 200:
            raise self._error_from(status, None, f"checking manifest {repository}:{reference}")
        if header and is_digest(header):
            return header
        manifest = self.get_manifest(repository, reference, accept)  # no digest header: costs a GET
        return manifest.digest if manifest else None

    def put_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> str:
        _check_manifest_reference(reference)
        digest = sha256_digest(data)
        if is_digest(reference) and reference != digest:
            raise ContentMismatchError(f"putting manifest {reference}: the bytes hash to {digest}")
        resp = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            _push(repository),
            headers={"Content-Type": media_type, "Content-Length": str(len(data))},
            body=lambda: data,
        )
        status, stored = resp.status, resp.headers.get("Docker-Content-Digest")
        body = read_error_body(resp) if status not in (200, 201, 202, 204) else b""
        discard(resp)
        if status not in (200, 201, 202, 204):
            codes = error_codes(body)
            hint = (
                "; push every blob it references first"
                if "MANIFEST_BLOB_UNKNOWN" in codes or "BLOB_UNKNOWN" in codes
                else ""
            )
            raise self._error_from(status, body, f"putting manifest {repository}:{reference} ({media_type})", hint)
        if stored and stored != digest:
            raise RegistryError(
                f"{self.registry}/{repository} stored the manifest as {stored}, not {digest}: "
                "the registry rewrote it; use a registry that keeps manifests byte-exact"
            )
        return digest

    def delete_manifest(self, repository: str, digest: str) -> bool:
        if not is_digest(digest):
            raise InvalidReferenceError(f"delete_manifest needs a digest (sha256:…), not {digest!r}")
        try:
            resp = self._request("DELETE", f"/v2/{repository}/manifests/{digest}", _delete(repository))
        except (RegistryUnauthorizedError, RegistryDeniedError) as e:
            logger.info("%s refused to delete %s in %s: %s", self.registry, digest, repository, e)
            return False
        status, body = resp.status, read_error_body(resp)
        if status in (200, 202, 204):
            return True
        if status in (400, 403, 404, 405):
            logger.info(
                "%s did not delete %s in %s (HTTP %d %s)",
                self.registry,
                digest,
                repository,
                status,
                error_summary(body),
            )
            return False
        raise self._error_from(status, body, f"deleting manifest {repository}@{digest}")

    # ------------------------------------------------------------------ HTTP

    def _request(
        self,
        method: str,
        path_or_url: str,
        scopes: Scopes,
        *,
        headers: Optional[Mapping[str, str]] = None,
        body: Optional[BodyFactory] = None,
        retry: Optional[RetryPolicy] = None,
    ) -> Any:
        """One authorized API request through the transport; returns an unread response (status
        not checked beyond 401 and retryable statuses). Callers read or `discard` it."""
        return self.transport.round_trip(Request(method, path_or_url, headers or {}, body, scopes, None, retry))

    def _error_from(self, status: int, body: Optional[bytes], action: str, hint: str = "") -> RegistryError:
        codes = error_codes(body or b"")
        detail = error_summary(body or b"", " ")
        message = f"{action}: {self.registry} answered HTTP {status}{detail}{hint}"
        if status == 401:
            return RegistryUnauthorizedError(message, status, codes)
        if status == 403 or "DENIED" in codes:
            return RegistryDeniedError(message + "; the credentials lack permission for this", status, codes)
        if status == 404:
            if "NAME_UNKNOWN" in codes:
                message += "; the repository does not exist (some registries need it created first)"
            return RegistryNotFoundError(message, status, codes)
        if status in RETRYABLE_STATUSES:
            return RegistryUnavailableError(message, status, codes)
        return RegistryError(message, status, codes)


# ---------------------------------------------------------------------- helpers


# Every API method builds its scopes through one of these, so every repository name
# is validated before it reaches a URL path.


def _pull(repository: str) -> Scopes:
    validate_repository(repository)
    return frozenset({repository_scope(repository, "pull")})


def _push(repository: str) -> Scopes:
    validate_repository(repository)
    return frozenset({repository_scope(repository, "pull", "push")})


def _delete(repository: str) -> Scopes:
    validate_repository(repository)
    return frozenset({repository_scope(repository, "delete")})


def _check_range(offset: int, length: Optional[int]) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise InvalidReferenceError(f"invalid byte range: offset {offset}, length {length}")


def _check_manifest_reference(reference: str) -> None:
    if not is_digest(reference):
        validate_tag(reference)


def _count_mismatch_or_raise(error: ContentMismatchError, mismatches: int) -> int:
    """One more read whose bytes did not match their digest: raises it once
    CONTENT_MISMATCH_RETRIES reads again have been spent, else warns and counts it."""
    mismatches += 1
    if mismatches > CONTENT_MISMATCH_RETRIES:
        raise error
    logger.warning("%s; reading it again", error)
    return mismatches


def _media_type_of(content_type: Optional[str], data: bytes) -> str:
    value = (content_type or "").strip()
    if value and value.split(";")[0].strip() not in ("application/json", "text/plain", "application/octet-stream"):
        return value
    try:
        declared = json.loads(data.decode("utf-8")).get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    return value or "application/octet-stream"


def _parse_content_range(value: str) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """ "bytes 0-99/1234" → (0, 99, 1234); unknown parts are None."""
    try:
        unit, _, spec = value.strip().partition(" ")
        span, _, total = spec.partition("/")
        start, _, end = span.partition("-")
        return int(start), int(end), (int(total) if total.isdigit() else None)
    except ValueError:
        return None, None, None


def _slice_reader(read: Callable[[int], bytes], skip: int, limit: Optional[int]) -> Callable[[int], bytes]:
    """For a full-body answer to a range request: drops `skip` bytes, then stops after `limit`."""
    return _Slicer(read, skip, limit).read


class _Slicer:
    def __init__(self, read: Callable[[int], bytes], skip: int, limit: Optional[int]) -> None:
        self._read = read
        self._skip = skip
        self._left = limit

    def read(self, n: int) -> bytes:
        while self._skip > 0:
            dropped = self._read(min(self._skip, READ_CHUNK))
            if not dropped:
                raise BlobRangeError("the range starts past the end of the blob")
            self._skip -= len(dropped)
        if self._left is None:
            return self._read(n)
        if self._left <= 0:
            return b""
        data = self._read(min(n, self._left))
        self._left -= len(data)
        return data


def _no_body() -> bytes:
    return b""


def _add_query(url: str, key: str, value: str) -> str:
    """Appends key=value, keeping the URL's own query (the upload's `_state`)."""
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return f"{url}{separator}{key}={quote(value, safe=':')}"


def _seconds_from_environment(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        logger.warning("ignoring %s=%r: not a number of seconds", name, value)
        return default
    return seconds if seconds > 0 else default


