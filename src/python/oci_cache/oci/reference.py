"""Image references: `host[:port]/repo[:tag][@sha256:…]`, parsed the way Docker does.

- The first path component names a registry when it contains "." or ":", is
  "localhost", or has an uppercase letter; otherwise the registry is Docker Hub
  ("docker.io"), whose API lives at registry-1.docker.io and whose one-component
  names get the "library/" prefix ("ubuntu" → "docker.io/library/ubuntu").
- Repository components are lowercase (`[a-z0-9]+` joined by ".", "_", "__" or
  dashes); the whole name is at most 255 characters.
- Tags are `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; digests must be `sha256:<64 hex>`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from oci_cache.oci.errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA256_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ANY_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Za-z=_-]+")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. `registry` is "docker.io" for Docker Hub."""

    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    @property
    def api_host(self) -> str:
        """The host[:port] that serves the /v2/ API (registry-1.docker.io for Docker Hub)."""
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest if given, else the tag, else "latest"."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.registry)

    def with_tag(self, tag: str) -> "Reference":
        validate_tag(tag)
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> "Reference":
        validate_digest(digest)
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parses `host[:port]/repo[:tag][@sha256:…]`; raises InvalidReferenceError."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReferenceError("empty image reference: want host[:port]/repository[:tag]")
    original = text
    text = text.strip()
    if "://" in text:
        raise InvalidReferenceError(
            f"invalid image reference {original!r}: leave out the scheme "
            "(write ghcr.io/org/repo:tag; use insecure=true for a plain-HTTP registry)"
        )
    digest: Optional[str] = None
    if "@" in text:
        text, digest = text.split("@", 1)
        validate_digest(digest, context=original)
    registry, remainder = _split_registry(text)
    tag: Optional[str] = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        validate_tag(tag, context=original)
    if registry == DOCKER_HUB and "/" not in remainder:
        remainder = f"library/{remainder}"
    validate_repository(remainder, context=original)
    if len(f"{registry}/{remainder}") > MAX_NAME_LENGTH:
        raise InvalidReferenceError(
            f"invalid image reference {original!r}: the name is longer than {MAX_NAME_LENGTH} characters"
        )
    return Reference(registry=registry, repository=remainder, tag=tag, digest=digest)


def _split_registry(text: str) -> Tuple[str, str]:
    slash = text.find("/")
    first = text[:slash] if slash >= 0 else ""
    if slash < 0 or not (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        return DOCKER_HUB, text
    if not _DOMAIN.fullmatch(first):
        raise InvalidReferenceError(f"invalid registry host {first!r} in image reference {text!r}")
    if not any(c in first for c in ".:") and first != "localhost":
        # Docker reads an uppercase first component as a host name; it is nearly always a
        # mistyped repository, so say so instead of trying to reach a host called "Acme".
        raise InvalidReferenceError(
            f"invalid image reference {text!r}: repository names must be lowercase (try {text.lower()!r}); "
            "a registry host needs a '.' or a ':port'"
        )
    registry = first
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry
    if host.lower() in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    return registry, text[slash + 1 :]


def validate_repository(repository: str, context: Optional[str] = None) -> None:
    where = f" in image reference {context!r}" if context else ""
    if not repository:
        raise InvalidReferenceError(f"missing repository name{where}: want host[:port]/repository[:tag]")
    for component in repository.split("/"):
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if component.lower() != component and _PATH_COMPONENT.fullmatch(component.lower()):
            raise InvalidReferenceError(
                f"invalid repository name {repository!r}{where}: repository names must be lowercase "
                f"(try {repository.lower()!r})"
            )
        raise InvalidReferenceError(
            f"invalid repository name {repository!r}{where}: each path component must be lowercase "
            "letters and digits, optionally separated by '.', '_', '__' or '-'"
        )


def validate_tag(tag: str, context: Optional[str] = None) -> None:
    if not _TAG.fullmatch(tag or ""):
        where = f" in image reference {context!r}" if context else ""
        raise InvalidReferenceError(
            f"invalid tag {tag!r}{where}: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        )


def validate_digest(digest: str, context: Optional[str] = None) -> None:
    """Accepts only "sha256:<64 lowercase hex>"."""
    if _SHA256_DIGEST.fullmatch(digest or ""):
        return
    where = f" in image reference {context!r}" if context else ""
    if _ANY_DIGEST.fullmatch(digest or "") and not digest.startswith("sha256:"):
        raise InvalidReferenceError(f"unsupported digest algorithm in {digest!r}{where}: only sha256 is supported")
    raise InvalidReferenceError(f"invalid digest {digest!r}{where}: want sha256:<64 lowercase hex digits>")


def is_digest(text: str) -> bool:
    return bool(_SHA256_DIGEST.fullmatch(text))


def is_loopback_host(host_and_port: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1, with or without a port."""
    host = host_and_port
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
