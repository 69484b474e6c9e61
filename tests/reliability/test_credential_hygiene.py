"""Registry credentials never leak, and TLS is verified by default (issue 5, item 5b).

Real `oci-cache` processes (serve at debug level, export, inspect, inspect --json,
status) use credentials from a Docker config.json `auths` entry against real
docker-registry servers: htpasswd Basic auth, and Bearer tokens from a JWT issuer.
Afterwards every byte they produced is searched for the secrets — the password, the
`auths` entry (base64 of user:password), every bearer token the issuer handed out, and
their base64 forms at every alignment:
- the serve log (debug level) and each command's stdout/stderr,
- every file under the state directory (daemon.json, the store, journals, ...),
- every file in the registry's storage directory (blobs, manifests, upload state) and in
  an OCI layout export,
- the messages of failed pushes and pulls (401 wrong password, 403 no push permission).
TLS: a registry whose certificate is signed by a CA nobody configured is refused with a
message saying how to trust it (no fallback to plain HTTP or to unverified TLS; nothing
reaches the registry); with SSL_CERT_FILE naming the CA the same commands work.

(Library-level checks exist in tests/integration/oci/test_oci_registry_auth.py and
test_oci_registry_transport.py; tests/reliability/test_server_security.py covers the
daemon's own bearer token.)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import pytest

from cache_image_builder import SyntheticAction, synthetic_actions
from reapi_client import ReapiClient
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from registry_fixtures import (  # noqa: F401 (fixtures)
    RegistryServer,
    TokenIssuer,
    registry_basic,
    registry_tls,
    registry_token,
    session_token_issuer,
    tls_material,
    token_issuer,
    write_docker_config,
)
from server_fixtures import ServerProcess, start_server

pytestmark = pytest.mark.registry

COMMAND_TIMEOUT = 120


# ----------------------------------------------------------------------------- secrets


def base64_forms(secret: bytes) -> List[bytes]:
    """The secret's base64 (standard and URL-safe) as it appears inside ANY base64 text
    that contains it, whatever its alignment: the part of the encoding that does not
    depend on the bytes around the secret."""
    forms = []
    for prefix in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(bytes(prefix) + secret)
            stable = encoded[4 if prefix else 0 : ((prefix + len(secret)) // 3) * 4]
            if len(stable) >= 8:
                forms.append(stable)
    return forms


class Secrets:
    """Named secrets and every form of them that a leak could take."""

    def __init__(self) -> None:
        self._forms: Dict[bytes, str] = {}

    def add(self, name: str, secret: str) -> None:
        raw = secret.encode()
        self._forms[raw] = name
        for form in base64_forms(raw):
            self._forms[form] = f"{name} (base64)"

    def add_auth(self, name: str, user: str, password: str) -> None:
        """A config.json `auths` entry: base64(user:password) and the password itself."""
        self.add(name, password)
        self._forms[base64.b64encode(f"{user}:{password}".encode())] = f"{name} (the auths entry)"

    def add_token(self, name: str, token: str) -> None:
        self.add(name, token)
        signature = token.rsplit(".", 1)[-1]
        if len(signature) >= 16:
            self._forms[signature.encode()] = f"{name} (its signature)"

    def __len__(self) -> int:
        return len(self._forms)

    def found_in(self, data: bytes) -> List[str]:
        return sorted({name for form, name in self._forms.items() if form in data})


def test_the_search_finds_a_secret_in_every_form_it_could_leak_in() -> None:
    """The positive control of the searches below: plain, inside any base64 text at any
    alignment (standard and URL-safe), as a docker `auths` entry, a token's signature."""
    secrets = Secrets()
    secrets.add_auth("password", "alice", "pa55-word-0123456789")
    secrets.add_token("token", "header.payload.c2lnbmF0dXJlLW9mLWEtand0LXRva2Vu")
    assert secrets.found_in(b'...{"password":"pa55-word-0123456789"}...') == ["password"]
    for prefix in (b"", b"x", b"xy", b"Authorization: Basic "):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            assert secrets.found_in(encode(prefix + b"pa55-word-0123456789" + b"tail")), (prefix, encode)
    assert secrets.found_in(base64.b64encode(b"alice:pa55-word-0123456789"))
    assert secrets.found_in(b"Bearer c2lnbmF0dXJlLW9mLWEtand0LXRva2Vu") == ["token (its signature)"]
    assert secrets.found_in(b"pa55-word-012345678 header.payload") == []


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    yield path


def leaks(secrets: Secrets, roots: Iterable[Path], texts: Dict[str, str]) -> Tuple[List[str], int, int]:
    """(what was found where, files searched, bytes searched)."""
    found = []
    files = 0
    total = 0
    for path in files_under(*roots):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        files += 1
        total += len(data)
        for name in secrets.found_in(data):
            found.append(f"{name} in {path}")
    for label, text in texts.items():
        total += len(text)
        for name in secrets.found_in(text.encode()):
            found.append(f"{name} in {label}")
    return found, files, total


# ----------------------------------------------------------------------------- commands


def oci_cache(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "oci_cache.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def command_env(docker_config: Optional[Path], ca_file: Optional[str] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "DOCKER_CONFIG")}
    if docker_config is not None:
        env["DOCKER_CONFIG"] = str(docker_config)
    if ca_file is not None:
        env["SSL_CERT_FILE"] = ca_file
    return env


def _upload(server: ServerProcess, actions: List[SyntheticAction]) -> None:
    channel = server.channel()
    client = ReapiClient(channel)
    stub = re_grpc.ActionCacheStub(channel)
    for action in actions:
        client.upload_blobs({(d.hash, d.size_bytes): data for d, data in action.outputs})
        stub.UpdateActionResult(
            re_pb2.UpdateActionResultRequest(
                action_digest=action.action.to_proto(), action_result=re_pb2.ActionResult.FromString(action.result)
            ),
            timeout=30,
        )


def _wait_for(server: ServerProcess, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.is_running():
        if text in server.log_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log:\n{server.log_text()[-3000:]}")


def serve_with_env(state_dir: Path, env: Dict[str, str], *args: str) -> ServerProcess:
    """start_server, with `env` as the server's environment (it inherits os.environ)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return start_server(state_dir, "--log-level", "debug", *args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ----------------------------------------------------------------------------- the round trip


def _round_trip(registry: RegistryServer, docker_config: Path, tmp_path: Path, repo: str) -> Tuple[List[Path], Dict[str, str]]:
    """serve (debug log) → uploads → status → export (daemon) → stop (exports again) →
    a second serve importing it → inspect, inspect --json. Returns the places to search."""
    env = command_env(docker_config)
    ref = f"{registry.host}/{repo}:cache"
    layout = tmp_path / "layout-export"
    state = tmp_path / "state"
    texts: Dict[str, str] = {}
    server = serve_with_env(
        state,
        env,
        "--cache-from",
        ref,
        "--cache-to",
        f"type=registry,ref={ref},mode=max",
        "--cache-to",
        f"type=local,dest={layout},tag=cache",
        "--control-http",
    )
    actions = synthetic_actions(3, seed=len(repo) * 31 + ord(repo[-1]), outputs_per_action=2)
    try:
        _upload(server, actions)
        for flags in ((), ("--json",)):
            status = oci_cache("status", "--state-dir", str(state), *flags, env=env)
            assert status.returncode == 0, status.stderr
            texts[f"status {' '.join(flags)} stdout"] = status.stdout
            texts[f"status {' '.join(flags)} stderr"] = status.stderr
        export = oci_cache("export", "--state-dir", str(state), "--json", env=env)
        texts["export stdout"], texts["export stderr"] = export.stdout, export.stderr
        assert export.returncode == 0, export.stdout + export.stderr
    finally:
        assert server.stop() == 0
    texts["serve log (writer)"] = server.log_text()

    reader = serve_with_env(tmp_path / "reader-state", env, "--cache-from", ref)
    try:
        _wait_for(reader, "imported")
        assert _get_result(reader, actions[0]) is not None  # the credentials did work
    finally:
        reader.stop()
    texts["serve log (reader)"] = reader.log_text()

    for flags in ((), ("--json",), ("--all-layers",)):
        shown = oci_cache("inspect", ref, *flags, env=env)
        assert shown.returncode == 0, shown.stderr
        texts[f"inspect {' '.join(flags)} stdout"] = shown.stdout
        texts[f"inspect {' '.join(flags)} stderr"] = shown.stderr
    assert json.loads(texts["inspect --json stdout"])["entries"]["actions"] == len(actions)
    return [state, tmp_path / "reader-state", layout, registry.root], texts


def _get_result(server: ServerProcess, action: SyntheticAction) -> Optional[re_pb2.ActionResult]:
    import grpc

    try:
        return re_grpc.ActionCacheStub(server.channel()).GetActionResult(
            re_pb2.GetActionResultRequest(action_digest=action.action.to_proto()), timeout=30
        )
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
        return None


def _assert_clean(secrets: Secrets, roots: List[Path], texts: Dict[str, str]) -> None:
    found, files, total = leaks(secrets, roots, texts)
    assert found == [], found
    assert files > 20 and total > 10_000, (files, total)  # the search did look at something
    print(json.dumps({"secret_forms": len(secrets), "files": files, "bytes": total, "texts": sorted(texts)}))


def test_basic_auth_password_never_leaks(registry_basic: RegistryServer, tmp_path: Path) -> None:
    user, password = registry_basic.username or "", registry_basic.password or ""
    docker_config = write_docker_config(tmp_path / "docker", auths={registry_basic.host: (user, password)})
    roots, texts = _round_trip(registry_basic, docker_config, tmp_path, "hygiene/basic")
    secrets = Secrets()
    secrets.add_auth("the htpasswd password", user, password)
    # The positive control: the search does find the secret where it is by design.
    assert secrets.found_in((docker_config / "config.json").read_bytes())
    assert " DEBUG oci_cache.oci.transport.redirects: " in texts["serve log (writer)"]  # every request, at debug level
    _assert_clean(secrets, roots, texts)


@pytest.mark.parametrize("login", ["password", "identitytoken"])
def test_bearer_tokens_and_the_token_password_never_leak(
    registry_token: RegistryServer, token_issuer: TokenIssuer, tmp_path: Path, login: str
) -> None:
    token_issuer.stale_tokens = 1  # one rejected token: the renewal path logs too
    user, password = registry_token.username or "", registry_token.password or ""
    secrets = Secrets()
    if login == "password":
        docker_config = write_docker_config(tmp_path / "docker", auths={registry_token.host: (user, password)})
        secrets.add_auth("the token server password", user, password)
    else:  # `docker login` to an OAuth2 registry stores a refresh token, not a password
        identity = next(iter(token_issuer.identity_tokens))
        docker_config = write_docker_config(tmp_path / "docker", identity_tokens={registry_token.host: identity})
        secrets.add("the identity (refresh) token", identity)
    assert secrets.found_in((docker_config / "config.json").read_bytes())
    roots, texts = _round_trip(registry_token, docker_config, tmp_path, f"hygiene/token-{login}")
    if login == "identitytoken":
        assert any(request.method == "POST" for request in token_issuer.requests)  # the refresh grant was used
    tokens = list(token_issuer.issued_tokens)
    assert len(tokens) >= 3, "expected the processes to have been given bearer tokens"
    for number, token in enumerate(tokens):
        secrets.add_token(f"bearer token #{number}", token)
    _assert_clean(secrets, roots, texts)


# ----------------------------------------------------------------------------- failures


def test_failed_pulls_and_pushes_name_the_problem_not_the_secret(
    registry_basic: RegistryServer, registry_token: RegistryServer, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    """401 (a wrong password, Basic), 403 (a token account allowed to pull only): serve at
    debug level, its export at shutdown, `export` and `inspect` fail, clearly, and
    secret-free."""
    wrong = "wr0ng-" + os.urandom(6).hex()
    reader_password = token_issuer.users["reader"]
    token_issuer.allowed_actions = {"reader": {"pull"}}
    docker_config = write_docker_config(
        tmp_path / "docker",
        auths={registry_basic.host: (registry_basic.username or "", wrong), registry_token.host: ("reader", reader_password)},
    )
    env = command_env(docker_config)
    basic_ref = f"{registry_basic.host}/hygiene/denied:cache"
    token_ref = f"{registry_token.host}/hygiene/denied:cache"
    state = tmp_path / "state"
    server = serve_with_env(
        state, env, "--cache-from", basic_ref, "--cache-to", f"type=registry,ref={basic_ref}", "--cache-to", f"type=registry,ref={token_ref}"
    )
    _upload(server, synthetic_actions(1, seed=77))
    server.stop()
    log = server.log_text()
    texts = {"serve log": log}
    assert "rejected the credentials" in log or "401" in log, log[-3000:]
    assert "denied" in log.lower() or "403" in log, log[-3000:]
    for ref in (basic_ref, token_ref):
        export = oci_cache("export", "--state-dir", str(state), "--cache-to", f"type=registry,ref={ref}", env=env)
        assert export.returncode != 0
        texts[f"export to {ref}"] = export.stdout + export.stderr
        shown = oci_cache("inspect", ref, "--json", env=env)
        texts[f"inspect {ref}"] = shown.stdout + shown.stderr
    assert "rejected the credentials" in texts[f"export to {basic_ref}"] or "401" in texts[f"export to {basic_ref}"]
    assert "denied" in texts[f"export to {token_ref}"].lower() or "403" in texts[f"export to {token_ref}"]
    secrets = Secrets()
    secrets.add_auth("the wrong Basic password", registry_basic.username or "", wrong)
    secrets.add_auth("the pull-only account's password", "reader", reader_password)
    for number, token in enumerate(token_issuer.issued_tokens):
        secrets.add_token(f"bearer token #{number}", token)
    found, _, _ = leaks(secrets, [state], texts)
    assert found == [], found
    for label, text in texts.items():  # the messages, for docs/reliability.md (pytest -s)
        print(label, "->", [line for line in text.splitlines() if "401" in line or "403" in line or "denied" in line or "rejected" in line][:2])


# ----------------------------------------------------------------------------- TLS


def test_tls_is_verified_by_default_and_ssl_cert_file_trusts_a_ca(registry_tls: RegistryServer, tmp_path: Path) -> None:
    ref = f"{registry_tls.host}/hygiene/tls:cache"
    untrusted = command_env(None)
    trusted = command_env(None, ca_file=registry_tls.ca_bundle)
    state = tmp_path / "state"

    server = serve_with_env(state, untrusted, "--cache-from", ref, "--cache-to", f"type=registry,ref={ref}")
    _upload(server, synthetic_actions(2, seed=88))
    server.stop()
    log = server.log_text()
    assert "not trusted" in log and "SSL_CERT_FILE" in log, log[-3000:]
    export = oci_cache("export", "--state-dir", str(state), "--cache-to", f"type=registry,ref={ref}", env=untrusted)
    assert export.returncode != 0 and "not trusted" in export.stdout + export.stderr, export.stdout + export.stderr
    inspect = oci_cache("inspect", ref, env=untrusted)
    assert inspect.returncode != 0 and "not trusted" in inspect.stdout + inspect.stderr
    # Nothing reached the registry: no fallback to plain HTTP or to unverified TLS.
    assert not (Path(registry_tls.root) / "docker/registry/v2/repositories/hygiene/tls").exists()

    export = oci_cache("export", "--state-dir", str(state), "--cache-to", f"type=registry,ref={ref}", env=trusted)
    assert export.returncode == 0, export.stdout + export.stderr
    inspect = oci_cache("inspect", ref, "--json", env=trusted)
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["entries"]["actions"] == 2, inspect.stderr
    reader = serve_with_env(tmp_path / "reader", trusted, "--cache-from", ref)
    try:
        _wait_for(reader, "imported")
    finally:
        reader.stop()
