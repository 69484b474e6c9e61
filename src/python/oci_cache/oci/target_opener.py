"""`open_target`: an ImageTarget from a cache-to/cache-from style location."""

from __future__ import annotations

from typing import Mapping, Optional

from oci_cache.oci.credentials import CredentialSource
from oci_cache.oci.http_retry import RetryPolicy
from oci_cache.oci.layout import OciLayoutTarget
from oci_cache.oci.reference import parse_reference
from oci_cache.oci.registry_client import RegistryClient
from oci_cache.oci.registry_target import RegistryTarget
from oci_cache.oci.target import ImageTarget

KINDS = ("registry", "local")


def open_target(
    kind: str,
    ref_or_path: str,
    *,
    tag: Optional[str] = None,
    insecure: bool = False,
    ca_bundle: Optional[str] = None,
    docker_config_dir: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    credentials: Optional[CredentialSource] = None,
    client: Optional[RegistryClient] = None,
    retry: Optional[RetryPolicy] = None,
) -> ImageTarget:
    """kind="registry": `ref_or_path` is host[:port]/repo[:tag] (`tag` overrides its tag).
    kind="local": `ref_or_path` is an OCI image-layout directory (created on first write).

    Pass `client` to share connections and tokens between targets of one registry
    (it must have been made for that registry); otherwise the target owns a new client
    configured from `insecure`, `ca_bundle`, `docker_config_dir`/`environ` or
    `credentials`, and `retry`.
    """
    if kind == "local":
        return OciLayoutTarget(ref_or_path, tag=tag)
    if kind != "registry":
        raise ValueError(f"unknown target kind {kind!r}: want one of {', '.join(KINDS)}")
    reference = parse_reference(ref_or_path)
    if tag is not None:
        reference = reference.with_tag(tag)
    if client is not None:
        return RegistryTarget(client, reference)
    new_client = RegistryClient(
        reference.registry,
        insecure=insecure,
        ca_bundle=ca_bundle,
        credentials=credentials,
        docker_config_dir=docker_config_dir,
        environ=environ,
        retry=retry or RetryPolicy(),
    )
    return RegistryTarget(new_client, reference, owns_client=True)
