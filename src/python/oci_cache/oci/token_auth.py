"""Authorization for one registry: anonymous, Basic, or the Bearer token flow.

The registry says which by its 401 challenge (`WWW-Authenticate`). For Bearer:
GET the challenge's `realm` with `service` and one `scope` per resource
(`repository:NAME:pull` or `repository:NAME:pull,push`, plus `repository:SRC:pull`
for a cross-repository mount), sending Basic credentials when we have some (or
POST an OAuth2 refresh-token grant for an identity token). Tokens are cached per
scope set and reused for any request they cover; they are renewed shortly
before `expires_in` runs out and whenever the registry rejects one (401).
Writes ask for push scope up front, so a pull-only token is never reused for
a push — and a 401 on a write fetches a token with the scope the challenge names.

Thread-safe: one fetch at a time per registry; other threads wait and reuse it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import urlencode, urlsplit

from oci_cache.oci.credentials import CredentialSource, Credentials
from oci_cache.oci.errors import RegistryDeniedError, RegistryError, RegistryUnauthorizedError
from oci_cache.oci.reference import is_loopback_host
from oci_cache.oci.www_authenticate import Challenge, find_challenge, parse_www_authenticate

logger = logging.getLogger(__name__)

CLIENT_ID = "pants-oci-cache"
DEFAULT_TOKEN_LIFETIME = 60.0  # seconds, when the token server gives no expires_in (distribution's spec)
MIN_TOKEN_LIFETIME = 1.0
MAX_RENEW_MARGIN = 30.0

Scopes = FrozenSet[str]
# (method, url, headers, body) -> (status, headers, body bytes). Given by the HTTP client.
TokenTransport = Callable[[str, str, Mapping[str, str], Optional[bytes]], Tuple[int, Mapping[str, str], bytes]]


def repository_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


def _parse_scope(scope: str) -> Tuple[str, FrozenSet[str]]:
    resource, _, actions = scope.rpartition(":")
    return resource, frozenset(a for a in actions.split(",") if a)


def scopes_cover(granted: Iterable[str], needed: Iterable[str]) -> bool:
    """Whether scopes asked for by a token include every action of `needed`."""
    have: Dict[str, set] = {}
    for scope in granted:
        resource, actions = _parse_scope(scope)
        have.setdefault(resource, set()).update(actions)
    for scope in needed:
        resource, actions = _parse_scope(scope)
        held = have.get(resource, set())
        if not (actions <= held or "*" in held):
            return False
    return True


def merge_scopes(*groups: Iterable[str]) -> Scopes:
    """Union of scopes, with the actions of one resource merged into one scope."""
    merged: Dict[str, List[str]] = {}
    for group in groups:
        for scope in group:
            resource, actions = _parse_scope(scope)
            listed = merged.setdefault(resource, [])
            for action in sorted(actions):
                if action not in listed:
                    listed.append(action)
    return frozenset(f"{resource}:{','.join(sorted(actions))}" for resource, actions in merged.items())


@dataclass
class _Token:
    value: str
    scopes: Scopes
    renew_at: float  # monotonic
    expires_at: float


class RegistryAuth:
    """Produces the Authorization header for requests to one registry."""

    def __init__(
        self,
        registry: str,
        credentials: CredentialSource,
        transport: TokenTransport,
        allow_plain_http_realm: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._credential_source = credentials
        self._transport = transport
        self._allow_plain_http_realm = allow_plain_http_realm
        self._clock = clock
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._scheme: Optional[str] = None  # None (anonymous so far), "basic", "bearer"
        self._realm: Optional[str] = None
        self._service: Optional[str] = None
        self._tokens: List[_Token] = []
        self._extra_scopes: Dict[Scopes, Scopes] = {}
        self._credentials: Optional[Credentials] = None
        self._credentials_loaded = False
        self.token_fetches = 0  # for tests and metrics

    # --- state from challenges -------------------------------------------------

    def prime(self, www_authenticate: Optional[str]) -> None:
        """Learns the scheme from the /v2/ ping's challenge (no error if there is none)."""
        self._adopt(parse_www_authenticate(www_authenticate))

    def _adopt(self, challenges: List[Challenge]) -> Optional[Challenge]:
        bearer = find_challenge(challenges, "bearer")
        with self._lock:
            if bearer is not None and bearer.realm:
                self._scheme = "bearer"
                self._realm = bearer.realm
                self._service = bearer.params.get("service")
                return bearer
            basic = find_challenge(challenges, "basic")
            if basic is not None:
                self._scheme = "basic"
                return basic
        return None

    @property
    def scheme(self) -> Optional[str]:
        return self._scheme

    # --- credentials ------------------------------------------------------------

    def credentials(self) -> Optional[Credentials]:
        with self._lock:
            if not self._credentials_loaded:
                self._credentials = self._credential_source.get(self._registry)
                self._credentials_loaded = True
            return self._credentials

    # --- the header -------------------------------------------------------------

    def authorization(self, scopes: Scopes) -> Optional[str]:
        """The Authorization value for a request needing `scopes`, or None (anonymous)."""
        scheme = self._scheme
        if scheme == "basic":
            creds = self.credentials()
            return creds.basic_authorization() if creds is not None and not creds.identity_token else None
        if scheme != "bearer":
            return None
        token = self._cached(scopes)
        if token is None:
            with self._fetch_lock:
                token = self._cached(scopes)
                if token is None:
                    token = self._fetch(merge_scopes(scopes, self._extra_scopes.get(scopes, frozenset())))
        return "Bearer " + token.value

    def _cached(self, scopes: Scopes) -> Optional[_Token]:
        now = self._clock()
        with self._lock:
            self._tokens = [t for t in self._tokens if t.expires_at > now]
            for token in self._tokens:
                if token.renew_at > now and scopes_cover(token.scopes, scopes):
                    return token
        return None

    def handle_unauthorized(
        self, www_authenticate: Optional[str], scopes: Scopes, sent_authorization: Optional[str], repeated: bool
    ) -> None:
        """Updates state after a 401 so that one more attempt can succeed; raises when none can.

        `repeated` is True when the request already got a 401 with fresh authorization.
        """
        challenges = parse_www_authenticate(www_authenticate)
        challenge = self._adopt(challenges)
        if challenge is None:
            schemes = ", ".join(c.scheme for c in challenges) or "none"
            raise RegistryUnauthorizedError(
                f"{self._registry} answered 401 Unauthorized without a usable challenge (schemes: {schemes}); "
                "it may need a login method this client does not support",
                status=401,
            )
        creds = self.credentials()
        if challenge.scheme == "basic":
            if creds is None:
                raise RegistryUnauthorizedError(self._no_credentials_message(), status=401)
            if sent_authorization is not None and sent_authorization.startswith("Basic "):
                raise RegistryUnauthorizedError(self._rejected_message(creds), status=401)
            return
        # Bearer: drop the rejected token; the next authorization() fetches one covering the
        # scopes this request needs plus any the challenge names (e.g. push for a write).
        with self._lock:
            if sent_authorization is not None and sent_authorization.startswith("Bearer "):
                rejected = sent_authorization[len("Bearer ") :]
                self._tokens = [t for t in self._tokens if t.value != rejected]
            if challenge.scopes:
                self._extra_scopes[scopes] = merge_scopes(self._extra_scopes.get(scopes, frozenset()), challenge.scopes)
        if repeated:
            wanted = " ".join(sorted(merge_scopes(scopes, challenge.scopes)))
            if creds is None:
                raise RegistryUnauthorizedError(
                    f"{self._registry} does not allow anonymous {wanted}. " + self._login_hint(), status=401
                )
            raise RegistryDeniedError(
                f"{self._registry} did not accept a fresh token for {wanted}: the account {creds.username!r} "
                f"({creds.source}) lacks that access. Check the repository name and that this account may "
                "push/pull it",
                status=401,
            )

    # --- token endpoint ---------------------------------------------------------

    def _fetch(self, scopes: Scopes) -> _Token:
        realm, service = self._realm, self._service
        assert realm is not None
        creds = self.credentials()
        realm_parts = urlsplit(realm)
        if realm_parts.scheme not in ("https", "http"):
            raise RegistryUnauthorizedError(
                f"{self._registry} named an unusable token realm scheme {realm_parts.scheme!r}"
            )
        if (
            creds is not None
            and realm_parts.scheme == "http"
            and not is_loopback_host(realm_parts.netloc)
            and not self._allow_plain_http_realm
        ):
            raise RegistryUnauthorizedError(
                f"{self._registry} asks for credentials to be sent over plain HTTP to {realm_parts.netloc}; "
                "refusing (set insecure=true for this registry to allow it)"
            )
        started = self._clock()
        params: List[Tuple[str, str]] = []
        if service:
            params.append(("service", service))
        headers: Dict[str, str] = {"Accept": "application/json"}
        body: Optional[bytes] = None
        if creds is not None and creds.identity_token:
            method, url = "POST", realm
            form = [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token), ("client_id", CLIENT_ID)]
            form += params + [("scope", " ".join(sorted(scopes)))]
            body = urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            params += [("scope", s) for s in sorted(scopes)]
            if creds is not None:
                params.append(("account", creds.username))
                headers["Authorization"] = creds.basic_authorization()
            method = "GET"
            url = realm + ("&" if realm_parts.query else "?") + urlencode(params)
        status, _, data = self._transport(method, url, headers, body)
        self.token_fetches += 1
        where = f"token server {realm_parts.scheme}://{realm_parts.netloc}{realm_parts.path} for {self._registry}"
        if status in (401, 403):
            if creds is None:
                raise RegistryUnauthorizedError(
                    f"{where} refused anonymous access to {' '.join(sorted(scopes))}. " + self._login_hint(), status
                )
            raise RegistryUnauthorizedError(self._rejected_message(creds, where), status)
        if status != 200:
            raise RegistryError(f"{where} answered HTTP {status} for {' '.join(sorted(scopes))}", status)
        try:
            answer = json.loads(data.decode("utf-8"))
            value = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError, UnicodeDecodeError):
            raise RegistryError(f"{where} answered with something that is not a token response") from None
        if not isinstance(value, str) or not value:
            raise RegistryError(f"{where} answered without a token")
        lifetime = max(MIN_TOKEN_LIFETIME, lifetime)
        margin = min(MAX_RENEW_MARGIN, lifetime * 0.2)
        token = _Token(value=value, scopes=scopes, renew_at=started + lifetime - margin, expires_at=started + lifetime)
        with self._lock:
            self._tokens.append(token)
        logger.debug("got a token for %s (%s), valid %.0fs", self._registry, " ".join(sorted(scopes)), lifetime)
        return token

    # --- messages ---------------------------------------------------------------

    def _login_hint(self) -> str:
        return (
            f"Log in (`docker login {self._registry}`) or add credentials for it to "
            f"{self._credential_source.describe()}"
        )

    def _no_credentials_message(self) -> str:
        return f"{self._registry} requires authentication and no credentials were found. " + self._login_hint()

    def _rejected_message(self, creds: Credentials, where: Optional[str] = None) -> str:
        who = where or self._registry
        return (
            f"{who} rejected the credentials of {creds.username!r} (from {creds.source}). "
            f"Check the username and password or token, e.g. run `docker login {self._registry}` again"
        )

