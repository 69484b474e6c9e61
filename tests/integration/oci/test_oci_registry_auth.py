"""Authentication against real registries: htpasswd Basic and Bearer tokens from a JWT issuer."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import Dict

import pytest
from oci_fixtures import FAST_RETRY, client_for, random_blob
from registry_fixtures import RegistryServer, TokenIssuer, write_docker_config

from oci_cache.oci import open_target
from oci_cache.oci.credentials import Credentials, StaticCredentials
from oci_cache.oci.errors import RegistryDeniedError, RegistryUnauthorizedError
from oci_cache.oci.media_types import OCI_MANIFEST
from oci_cache.oci.target import PushOutcome

pytestmark = pytest.mark.registry


def _creds(server: RegistryServer, user: str = "", password: str = "") -> StaticCredentials:
    return StaticCredentials(
        {server.host: Credentials(user or server.username or "", password or server.password or "")}
    )


def _helper_environ(tmp_path: Path, host: str, user: str, secret: str) -> Dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-test"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        f'if [ "$server" = "{host}" ]; then echo \'{{"Username":"{user}","Secret":"{secret}"}}\'; '
        "else echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}


# ------------------------------------------------------------------------------ Basic


def test_basic_auth_with_docker_config_auths(registry_basic: RegistryServer, unique_repo: str, tmp_path: Path) -> None:
    assert registry_basic.username and registry_basic.password
    config = write_docker_config(
        tmp_path / "docker", auths={registry_basic.host: (registry_basic.username, registry_basic.password)}
    )
    target = open_target(
        "registry", f"{registry_basic.host}/{unique_repo}:x", docker_config_dir=str(config), retry=FAST_RETRY
    )
    digest, data = random_blob(1000)
    assert target.push_blob(digest, data) is PushOutcome.UPLOADED
    assert target.read_blob(digest) == data
    assert registry_basic.password not in target.describe() and registry_basic.password not in repr(target)


def test_basic_auth_with_a_credential_helper(registry_basic: RegistryServer, unique_repo: str, tmp_path: Path) -> None:
    assert registry_basic.username and registry_basic.password
    config = write_docker_config(tmp_path / "docker", cred_helpers={registry_basic.host: "test"})
    environ = _helper_environ(tmp_path, registry_basic.host, registry_basic.username, registry_basic.password)
    environ["DOCKER_CONFIG"] = str(config)
    target = open_target("registry", f"{registry_basic.host}/{unique_repo}", environ=environ, retry=FAST_RETRY)
    digest, data = random_blob(10)
    assert target.push_blob(digest, data) is PushOutcome.UPLOADED


def test_basic_auth_without_credentials_says_how_to_log_in(
    registry_basic: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    target = open_target(
        "registry", f"{registry_basic.host}/{unique_repo}", docker_config_dir=str(tmp_path), retry=FAST_RETRY
    )
    with pytest.raises(RegistryUnauthorizedError, match=f"docker login {registry_basic.host}") as info:
        target.blob_exists(random_blob(1)[0])
    assert str(tmp_path) in str(info.value)


def test_wrong_password_is_a_clear_error_without_the_password(registry_basic: RegistryServer, unique_repo: str) -> None:
    wrong = "wr0ng-Passw0rd-do-not-print"
    client = client_for(registry_basic.host, credentials=_creds(registry_basic, password=wrong))
    with pytest.raises(RegistryUnauthorizedError) as info:
        client.push_blob(unique_repo, *random_blob(10))
    message = str(info.value)
    assert "rejected the credentials of 'alice'" in message and "docker login" in message
    assert wrong not in message and wrong not in repr(info.value) and wrong not in repr(client)
    assert info.value.status == 401


# ------------------------------------------------------------------------------ Bearer tokens


def test_token_flow_push_and_pull(registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str) -> None:
    client = client_for(registry_token.host, credentials=_creds(registry_token))
    digest, data = random_blob(2000)
    assert client.push_blob(unique_repo, digest, data) is PushOutcome.UPLOADED
    assert client.read_blob(unique_repo, digest) == data  # the push token covers pull: no new token
    assert token_issuer.scopes_requested() == [f"repository:{unique_repo}:pull,push"]
    assert [r.user for r in token_issuer.requests] == ["alice"]


def test_pull_token_is_escalated_for_a_push(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str
) -> None:
    client = client_for(registry_token.host, credentials=_creds(registry_token))
    digest, data = random_blob(100)
    assert client.blob_exists(unique_repo, digest) is None
    assert client.push_blob(unique_repo, digest, data) is PushOutcome.UPLOADED
    manifest_digest = client.put_manifest(unique_repo, "v1", OCI_MANIFEST, _tiny_manifest(client, unique_repo))
    assert client.head_manifest(unique_repo, "v1") == manifest_digest
    assert token_issuer.scopes_requested() == [f"repository:{unique_repo}:pull", f"repository:{unique_repo}:pull,push"]


def test_token_renewed_when_it_expires(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str
) -> None:
    token_issuer.expires_in = 1  # the client must renew after ~0.8 s, although the JWT itself lives longer
    client = client_for(registry_token.host, credentials=_creds(registry_token))
    digest, data = random_blob(100)
    client.push_blob(unique_repo, digest, data)
    client.read_blob(unique_repo, digest)
    assert len(token_issuer.requests) == 1
    time.sleep(1.1)
    assert client.read_blob(unique_repo, digest) == data
    assert len(token_issuer.requests) == 2


def test_token_renewed_when_the_registry_rejects_it(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str
) -> None:
    token_issuer.stale_tokens = 1  # claims 300 s, but the registry sees it as expired: 401 → renew → retry
    client = client_for(registry_token.host, credentials=_creds(registry_token))
    digest, data = random_blob(100)
    assert client.push_blob(unique_repo, digest, data) is PushOutcome.UPLOADED
    assert len(token_issuer.requests) == 2
    assert client.read_blob(unique_repo, digest) == data
    assert len(token_issuer.requests) == 2


def test_identity_token_uses_the_refresh_grant(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str, tmp_path: Path
) -> None:
    identity = next(iter(token_issuer.identity_tokens))
    config = write_docker_config(tmp_path / "docker", identity_tokens={registry_token.host: identity})
    client = client_for(registry_token.host, credentials=None, docker_config_dir=str(config))
    assert client.push_blob(unique_repo, *random_blob(10)) is PushOutcome.UPLOADED
    assert [(r.method, r.user) for r in token_issuer.requests] == [("POST", "alice")]


def test_mount_and_delete_ask_for_their_scopes(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str
) -> None:
    client = client_for(registry_token.host, credentials=_creds(registry_token))
    digest, data = random_blob(100)
    client.push_blob(unique_repo + "-a", digest, data)
    assert client.push_blob(unique_repo + "-b", digest, data, mount_from=unique_repo + "-a") is PushOutcome.MOUNTED
    manifest_digest = client.put_manifest(
        unique_repo + "-b", "t", OCI_MANIFEST, _tiny_manifest(client, unique_repo + "-b")
    )
    assert client.delete_manifest(unique_repo + "-b", manifest_digest) is True
    requested = token_issuer.scopes_requested()
    assert f"repository:{unique_repo}-a:pull" in requested  # mount source, next to the target's push scope
    assert f"repository:{unique_repo}-b:delete" in requested


def test_anonymous_access_refused_says_how_to_log_in(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str
) -> None:
    client = client_for(registry_token.host)
    with pytest.raises(RegistryUnauthorizedError, match="docker login"):
        client.blob_exists(unique_repo, random_blob(1)[0])


def test_anonymous_pull_allowed_but_push_needs_login(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str
) -> None:
    token_issuer.anonymous_actions = {"pull"}
    client = client_for(registry_token.host)
    assert client.blob_exists(unique_repo, random_blob(1)[0]) is None
    with pytest.raises(RegistryUnauthorizedError, match="does not allow anonymous"):
        client.push_blob(unique_repo, *random_blob(10))


def test_account_without_push_permission_is_denied(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str
) -> None:
    token_issuer.allowed_actions = {"reader": {"pull"}}
    client = client_for(registry_token.host, credentials=_creds(registry_token, "reader", token_issuer.users["reader"]))
    with pytest.raises(RegistryDeniedError, match="'reader'.*lacks that access"):
        client.push_blob(unique_repo, *random_blob(10))


def test_token_server_rejects_a_wrong_password(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str
) -> None:
    wrong = "n0t-the-Password"
    client = client_for(registry_token.host, credentials=_creds(registry_token, password=wrong))
    with pytest.raises(RegistryUnauthorizedError, match="rejected the credentials of 'alice'") as info:
        client.blob_exists(unique_repo, random_blob(1)[0])
    assert wrong not in str(info.value)


def _tiny_manifest(client: object, repository: str) -> bytes:
    import json

    from oci_cache.oci.content import sha256_digest

    client.push_blob(repository, sha256_digest(b"{}"), b"{}")  # type: ignore[attr-defined]
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2},
            "layers": [],
        }
    ).encode()


def test_no_secret_reaches_the_logs(
    registry_token: RegistryServer, token_issuer: TokenIssuer, unique_repo: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_issuer.stale_tokens = 1  # also exercise the 401 → renew path
    client = client_for(registry_token.host, credentials=_creds(registry_token))
    digest, data = random_blob(100)
    client.push_blob(unique_repo, digest, data)
    client.read_blob(unique_repo, digest)
    assert caplog.records, "expected debug logs"
    secrets = [registry_token.password or "x", *token_issuer.issued_tokens]
    assert len(secrets) == 3
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in repr(client) and secret not in client.describe()
