"""Real registries on 127.0.0.1 for tests: a pytest plugin module.

Starts Debian's `docker-registry serve CONFIG` (CNCF distribution 2.8) on a free
port, storage in a temporary directory, deletes enabled, stopped by PID:

    registry_plain   plain HTTP, no auth
    registry_basic   htpasswd Basic auth (user/password on the object)
    registry_tls     HTTPS with a throwaway CA (`ca_bundle` on the object), no auth
    registry_token   Bearer token auth; `token_issuer` is a small JWT issuer
                     (RS256 signed with the `openssl` CLI) that checks Basic
                     credentials and grants the requested scopes

All four are session-scoped (they start in ~0.1-0.3 s each); use `unique_repo`
for a repository name no other test touches. `token_issuer` resets the issuer's
knobs and counters for each test. Helpers (`start_registry`, `TokenIssuer`,
`FaultProxy`, `StaticFileServer`, `write_docker_config`, `make_tls_material`) are
importable for tests that need their own variant.

Use it from a conftest.py:  `from registry_fixtures import *  # noqa: F401,F403`
(with tests/ on sys.path), or `pytest_plugins = ["registry_fixtures"]` in the root
conftest.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import parse_qsl, urlsplit

import pytest
from fault_proxy import RegistryFaultProxy, answer, answer_error, read_request_body

REGISTRY_BINARY = "docker-registry"
SERVICE = "test-registry"
ISSUER = "test-token-issuer"


# --------------------------------------------------------------------------- basics


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_http(
    host: str, port: int, use_tls: bool, process: Optional[subprocess.Popen], timeout: float = 15.0
) -> None:
    """Until GET /v2/ answers with any HTTP status."""
    import ssl

    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} during start-up")
        try:
            if use_tls:
                context = ssl._create_unverified_context()
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=1, context=context)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=1)
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing answered on {host}:{port} within {timeout:.0f}s")
            time.sleep(0.02)


def _stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


# --------------------------------------------------------------------------- credentials material


def bcrypt_hash(password: str, cost: int = 5) -> str:
    """A bcrypt hash for htpasswd files: `htpasswd -nbB` if installed, else libcrypt."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        out = subprocess.run(
            [htpasswd, "-nbB", "-C", str(cost), "user", password], capture_output=True, check=True
        ).stdout.decode()
        return out.strip().split(":", 1)[1]
    library = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    libcrypt = ctypes.CDLL(library)
    libcrypt.crypt_gensalt.restype = ctypes.c_char_p
    libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    libcrypt.crypt.restype = ctypes.c_char_p
    libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    setting = libcrypt.crypt_gensalt(b"$2b$", cost, None, 0)
    if not setting:
        raise RuntimeError("libcrypt cannot make bcrypt salts; install apache2-utils (htpasswd)")
    hashed = libcrypt.crypt(password.encode(), setting)
    if not hashed or not hashed.startswith(b"$2"):
        raise RuntimeError("libcrypt cannot hash bcrypt; install apache2-utils (htpasswd)")
    return hashed.decode()


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, check=True)


def make_tls_material(directory: Path) -> TlsMaterial:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pants-oci-cache test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=directory,
    )
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        cwd=directory,
    )
    return TlsMaterial(directory / "ca.pem", directory / "server.pem", directory / "server.key")


def write_docker_config(
    directory: Path,
    auths: Optional[Dict[str, Tuple[str, str]]] = None,
    cred_helpers: Optional[Dict[str, str]] = None,
    creds_store: Optional[str] = None,
    identity_tokens: Optional[Dict[str, str]] = None,
) -> Path:
    """Writes DIR/config.json the way `docker login` does; returns DIR (for DOCKER_CONFIG)."""
    directory.mkdir(parents=True, exist_ok=True)
    config: Dict[str, Any] = {"auths": {}}
    for host, (user, password) in (auths or {}).items():
        config["auths"][host] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    for host, token in (identity_tokens or {}).items():
        config["auths"].setdefault(host, {})["identitytoken"] = token
    if cred_helpers:
        config["credHelpers"] = cred_helpers
    if creds_store:
        config["credsStore"] = creds_store
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory


# --------------------------------------------------------------------------- token issuer


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    user: Optional[str]
    scopes: List[str]
    method: str


class TokenIssuer:
    """A token server for distribution's `auth.token`: checks Basic credentials (or an OAuth2
    refresh-token grant) and grants the requested scopes, filtered by `allowed_actions`.

    Knobs (reset per test by the `token_issuer` fixture):
      expires_in          what the answer claims (seconds)
      jwt_lifetime        the JWT's real `exp` (seconds from now)
      stale_tokens        the next N tokens are already expired for the registry (exp 2 min
                          ago, past its 60 s leeway) while claiming `expires_in`
      allowed_actions     {user: {"pull", ...}}; users not listed get every action requested
      anonymous_actions   actions granted without credentials
    """

    def __init__(self, directory: Path, users: Dict[str, str], identity_tokens: Optional[Dict[str, str]] = None):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "signing.key",
            "-out",
            "signing.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test token signer",
            cwd=directory,
        )
        self.cert_path = directory / "signing.pem"
        self.key_path = directory / "signing.key"
        pem = self.cert_path.read_text()
        self._x5c = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
        self.users = dict(users)
        self.identity_tokens = dict(identity_tokens or {})  # token -> user
        self.requests: List[TokenRequest] = []
        self._lock = threading.Lock()
        self.reset()
        self.port = free_port()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qsl(urlsplit(self.path).query)
                issuer._answer(self, "GET", query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qsl(self.rfile.read(length).decode())
                issuer._answer(self, "POST", form)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def reset(self) -> None:
        with self._lock:
            self.expires_in = 300
            self.jwt_lifetime = 300
            self.stale_tokens = 0
            self.allowed_actions: Dict[str, Set[str]] = {}
            self.anonymous_actions: Set[str] = set()
            self.requests.clear()
            self.issued_tokens: List[str] = []

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _authenticate(
        self, handler: BaseHTTPRequestHandler, method: str, params: List[Tuple[str, str]]
    ) -> Tuple[bool, Optional[str]]:
        if method == "POST":
            form = dict(params)
            if form.get("grant_type") == "refresh_token":
                user = self.identity_tokens.get(form.get("refresh_token", ""))
                return user is not None, user
            if form.get("grant_type") == "password":
                user, password = form.get("username", ""), form.get("password", "")
                return self.users.get(user) == password, user
            return False, None
        header = handler.headers.get("Authorization")
        if not header:
            return True, None
        if not header.startswith("Basic "):
            return False, None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.users.get(user) == password and user != "", user

    def _answer(self, handler: BaseHTTPRequestHandler, method: str, params: List[Tuple[str, str]]) -> None:
        ok, user = self._authenticate(handler, method, params)
        scopes = [s for key, value in params if key == "scope" for s in value.split(" ") if s]
        with self._lock:
            self.requests.append(TokenRequest(user, scopes, method))
            stale = self.stale_tokens > 0
            if stale:
                self.stale_tokens -= 1
            allowed = self.allowed_actions.get(user) if user else self.anonymous_actions
        if not ok:
            body = b'{"details":"incorrect username or password"}'
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="token"')
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a and (allowed is None or a in allowed)]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": now - 120 if stale else now + self.jwt_lifetime,
            "nbf": now - 180 if stale else now - 5,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = self.sign(claims)
        with self._lock:
            self.issued_tokens.append(token)
        body = json.dumps(
            {
                "token": token,
                "access_token": token,
                "expires_in": self.expires_in,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            }
        ).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def sign(self, claims: Dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
            input=signing_input.encode(),
            capture_output=True,
            check=True,
        ).stdout
        return signing_input + "." + _b64url(signature)

    def scopes_requested(self) -> List[str]:
        with self._lock:
            return [s for r in self.requests for s in r.scopes]


# --------------------------------------------------------------------------- the registry


@dataclass
class RegistryServer:
    host: str  # "127.0.0.1:PORT"
    root: Path  # storage root directory
    scheme: str  # "http" or "https"
    process: subprocess.Popen
    log_path: Path
    ca_bundle: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    token_issuer: Optional[TokenIssuer] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    def url(self, path: str = "/v2/") -> str:
        return f"{self.scheme}://{self.host}{path}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        _stop_process(self.process)


def start_registry(
    workdir: Path,
    *,
    htpasswd_users: Optional[Dict[str, str]] = None,
    token_issuer: Optional[TokenIssuer] = None,
    tls: Optional[TlsMaterial] = None,
    redirect_base_url: Optional[str] = None,
) -> RegistryServer:
    """Starts `docker-registry serve` on a free 127.0.0.1 port and waits until /v2/ answers."""
    if shutil.which(REGISTRY_BINARY) is None:
        pytest.skip("docker-registry is not installed (Debian package docker-registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "storage"
    root.mkdir(exist_ok=True)
    last_error: Optional[Exception] = None
    for _ in range(3):  # a port taken between free_port() and bind: try another
        port = free_port()
        config: Dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(root)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
            "health": {"storagedriver": {"enabled": False}},
        }
        if tls is not None:
            config["http"]["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
        if htpasswd_users:
            lines = [f"{user}:{bcrypt_hash(password)}" for user, password in htpasswd_users.items()]
            (workdir / "htpasswd").write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": "test-registry", "path": str(workdir / "htpasswd")}}
        if token_issuer is not None:
            config["auth"] = {
                "token": {
                    "realm": token_issuer.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(token_issuer.cert_path),
                }
            }
        if redirect_base_url:
            config["middleware"] = {"storage": [{"name": "redirect", "options": {"baseurl": redirect_base_url}}]}
        config_path = workdir / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        log_path = workdir / "registry.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config_path)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        try:
            _wait_for_http("127.0.0.1", port, tls is not None, process)
        except RuntimeError as e:
            _stop_process(process)
            last_error = e
            continue
        users = htpasswd_users or (token_issuer.users if token_issuer else {})
        username, password = next(iter(users.items())) if users else (None, None)
        return RegistryServer(
            host=f"127.0.0.1:{port}",
            root=root,
            scheme="https" if tls else "http",
            process=process,
            log_path=log_path,
            ca_bundle=str(tls.ca_cert) if tls else None,
            username=username,
            password=password,
            token_issuer=token_issuer,
        )
    raise RuntimeError(
        f"docker-registry did not start: {last_error}; log: {(workdir / 'registry.log').read_text()[-2000:]}"
    )


# --------------------------------------------------------------------------- helper servers


@dataclass
class _Fault:
    status: int  # 0 = drop the connection without answering
    headers: Dict[str, str]
    method: Optional[str]
    path_contains: Optional[str]


class FaultProxy(RegistryFaultProxy):
    """An HTTP proxy in front of a plain-HTTP server that answers the next requests with
    chosen faults (503, 429 + Retry-After, a dropped connection), then passes through:
    a queue of faults on RegistryFaultProxy's relaying (fault_proxy.py has the seeded,
    rate-based faults). Keeps the Host header, so the registry's upload Locations point
    at the proxy."""

    def __init__(self, upstream: str) -> None:
        self.seen: List[Tuple[str, str, int]] = []  # (method, path, status answered)
        self._faults: List[_Fault] = []
        super().__init__(upstream)

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        headers: Optional[Dict[str, str]] = None,
        method: Optional[str] = None,
        path_contains: Optional[str] = None,
    ) -> None:
        with self._lock:
            self._faults.extend(_Fault(status, dict(headers or {}), method, path_contains) for _ in range(count))

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def _take_fault(self, method: str, path: str) -> Optional[_Fault]:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if (fault.method in (None, method)) and (fault.path_contains is None or fault.path_contains in path):
                    return self._faults.pop(i)
        return None

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        body = read_request_body(handler)
        fault = self._take_fault(method, path)
        if fault is not None:
            with self._lock:
                self.seen.append((method, path, fault.status))
            if fault.status == 0:
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
            else:
                answer_error(handler, fault.status, fault.headers, method)
            return
        status, headers, data = self._forward(handler, method, path, body)
        with self._lock:
            self.seen.append((method, path, status))
        answer(handler, status, headers, data, method)


class StaticFileServer:
    """Serves a directory over plain HTTP (GET/HEAD, no Range support) and records each
    request's headers — the "storage host" that a registry's redirects point at."""

    def __init__(self, directory: Path, bind_host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.port = free_port()
        self.requests: List[Tuple[str, str, Dict[str, str]]] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(directory), **kwargs)

            def log_message(self, *args: Any) -> None:
                pass

            def send_head(self):  # type: ignore[no-untyped-def]
                server.requests.append((self.command, self.path, dict(self.headers.items())))
                return super().send_head()

        self._server = ThreadingHTTPServer((bind_host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def registry_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("registry-plain"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(
        tmp_path_factory.mktemp("registry-basic"), htpasswd_users={"alice": "s3cret-" + secrets.token_hex(6)}
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("registry-tls"), tls=tls_material)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def session_token_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    issuer = TokenIssuer(
        tmp_path_factory.mktemp("token-issuer"),
        users={"alice": "t0ken-pw-" + secrets.token_hex(6), "reader": "reader-pw-" + secrets.token_hex(6)},
        identity_tokens={"identity-" + secrets.token_hex(8): "alice"},
    )
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def registry_token(
    tmp_path_factory: pytest.TempPathFactory, session_token_issuer: TokenIssuer
) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("registry-token"), token_issuer=session_token_issuer)
    yield server
    server.stop()


@pytest.fixture
def token_issuer(registry_token: RegistryServer) -> TokenIssuer:
    """The token registry's issuer, with knobs and counters reset for this test."""
    issuer = registry_token.token_issuer
    assert issuer is not None
    issuer.reset()
    return issuer


@pytest.fixture
def unique_repo() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"
