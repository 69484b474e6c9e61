"""Manifest media types that every target understands (OCI and Docker)."""

from __future__ import annotations

from typing import Tuple

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

# Sent as Accept on manifest GET/HEAD. Registries choose (and, for Docker Hub and
# distribution, convert) the manifest by Accept: OCI types must be listed or
# distribution 2.8 answers 404 for an OCI manifest fetched by tag.
MANIFEST_ACCEPT: Tuple[str, ...] = (
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
)

# The annotation an OCI image layout's index.json uses to name a manifest (the tag).
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
