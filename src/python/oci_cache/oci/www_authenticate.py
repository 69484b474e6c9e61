"""Parsing of `WWW-Authenticate` headers (RFC 7235): one or more challenges.

    Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"
    Basic realm="Registry Realm", Bearer realm="…"

Scheme names and parameter names are case-insensitive (returned lowercased);
values may be tokens or quoted strings with backslash escapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

_SEPARATORS = " \t,="


@dataclass
class Challenge:
    scheme: str  # lowercased: "bearer", "basic"
    params: Dict[str, str] = field(default_factory=dict)  # lowercased names
    token68: Optional[str] = None

    @property
    def realm(self) -> Optional[str]:
        return self.params.get("realm")

    @property
    def scopes(self) -> List[str]:
        """The `scope` parameter split on spaces (a challenge may ask for several)."""
        return [s for s in self.params.get("scope", "").split(" ") if s]


def parse_www_authenticate(header: Optional[str]) -> List[Challenge]:
    """All challenges in the header, in order; [] for None/empty. Never raises."""
    if not header:
        return []
    text = header
    n = len(text)
    i = 0
    challenges: List[Challenge] = []
    current: Optional[Challenge] = None
    just_after_scheme = False
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ",":
            just_after_scheme = False
            i += 1
            continue
        token, i = _read_token(text, i)
        if not token:
            i += 1  # stray character: skip it
            continue
        j = _skip_spaces(text, i)
        if j < n and text[j] == "=" and not _is_padding(text, j):
            value, i = _read_value(text, _skip_spaces(text, j + 1))
            if current is not None:
                current.params[token.lower()] = value
            just_after_scheme = False
            continue
        if current is not None and just_after_scheme and current.token68 is None and not current.params:
            k = j
            while k < n and text[k] == "=":
                k += 1
            current.token68 = token + text[j:k] if k > j else token
            i = k
            just_after_scheme = False
            continue
        current = Challenge(scheme=token.lower())
        challenges.append(current)
        just_after_scheme = True
        i = j
    return challenges


def find_challenge(challenges: List[Challenge], scheme: str) -> Optional[Challenge]:
    for challenge in challenges:
        if challenge.scheme == scheme:
            return challenge
    return None


def _read_token(text: str, i: int) -> Tuple[str, int]:
    start = i
    while i < len(text) and text[i] not in _SEPARATORS and text[i] != '"':
        i += 1
    return text[start:i], i


def _skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _is_padding(text: str, j: int) -> bool:
    """'=' that ends a token68 (followed by more '=', a comma, or the end)."""
    k = j
    while k < len(text) and text[k] == "=":
        k += 1
    rest = text[k:].lstrip(" \t")
    return k - j > 1 or rest == "" or rest.startswith(",")


def _read_value(text: str, i: int) -> Tuple[str, int]:
    if i < len(text) and text[i] == '"':
        i += 1
        out = []
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                return "".join(out), i + 1
            out.append(c)
            i += 1
        return "".join(out), i  # unterminated: take the rest
    start = i
    while i < len(text) and text[i] not in " \t,":
        i += 1
    return text[start:i], i
