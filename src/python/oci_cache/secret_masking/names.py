"""Which environment variable (or flag, or header) names look secret.

    is_secret_name("DEMO_API_TOKEN")                 # True: holds TOKEN
    is_secret_name("DATABASE_URL", ["database_url"]) # True: listed by the user
    is_secret_name("PATH")                           # False

A name looks secret when it holds, case-insensitively, one of SECRET_NAME_PARTS as a
substring (so `AWS_SECRET_ACCESS_KEY`, `npm_config__auth`, `--password`,
`Proxy-Authorization` all do), or when it matches one of the user's extra names:
exact names or shell-style patterns (`*`, `?`, `[...]`), compared case-insensitively.
Substrings over-match on purpose (`KEYBOARD_LAYOUT`, `GIT_AUTHOR_NAME`,
`SSL_CERT_FILE`): a value masked for nothing costs a less readable record, a value
missed costs a leaked secret. The one exception is Pants' own `PANTS_CACHE_KEY_*`
variables (`PANTS_CACHE_KEY_TARGET_PLATFORM`: constants Pants adds to every process to
key its caches), which hold no secret and tell misses apart (NOT_SECRET_PREFIXES); a
user-listed name still wins.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Iterable, Tuple

SECRET_NAME_PARTS: Tuple[str, ...] = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "KEY",
    "AUTH",
    "CREDENTIAL",
    "COOKIE",
    "SESSION",
    "PRIVATE",
    "CERT",
)

NOT_SECRET_PREFIXES: Tuple[str, ...] = ("PANTS_CACHE_KEY_",)

_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!-]+")


def is_secret_name(name: str, extra_names: Iterable[str] = ()) -> bool:
    """Whether a variable, flag or header called `name` holds a secret (see the module
    docstring). Leading dashes of a flag are ignored."""
    upper = name.lstrip("-").upper()
    if any(fnmatch.fnmatchcase(upper, extra.upper()) for extra in extra_names):
        return True
    if upper.startswith(NOT_SECRET_PREFIXES):
        return False
    return any(part in upper for part in SECRET_NAME_PARTS)


def parse_secret_names(text: str) -> Tuple[str, ...]:
    """Names (or patterns) from `A;B C,D` (separated by `;`, `,` or spaces), checked;
    raises ValueError naming a bad one."""
    names = []
    for name in re.split(r"[;,\s]+", text.strip()):
        if not name:
            continue
        check_secret_name(name)
        if name not in names:
            names.append(name)
    return tuple(names)


def check_secret_name(name: str) -> str:
    """`name` if it is a plausible variable name or pattern; raises ValueError otherwise."""
    if not _NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an environment variable name or pattern (letters, digits, _ . - and * ? [ ])"
        )
    return name


__all__ = ["NOT_SECRET_PREFIXES", "SECRET_NAME_PARTS", "check_secret_name", "is_secret_name", "parse_secret_names"]
