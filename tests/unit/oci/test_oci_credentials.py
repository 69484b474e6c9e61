from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Dict

import pytest

from oci_cache.oci.credentials import Credentials, DockerConfigCredentials, normalize_registry_key
from oci_cache.oci.errors import CredentialsError

HELPER = """#!/bin/sh
# A fake docker-credential-* helper: `get` reads the server URL on stdin.
read server
echo "$server" >> "$(dirname "$0")/asked.log"
case "$server" in
  helped.example:5000) echo '{"ServerURL":"helped.example:5000","Username":"helper-user","Secret":"helper-secret"}' ;;
  token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"refresh-123"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubber","Secret":"hub-pw"}' ;;
  broken.example) echo 'helper exploded: backend unreachable' >&2; exit 1 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"""


def _write_config(directory: Path, config: Dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def _auth(user: str, password: str) -> Dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def helper_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-test"
    script.write_text(HELPER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def _environ(bin_dir: Path, config_dir: Path) -> Dict[str, str]:
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DOCKER_CONFIG": str(config_dir),
        "HOME": str(config_dir.parent),
    }


def test_auths_entries_with_key_normalisation(tmp_path: Path) -> None:
    config_dir = _write_config(
        tmp_path / "docker",
        {
            "auths": {
                "https://index.docker.io/v1/": _auth("hubuser", "hubpw"),
                "http://127.0.0.1:5000/v2/": _auth("local", "pa:ss:word"),
                "ghcr.io": {"username": "gh", "password": "ghpw"},
                "idp.example": {"identitytoken": "idtok"},
            }
        },
    )
    source = DockerConfigCredentials(environ={"DOCKER_CONFIG": str(config_dir), "PATH": ""})
    hub = source.get("docker.io")
    assert hub is not None and (hub.username, hub.password) == ("hubuser", "hubpw")
    local = source.get("127.0.0.1:5000")
    assert local is not None and (local.username, local.password) == ("local", "pa:ss:word")
    gh = source.get("ghcr.io")
    assert gh is not None and gh.password == "ghpw"
    idp = source.get("idp.example")
    assert idp is not None and idp.identity_token == "idtok"
    assert source.get("other.example") is None


def test_default_location_is_home_docker(tmp_path: Path) -> None:
    _write_config(tmp_path / ".docker", {"auths": {"r.example": _auth("u", "p")}})
    source = DockerConfigCredentials(environ={"HOME": str(tmp_path), "PATH": ""})
    assert source.config_path == tmp_path / ".docker" / "config.json"
    assert source.get("r.example") is not None


def test_missing_config_means_anonymous(tmp_path: Path) -> None:
    assert DockerConfigCredentials(str(tmp_path / "nope")).get("ghcr.io") is None


def test_cred_helpers_then_creds_store_then_auths(tmp_path: Path, helper_bin: Path) -> None:
    config_dir = _write_config(
        tmp_path / "docker",
        {
            "credHelpers": {"helped.example:5000": "test", "token.example": "test"},
            "credsStore": "test",
            "auths": {"fallback.example": _auth("file-user", "file-pw")},
        },
    )
    source = DockerConfigCredentials(environ=_environ(helper_bin, config_dir))
    helped = source.get("helped.example:5000")
    assert helped is not None and (helped.username, helped.password) == ("helper-user", "helper-secret")
    assert "docker-credential-test" in helped.source
    token = source.get("token.example")
    assert token is not None and token.identity_token == "refresh-123"
    hub = source.get("docker.io")  # via credsStore, asked with Docker Hub's server URL
    assert hub is not None and hub.username == "hubber"
    fallback = source.get("fallback.example")  # helper: not found → auths
    assert fallback is not None and fallback.username == "file-user"
    asked = (helper_bin / "asked.log").read_text().split()
    assert asked == ["helped.example:5000", "token.example", "https://index.docker.io/v1/", "fallback.example"]


def test_failing_helper_is_a_clear_error(tmp_path: Path, helper_bin: Path) -> None:
    config_dir = _write_config(tmp_path / "docker", {"credHelpers": {"broken.example": "test"}})
    with pytest.raises(CredentialsError, match="docker-credential-test .*failed for broken.example: helper exploded"):
        DockerConfigCredentials(environ=_environ(helper_bin, config_dir)).get("broken.example")


def test_missing_helper_falls_back_to_auths(tmp_path: Path) -> None:
    config_dir = _write_config(tmp_path / "docker", {"credsStore": "absent", "auths": {"r.example": _auth("u", "p")}})
    found = DockerConfigCredentials(environ={"DOCKER_CONFIG": str(config_dir), "PATH": str(tmp_path)}).get("r.example")
    assert found is not None and found.username == "u"


def test_bad_config_messages_hide_secrets(tmp_path: Path) -> None:
    config_dir = _write_config(tmp_path / "bad-auth", {"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}})  # "nocolon"
    with pytest.raises(CredentialsError) as info:
        DockerConfigCredentials(str(config_dir)).get("r.example")
    assert "nocolon" not in str(info.value) and "bm9jb2xvbg" not in str(info.value)
    (tmp_path / "bad-json").mkdir()
    (tmp_path / "bad-json" / "config.json").write_text('{"auths": ')
    with pytest.raises(CredentialsError, match="invalid JSON"):
        DockerConfigCredentials(str(tmp_path / "bad-json")).get("r.example")


def test_repr_never_shows_secrets() -> None:
    creds = Credentials("bob", "hunter2-password")
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds) and "bob" in repr(creds)
    token = Credentials("<token>", identity_token="very-secret-refresh")
    assert "very-secret" not in repr(token)
    assert creds.basic_authorization() == "Basic " + base64.b64encode(b"bob:hunter2-password").decode()


@pytest.mark.parametrize(
    "key, normal",
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("HTTPS://GHCR.IO", "ghcr.io"),
        ("http://localhost:5000/v2/", "localhost:5000"),
    ],
)
def test_normalize_registry_key(key: str, normal: str) -> None:
    assert normalize_registry_key(key) == normal
