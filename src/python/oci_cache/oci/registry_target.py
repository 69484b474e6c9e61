"""`RegistryTarget`: the ImageTarget interface for one repository of a registry."""

from __future__ import annotations

from typing import Optional

from oci_cache.oci.content import BlobSource, BlobStream, DigestLike
from oci_cache.oci.reference import DEFAULT_TAG, Reference
from oci_cache.oci.registry_client import RegistryClient
from oci_cache.oci.target import Manifest, PushOutcome, RegistryLocation


class RegistryTarget:
    """A repository in a registry. Several targets may share one RegistryClient (and
    with it connections and tokens); `close()` closes the client only if this target
    created it."""

    def __init__(self, client: RegistryClient, reference: Reference, owns_client: bool = False) -> None:
        if reference.registry != client.registry:
            raise ValueError(f"{reference} is not in registry {client.registry}")
        self.client = client
        self.reference = reference
        self.repository = reference.repository
        self._owns_client = owns_client

    @property
    def location(self) -> RegistryLocation:
        return RegistryLocation(self.reference)

    @property
    def tag(self) -> str:
        return self.reference.tag or DEFAULT_TAG

    def describe(self) -> str:
        return f"registry {self.reference} ({self.client.connection_summary()})"

    def __repr__(self) -> str:
        return f"RegistryTarget({self.describe()})"

    def blob_exists(self, digest: DigestLike) -> Optional[int]:
        return self.client.blob_exists(self.repository, digest)

    def read_blob(self, digest: DigestLike, offset: int = 0, length: Optional[int] = None) -> bytes:
        return self.client.read_blob(self.repository, digest, offset, length)

    def open_blob_stream(self, digest: DigestLike, offset: int = 0, length: Optional[int] = None) -> BlobStream:
        return self.client.open_blob_stream(self.repository, digest, offset, length)

    def push_blob(self, digest: DigestLike, source: BlobSource, mount_from: Optional[str] = None) -> PushOutcome:
        return self.client.push_blob(self.repository, digest, source, mount_from)

    def mount_blob(self, digest: DigestLike, from_repository: str) -> bool:
        return self.client.mount_blob(self.repository, digest, from_repository)

    def get_manifest(self, reference: str) -> Optional[Manifest]:
        return self.client.get_manifest(self.repository, reference)

    def head_manifest(self, reference: str) -> Optional[str]:
        return self.client.head_manifest(self.repository, reference)

    def put_manifest(self, reference: str, media_type: str, data: bytes) -> str:
        return self.client.put_manifest(self.repository, reference, media_type, data)

    def delete_manifest(self, digest: str) -> bool:
        return self.client.delete_manifest(self.repository, digest)

    def connect(self) -> None:
        self.client.base_url()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
