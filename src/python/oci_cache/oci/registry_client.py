"""A client for one registry's OCI distribution API (/v2/), on urllib3 1.26 or 2.x.

One `RegistryClient` per registry host: it owns the connection pools, the
scheme (https, or http for `insecure`/loopback registries), and the
authorization state (tokens are shared by every repository and thread). Methods
take the repository name; `RegistryTarget` binds one repository to the
`ImageTarget` interface. See docs/registry-client.md for the why.

What it does on the wire:
- first use: `GET /v2/` (Docker's "ping") picks the scheme and learns the auth
  scheme from the challenge;
- every request carries the Authorization for exactly the scopes it needs (pull;
  pull,push for writes; delete for DELETE); 401 → renew/escalate, retry once;
- redirects are followed by hand for GET/HEAD; Authorization is sent only to the
  registry's own origin (blob GETs redirect to storage hosts with signed URLs);
- 408/429/5xx and connection errors are retried with backoff and jitter,
  honouring Retry-After, within RetryPolicy's attempt and time bounds; a refused
  connection (nothing listens) gets one quick retry only, so an unreachable
  registry fails in a fraction of a second instead of stalling a build;
- uploads: HEAD (skip if present) → optional mount → POST → PUT ?digest= (one
  streamed body), or PATCH chunks then PUT when `upload_chunk_size` is set; the
  upload URL's own query (`_state`) is preserved; an upload that fails
  transiently is restarted from a fresh POST.

Thread-safe; sized for many concurrent transfers (`max_connections` per host).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
import threading
import time
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union
from urllib.parse import quote, urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import InsecureRequestWarning
from urllib3.exceptions import SSLError as Urllib3SSLError

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
from oci_cache.oci.http_retry import NO_RETRIES, RETRYABLE_STATUSES, RetryBudget, RetryPolicy, parse_retry_after
from oci_cache.oci.media_types import MANIFEST_ACCEPT
from oci_cache.oci.redirect_memory import RedirectMemory
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
from oci_cache.oci.token_auth import RegistryAuth, Scopes, repository_scope

logger = logging.getLogger(__name__)

USER_AGENT = "pants-oci-cache/0.1 (urllib3)"
MAX_REDIRECTS = 5
MAX_MANIFEST_BYTES = 16 << 20
READ_CHUNK = 1 << 20
# urllib3 2 reads responses READ_CHUNK bytes at a time (`blocksize`); urllib3 1.26, which Pants
# 2.24-2.29 pin in their own environment (and so in a `[GLOBAL].plugins` install), has no such
# pool setting and reads with http.client's default.
_URLLIB3_2 = int(urllib3.__version__.split(".")[0]) >= 2
_BLOCKSIZE = {"blocksize": READ_CHUNK} if _URLLIB3_2 else {}
DRAIN_LIMIT = 256 << 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
REFUSED_RETRY_DELAY = 0.1  # seconds before the one retry of a refused connection
CONTENT_MISMATCH_RETRIES = 2  # reads again of a blob/manifest whose bytes do not match its digest
DEFAULT_READ_TIMEOUT = 120.0  # seconds without a byte from the registry
READ_TIMEOUT_VARIABLE = "OCI_CACHE_REGISTRY_READ_TIMEOUT"  # overrides it (seconds)
_NOT_TLS_MARKERS = (
    "wrong version number",
    "wrong_version_number",
    "record layer failure",
    "unknown protocol",
    "http request",
    "packet length too long",
    "record_layer_failure",
)

Body = Union[bytes, Any]
BodyFactory = Callable[[], Body]


class _PlainHttpServer(RegistryUnavailableError):
    """The host answered a TLS handshake with something that is not TLS (a plain-HTTP server)."""


class _ConnectionFailed(RegistryUnavailableError):
    """No HTTP answer at all: refused, reset, timed out. `reason` is the short cause."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


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
        self._hostname = urlsplit(f"//{self.api_host}").hostname or self.api_host
        if read_timeout is None:
            read_timeout = _seconds_from_environment(READ_TIMEOUT_VARIABLE, DEFAULT_READ_TIMEOUT)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._registry_pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=max_connections,
            retries=False,
            timeout=self._timeout,
            **_BLOCKSIZE,
            **_tls_settings(insecure, ca_bundle),
        )
        self._other_pool = urllib3.PoolManager(
            num_pools=16, maxsize=max_connections, retries=False, timeout=self._timeout, **_BLOCKSIZE
        )
        if insecure:
            warnings.filterwarnings(
                "ignore",
                message=f"Unverified HTTPS request is being made to host '{self._hostname}'",
                category=InsecureRequestWarning,
            )
        if credentials is None:
            credentials = DockerConfigCredentials(docker_config_dir, environ)
        self.auth = RegistryAuth(registry, credentials, self._token_transport, allow_plain_http_realm=insecure)
        self._base: Optional[str] = None
        self._base_lock = threading.Lock()
        self._redirects = RedirectMemory()

    # ------------------------------------------------------------------ basics

    def connection_summary(self) -> str:
        """ "https", "http, insecure", … (the scheme is known after the first request;
        before it, "https or http" where plain HTTP may be used)."""
        if self._base:
            scheme = urlsplit(self._base).scheme
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
        self._registry_pool.clear()
        self._other_pool.clear()

    def base_url(self) -> str:
        """ "https://host[:port]" (or http://), found by pinging /v2/ once."""
        if self._base is not None:
            return self._base
        with self._base_lock:
            if self._base is None:
                self._base = self._probe()
            return self._base

    def _may_use_http(self) -> bool:
        return self.insecure or is_loopback_host(self.api_host)

    def _probe(self) -> str:
        schemes = ["https", "http"] if self._may_use_http() else ["https"]
        unreachable: List[_ConnectionFailed] = []
        for scheme in schemes:
            base = f"{scheme}://{self.api_host}"
            try:
                resp = self._perform("GET", base + "/v2/", scopes=None, headers={})
            except _PlainHttpServer:
                if scheme == schemes[-1]:
                    raise
                logger.debug("%s does not speak TLS; using plain HTTP", self.api_host)
                continue
            except _ConnectionFailed as e:
                if scheme == schemes[-1]:
                    if unreachable:  # both schemes failed: name both URLs tried
                        first, tried = unreachable[0].reason, f"GET https://{self.api_host}/v2/"
                        both = (
                            f"{tried} and GET {base}/v2/: {e.reason}"
                            if first == e.reason
                            else f"{tried}: {first}; GET {base}/v2/: {e.reason}"
                        )
                        raise _ConnectionFailed(
                            f"cannot reach {self.registry} over https or http ({both})", e.reason
                        ) from None
                    raise
                unreachable.append(e)
                continue
            status = resp.status
            challenge = resp.headers.get("WWW-Authenticate")
            _discard(resp)
            if status == 401:
                self.auth.prime(challenge)
            elif status == 404:
                raise RegistryError(
                    f"{base}/v2/ answered 404: {self.registry} does not serve the OCI distribution API there", 404
                )
            return base
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ blobs

    def blob_exists(self, repository: str, digest: DigestLike) -> Optional[int]:
        bid = blob_id(digest)
        resp = self._request("HEAD", f"/v2/{repository}/blobs/{bid.digest}", _pull(repository))
        status, length = resp.status, resp.headers.get("Content-Length")
        _discard(resp)
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
                data = _read_all(resp)
            except Urllib3Error as e:
                self._sleep_or_raise(budget, None, f"reading blob {bid.digest} from {repository}: {_reason(e)}")
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
            _discard(resp)

        def read(n: int) -> bytes:
            try:
                return resp.read(n)
            except Urllib3Error as e:
                raise RegistryUnavailableError(f"reading {where}: {_reason(e)}") from None

        if whole:
            return BlobStream(read, close, verifier=DigestVerifier(bid, where), where=where)
        if resp.status == 206:
            expected = _content_length(resp)
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
        status, body = resp.status, _read_error_body(resp)
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
        _discard(resp)
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
        body = _read_error_body(resp) if status not in (201, 202) else b""
        _discard(resp)
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
        error_body = _read_error_body(resp) if status not in (201, 204) else b""
        _discard(resp)
        if status in (201, 204):
            if stored and stored != bid.digest:
                raise ContentMismatchError(f"{self.registry}/{repository} stored {stored} when sent {bid.digest}")
            return
        codes = _error_codes(error_body)
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
                error_body = _read_error_body(resp) if status != 202 else b""
                _discard(resp)
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
                _discard(resp)
                return None
            if resp.status != 200:
                raise self._error_from(
                    resp.status, _read_error_body(resp), f"reading manifest {repository}:{reference}"
                )
            declared = _content_length(resp)
            if declared is not None and declared > MAX_MANIFEST_BYTES:
                _discard(resp)
                raise RegistryError(
                    f"manifest {repository}:{reference} is {declared} bytes, over the {MAX_MANIFEST_BYTES} limit"
                )
            try:
                data = _read_all(resp)
            except Urllib3Error as e:
                self._sleep_or_raise(budget, None, f"reading manifest {repository}:{reference}: {_reason(e)}")
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
        _discard(resp)
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
        body = _read_error_body(resp) if status not in (200, 201, 202, 204) else b""
        _discard(resp)
        if status not in (200, 201, 202, 204):
            codes = _error_codes(body)
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
        status, body = resp.status, _read_error_body(resp)
        if status in (200, 202, 204):
            return True
        if status in (400, 403, 404, 405):
            logger.info(
                "%s did not delete %s in %s (HTTP %d %s)",
                self.registry,
                digest,
                repository,
                status,
                _error_summary(body),
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
        """One authorized API request with retries; returns an unread response (status not checked
        beyond 401 and retryable statuses). Callers read or `_discard` it."""
        base = self.base_url()
        url = path_or_url if "://" in path_or_url else base + path_or_url
        unauthorized = 0
        while True:
            authorization = self.auth.authorization(scopes)
            resp = self._perform(
                method, url, scopes=scopes, headers=headers or {}, body=body, authorization=authorization, retry=retry
            )
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate")
            _discard(resp)
            unauthorized += 1
            self.auth.handle_unauthorized(challenge, scopes, authorization, repeated=unauthorized > 1)
            if unauthorized > 2:
                raise RegistryUnauthorizedError(
                    f"{self.registry} keeps answering 401 for {method} {_safe_url(url)}", 401
                )

    def _perform(
        self,
        method: str,
        url: str,
        *,
        scopes: Optional[Scopes],
        headers: Mapping[str, str],
        body: Optional[BodyFactory] = None,
        authorization: Optional[str] = None,
        retry: Optional[RetryPolicy] = None,
    ) -> Any:
        """Sends with redirects and retries (connection errors, 408/429/5xx); no auth handling."""
        budget = RetryBudget(retry or self.retry)
        refusals = 0
        while True:
            try:
                payload = body() if body is not None else None
            except OSError as e:
                raise RegistryUnavailableError(f"cannot read the data to send to {self.registry}: {e}") from None
            try:
                resp = self._send(method, url, headers, payload, authorization)
            except Urllib3SSLError as e:
                raise self._tls_error(url, e) from None
            except (Urllib3Error, OSError) as e:
                reason = "connection refused" if _connection_refused(e) else _reason(e)
                message = f"cannot reach {self.registry} ({method} {_safe_url(url)}): {reason}"
                if _connection_refused(e):
                    # Nothing listens there: backing off for seconds would only stall the build.
                    refusals += 1
                    if refusals > 1 or budget.policy.max_attempts <= 1:
                        suffix = " (refused again after a quick retry)" if refusals > 1 else ""
                        raise _ConnectionFailed(message + suffix, reason) from None
                    logger.info("%s; retrying once in %.1fs", message, REFUSED_RETRY_DELAY)
                    time.sleep(REFUSED_RETRY_DELAY)
                    continue
                self._sleep_or_raise(budget, None, message, error_type=_ConnectionFailed, reason=reason)
                continue
            finally:
                if payload is not None and hasattr(payload, "close"):
                    payload.close()
            if resp.status not in RETRYABLE_STATUSES:
                return resp
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            status, error_body = resp.status, _read_error_body(resp)
            message = (
                f"{self.registry} answered HTTP {status} to {method} {_safe_url(url)}{_error_summary(error_body, ' ')}"
            )
            self._sleep_or_raise(budget, retry_after, message, status, _error_codes(error_body))

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], payload: Any, authorization: Optional[str]
    ) -> Any:
        original = url
        if method == "GET":
            remembered = self._remembered_redirect(url, headers)
            if remembered is not None:
                return remembered
        for _ in range(MAX_REDIRECTS + 1):
            send_headers = {"User-Agent": USER_AGENT}
            send_headers.update(headers)
            if authorization is not None and self._same_origin(url):
                send_headers["Authorization"] = authorization
            pool = self._registry_pool if urlsplit(url).hostname == self._hostname else self._other_pool
            resp = pool.urlopen(
                method,
                url,
                body=payload,
                headers=send_headers,
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=self._timeout,
            )
            location = resp.headers.get("Location")
            if resp.status in REDIRECT_STATUSES and method in ("GET", "HEAD") and location:
                _discard(resp)
                url = urljoin(url, location)
                logger.debug("following a redirect to %s", _safe_url(url))
                continue
            logger.debug("%s %s -> %d", method, _safe_url(url), resp.status)
            if method == "GET" and url != original and resp.status in (200, 206):
                self._redirects.remember(original, url)
            return resp
        raise RegistryError(f"{self.registry}: more than {MAX_REDIRECTS} redirects for {method} {_safe_url(url)}")

    def _remembered_redirect(self, url: str, headers: Mapping[str, str]) -> Any:
        """The response of the storage a blob GET was redirected to lately (redirect_memory.py),
        or None: then ask the registry (the target expired, failed or was never known)."""
        target = self._redirects.lookup(url)
        if target is None:
            return None
        send_headers = {"User-Agent": USER_AGENT}
        send_headers.update(headers)
        try:
            pool = self._registry_pool if urlsplit(target).hostname == self._hostname else self._other_pool
            resp = pool.urlopen(
                "GET", target, headers=send_headers, redirect=False, retries=False, preload_content=False, timeout=self._timeout
            )
        except (Urllib3Error, OSError):
            self._redirects.forget(url)
            return None
        if resp.status in (200, 206):
            logger.debug("GET %s (remembered redirect) -> %d", _safe_url(target), resp.status)
            return resp
        _discard(resp)
        self._redirects.forget(url)
        return None

    def _same_origin(self, url: str) -> bool:
        if self._base is None:
            return False
        a, b = urlsplit(url), urlsplit(self._base)
        return (a.scheme, a.hostname, a.port or _default_port(a.scheme)) == (
            b.scheme,
            b.hostname,
            b.port or _default_port(b.scheme),
        )

    def _sleep_or_raise(
        self,
        budget: RetryBudget,
        retry_after: Optional[float],
        message: str,
        status: Optional[int] = None,
        codes: Sequence[str] = (),
        error_type: Optional[type] = None,
        reason: str = "",
    ) -> None:
        delay = budget.next_delay(retry_after)
        if delay is None:
            suffix = f" (gave up {budget.gave_up_reason})" if budget.policy.max_attempts > 1 else ""
            if error_type is _ConnectionFailed:
                raise _ConnectionFailed(message + suffix, reason)
            raise RegistryUnavailableError(message + suffix, status, codes, retry_after)
        logger.info("%s; retrying in %.1fs", message, delay)
        time.sleep(delay)

    def _tls_error(self, url: str, error: Exception) -> RegistryUnavailableError:
        reason = _reason(error)
        lowered = reason.lower()
        if any(marker in lowered for marker in _NOT_TLS_MARKERS):
            return _PlainHttpServer(
                f"{self.registry} does not speak TLS (HTTPS) on {urlsplit(url).netloc}; "
                "if it is a plain-HTTP registry, set insecure=true for it"
            )
        if "certificate" in lowered or "verify" in lowered:
            return RegistryUnavailableError(
                f"the TLS certificate of {urlsplit(url).netloc} is not trusted ({reason}); trust the CA that signed it "
                "(SSL_CERT_FILE=PATH in the daemon's environment) or, for a lab registry, set insecure=true"
            )
        return RegistryUnavailableError(f"TLS connection to {urlsplit(url).netloc} failed: {reason}")

    def _token_transport(
        self, method: str, url: str, headers: Mapping[str, str], body: Optional[bytes]
    ) -> Tuple[int, Mapping[str, str], bytes]:
        resp = self._perform(
            method, url, scopes=None, headers=headers, body=(lambda: body) if body is not None else None
        )
        try:
            data = resp.read(1 << 20)
        except Urllib3Error as e:
            raise RegistryUnavailableError(f"reading the token for {self.registry}: {_reason(e)}") from None
        finally:
            _discard(resp)
        return resp.status, dict(resp.headers), data

    def _error_from(self, status: int, body: Optional[bytes], action: str, hint: str = "") -> RegistryError:
        codes = _error_codes(body or b"")
        detail = _error_summary(body or b"", " ")
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


def _tls_settings(insecure: bool, ca_bundle: Optional[str]) -> Dict[str, Any]:
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return {"ssl_context": context, "cert_reqs": "CERT_NONE"}
    if ca_bundle and not _URLLIB3_2:
        # urllib3 1.26 checks host names itself (IP addresses too) only in a context it made.
        return {"ca_certs": ca_bundle, "cert_reqs": "CERT_REQUIRED"}
    if ca_bundle:
        return {"ssl_context": ssl.create_default_context(cafile=ca_bundle)}
    return {}


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


def _discard(resp: Any) -> None:
    """Done with a response: drain a short rest so the connection is reused, or close it."""
    remaining = getattr(resp, "length_remaining", None)
    try:
        if remaining is None or remaining <= DRAIN_LIMIT:
            resp.drain_conn()
        else:
            resp.close()  # e.g. a stream closed early: don't download the rest of a big blob
    except Exception:  # a broken connection is simply not reused
        pass
    resp.release_conn()


def _count_mismatch_or_raise(error: ContentMismatchError, mismatches: int) -> int:
    """One more read whose bytes did not match their digest: raises it once
    CONTENT_MISMATCH_RETRIES reads again have been spent, else warns and counts it."""
    mismatches += 1
    if mismatches > CONTENT_MISMATCH_RETRIES:
        raise error
    logger.warning("%s; reading it again", error)
    return mismatches


def _read_all(resp: Any) -> bytes:
    try:
        return resp.read()
    finally:
        resp.release_conn()


def _read_error_body(resp: Any) -> bytes:
    try:
        return resp.read(64 << 10) or b""
    except Exception:
        return b""
    finally:
        _discard(resp)


def _error_codes(body: bytes) -> List[str]:
    try:
        errors = json.loads(body.decode("utf-8")).get("errors") or []
        return [str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code")]
    except (ValueError, AttributeError, UnicodeDecodeError):
        return []


def _error_summary(body: bytes, prefix: str = "") -> str:
    """ "CODE: message; CODE: message" from an OCI error body (never its `detail`), or a short text."""
    if not body:
        return ""
    try:
        errors = json.loads(body.decode("utf-8")).get("errors") or []
        parts = [f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)]
        text = "; ".join(parts)
    except (ValueError, AttributeError, UnicodeDecodeError):
        text = body[:200].decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else ""
    return f"{prefix}({text[:300]})" if text else ""


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


def _content_length(resp: Any) -> Optional[int]:
    value = resp.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


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


def _safe_url(url: str) -> str:
    """scheme://host/path, without the query (signed URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


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


def _connection_refused(error: BaseException) -> bool:
    """True when the TCP connection was refused (urllib3 keeps the OSError as the cause)."""
    seen: Set[int] = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _reason(error: BaseException) -> str:
    """A short reason for a urllib3/OS error (urllib3 nests the cause)."""
    reason = getattr(error, "reason", None) or error
    text = str(reason) or type(reason).__name__
    return text[:300]
