"""OCI transport: one image/blob interface (`ImageTarget`) with two homes —
a registry repository (`RegistryTarget`) and an OCI image-layout directory
(`OciLayoutTarget`). Start with `open_target`.
"""

from __future__ import annotations

from oci_cache.oci.content import BlobSource, BlobStream, DigestLike
from oci_cache.oci.credentials import Credentials, DockerConfigCredentials, StaticCredentials
from oci_cache.oci.errors import (
    BlobNotFoundError,
    BlobRangeError,
    ContentMismatchError,
    CredentialsError,
    InvalidReferenceError,
    OciError,
    RegistryDeniedError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnauthorizedError,
    RegistryUnavailableError,
)
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.layout import OciLayoutTarget
from oci_cache.oci.open_target import open_target
from oci_cache.oci.reference import Reference, parse_reference
from oci_cache.oci.registry_client import RegistryClient
from oci_cache.oci.registry_target import RegistryTarget
from oci_cache.oci.target import ImageTarget, Manifest, PushOutcome
from oci_cache.oci.transfer import copy_blob, push_blobs_concurrently

__all__ = [
    "BlobNotFoundError",
    "BlobRangeError",
    "BlobSource",
    "BlobStream",
    "ContentMismatchError",
    "Credentials",
    "CredentialsError",
    "DigestLike",
    "DockerConfigCredentials",
    "ImageTarget",
    "InvalidReferenceError",
    "Manifest",
    "OciError",
    "OciLayoutTarget",
    "PushOutcome",
    "Reference",
    "RegistryClient",
    "RegistryDeniedError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryTarget",
    "RegistryUnauthorizedError",
    "RegistryUnavailableError",
    "RetryPolicy",
    "StaticCredentials",
    "copy_blob",
    "open_target",
    "parse_reference",
    "push_blobs_concurrently",
]
