"""Small helpers shared by the OCI transport tests."""

from __future__ import annotations

import json
import os
from typing import Optional, Tuple

from oci_cache.oci.content import sha256_digest
from oci_cache.oci.credentials import NoCredentials
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.registry_client import RegistryClient
from oci_cache.oci.target import ImageTarget

FAST_RETRY = RetryPolicy(max_attempts=5, initial_delay=0.02, max_delay=0.2, total_timeout=10.0)
EMPTY_CONFIG = b"{}"


def random_blob(size: int) -> Tuple[str, bytes]:
    data = os.urandom(size)
    return sha256_digest(data), data


def client_for(host: str, **kwargs: object) -> RegistryClient:
    kwargs.setdefault("credentials", NoCredentials())
    kwargs.setdefault("retry", FAST_RETRY)
    return RegistryClient(host, **kwargs)  # type: ignore[arg-type]


def artifact_manifest(
    target: ImageTarget,
    layer: bytes,
    artifact_type: Optional[str] = "application/vnd.test.cache.v1",
    layer_media_type: str = "application/vnd.test.layer.v1.tar+zstd",
) -> bytes:
    """Pushes an empty config and `layer`, returns manifest bytes referencing them (not yet put)."""
    target.push_blob(sha256_digest(EMPTY_CONFIG), EMPTY_CONFIG)
    target.push_blob(sha256_digest(layer), layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(EMPTY_CONFIG), "size": 2},
        "layers": [
            {
                "mediaType": layer_media_type,
                "digest": sha256_digest(layer),
                "size": len(layer),
                "annotations": {"test.uncompressed": "x"},
            }
        ],
    }
    if artifact_type:
        manifest["artifactType"] = artifact_type
    # Unusual formatting on purpose: targets must store these bytes exactly.
    return json.dumps(manifest, indent=3, sort_keys=False).encode() + b"\n\n"
