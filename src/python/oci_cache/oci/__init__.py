"""OCI transport: one image/blob interface (`ImageTarget`) with two homes —
a registry repository (`RegistryTarget`) and an OCI image-layout directory
(`OciLayoutTarget`). Start with `open_target`.
"""

from __future__ import annotations

from oci_cache.lazy_exports import lazy_exports

_EXPORTS = {
    "BlobNotFoundError": "errors",
    "BlobRangeError": "errors",
    "BlobSource": "content",
    "BlobStream": "content",
    "ContentMismatchError": "errors",
    "Credentials": "credentials",
    "CredentialsError": "errors",
    "DigestLike": "content",
    "DockerConfigCredentials": "credentials",
    "ImageTarget": "target",
    "InvalidReferenceError": "errors",
    "LayoutLocation": "target",
    "Manifest": "target",
    "OciError": "errors",
    "OciLayoutTarget": "layout",
    "PushOutcome": "target",
    "Reference": "reference",
    "RegistryClient": "registry_client",
    "RegistryDeniedError": "errors",
    "RegistryError": "errors",
    "RegistryLocation": "target",
    "RegistryNotFoundError": "errors",
    "RegistryTarget": "registry_target",
    "RegistryUnauthorizedError": "errors",
    "RegistryUnavailableError": "errors",
    "RetryPolicy": "http_retry",
    "StaticCredentials": "credentials",
    "copy_blob": "transfer",
    "open_target": "target_opener",
    "parse_reference": "reference",
    "push_blobs_concurrently": "transfer",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
