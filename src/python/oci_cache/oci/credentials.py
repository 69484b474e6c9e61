"""Registry credentials, found the way the Docker CLI finds them.

`$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`):
- `credHelpers`: {"host": "NAME"} → run `docker-credential-NAME get` for that host;
- `credsStore`: "NAME" → the same helper for every host;
- `auths`: {"host": {"auth": base64("user:pass")} | {"username", "password"} |
  {"identitytoken"}}.
A helper is asked first; when it has nothing for the host, `auths` is used.
Docker Hub's entries are keyed "https://index.docker.io/v1/" (aliases accepted).

Secrets never appear in repr(), logs or error messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Protocol

from oci_cache.oci.errors import CredentialsError
from oci_cache.oci.reference import DOCKER_HUB, DOCKER_HUB_ALIASES

logger = logging.getLogger(__name__)

DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
HELPER_TIMEOUT_SECONDS = 60.0
TOKEN_USERNAME = "<token>"  # a helper's Username meaning "Secret is an identity token"


@dataclass(frozen=True)
class Credentials:
    """A username with a password, or an identity (refresh) token for the token flow."""

    username: str
    password: str = field(default="", repr=False)
    identity_token: Optional[str] = field(default=None, repr=False)
    source: str = "given"  # where they came from, for messages ("config.json auths", ...)

    def __repr__(self) -> str:
        kind = "identity token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {kind}=<redacted>, source={self.source!r})"

    __str__ = __repr__

    def basic_authorization(self) -> str:
        raw = f"{self.username}:{self.password}".encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")


class CredentialSource(Protocol):
    def get(self, registry: str) -> Optional[Credentials]:
        """Credentials for a registry ("ghcr.io", "docker.io", "127.0.0.1:5000"), or None."""
        ...

    def describe(self) -> str:
        """Where credentials are looked for, for error messages."""
        ...


class NoCredentials:
    def get(self, registry: str) -> Optional[Credentials]:
        return None

    def describe(self) -> str:
        return "no credential source"


class StaticCredentials:
    """Fixed credentials per registry (programmatic use)."""

    def __init__(self, by_registry: Mapping[str, Credentials]) -> None:
        self._by_key = {normalize_registry_key(k): v for k, v in by_registry.items()}

    def get(self, registry: str) -> Optional[Credentials]:
        return self._by_key.get(normalize_registry_key(registry))

    def describe(self) -> str:
        return "credentials given by the caller"


def normalize_registry_key(key: str) -> str:
    """ "https://index.docker.io/v1/" → "docker.io"; "http://Host:5000/v2/" → "host:5000"."""
    text = key.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
            break
    text = text.split("/", 1)[0].lower()
    host = text.rsplit(":", 1)[0] if ":" in text and not text.endswith("]") else text
    if host in DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    return text


def server_url_for(registry: str) -> str:
    """What Docker passes to credential helpers for a registry."""
    return DOCKER_HUB_SERVER_URL if normalize_registry_key(registry) == DOCKER_HUB else registry


class DockerConfigCredentials:
    """Reads config.json once (lazily); asks helpers on each `get` (callers cache)."""

    def __init__(self, config_dir: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> None:
        self._environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        if config_dir is None:
            config_dir = self._environ.get("DOCKER_CONFIG") or str(
                Path(self._environ.get("HOME") or str(Path.home())) / ".docker"
            )
        self.config_path = Path(config_dir).expanduser() / "config.json"
        self._config: Optional[Dict[str, Any]] = None

    def describe(self) -> str:
        return f"{self.config_path} (auths, credHelpers, credsStore)"

    def _load(self) -> Dict[str, Any]:
        if self._config is None:
            try:
                text = self.config_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                self._config = {}
                return self._config
            except OSError as e:
                raise CredentialsError(f"cannot read Docker config {self.config_path}: {e.strerror}") from None
            try:
                config = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as e:
                raise CredentialsError(
                    f"cannot parse Docker config {self.config_path}: invalid JSON at line {e.lineno}"
                ) from None
            if not isinstance(config, dict):
                raise CredentialsError(f"cannot parse Docker config {self.config_path}: not a JSON object")
            self._config = config
        return self._config

    def get(self, registry: str) -> Optional[Credentials]:
        config = self._load()
        wanted = normalize_registry_key(registry)
        helper = _lookup(config.get("credHelpers"), wanted)
        helper_origin = "credHelpers"
        if not isinstance(helper, str) or not helper:
            helper = config.get("credsStore") if isinstance(config.get("credsStore"), str) else None
            helper_origin = "credsStore"
        if helper:
            found = self._from_helper(helper, helper_origin, registry)
            if found is not None:
                return found
        entry = _lookup(config.get("auths"), wanted)
        if isinstance(entry, dict):
            return self._from_auths_entry(entry)
        return None

    def _from_auths_entry(self, entry: Dict[str, Any]) -> Optional[Credentials]:
        source = f"{self.config_path} auths"
        identity_token = entry.get("identitytoken") or None
        username = entry.get("username") or ""
        password = entry.get("password") or ""
        encoded = entry.get("auth")
        if encoded:
            try:
                decoded = base64.b64decode(str(encoded), validate=False).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise CredentialsError(
                    f"the 'auth' value in {source} is not base64 of 'user:password'; run `docker login` again"
                ) from None
            if ":" not in decoded:
                raise CredentialsError(f"the 'auth' value in {source} is not base64 of 'user:password'")
            username, password = decoded.split(":", 1)
        if identity_token:
            return Credentials(username=username or TOKEN_USERNAME, identity_token=identity_token, source=source)
        if username or password:
            return Credentials(username=username, password=password, source=source)
        return None

    def _from_helper(self, helper: str, origin: str, registry: str) -> Optional[Credentials]:
        program = f"docker-credential-{helper}"
        path = shutil.which(program, path=self._environ.get("PATH"))
        source = f"credential helper {program} ({self.config_path} {origin})"
        if path is None:
            logger.warning("%s is not on PATH; looking in config.json auths instead", program)
            return None
        try:
            result = subprocess.run(
                [path, "get"],
                input=server_url_for(registry).encode("utf-8"),
                capture_output=True,
                env=dict(self._environ),
                timeout=HELPER_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CredentialsError(f"{source} failed to run: {type(e).__name__}") from None
        if result.returncode != 0:
            message = (result.stdout or result.stderr).decode("utf-8", "replace").strip()
            if "credentials not found" in message.lower():
                return None
            first_line = message.splitlines()[0][:200] if message else f"exit status {result.returncode}"
            raise CredentialsError(f"{source} failed for {registry}: {first_line}")
        try:
            answer = json.loads(result.stdout.decode("utf-8"))
            username = str(answer.get("Username") or "")
            secret = str(answer.get("Secret") or "")
        except (ValueError, AttributeError, UnicodeDecodeError):
            raise CredentialsError(f"{source} printed something that is not the JSON credentials answer") from None
        if not secret:
            return None
        if username == TOKEN_USERNAME:
            return Credentials(username=username, identity_token=secret, source=source)
        return Credentials(username=username, password=secret, source=source)


def _lookup(section: Any, wanted: str) -> Any:
    if not isinstance(section, dict):
        return None
    for key, value in section.items():
        if isinstance(key, str) and normalize_registry_key(key) == wanted:
            return value
    return None
