"""Credentials written into arguments and other text, found without knowing them.

    find_credential_spans('curl -H "Authorization: Bearer abc" https://u:pw@host/x')
        # [Span(...) of `abc`, Span(...) of `u:pw`]
    find_credential_arguments(["login", "--password", "hunter2"])
        # [ArgumentSpan(2, 0, 7)]

What counts as a credential (each rule names the span that is masked):

- the user info of a URL: `scheme://USER:PASSWORD@host`, `scheme://TOKEN@host`;
- an assignment to a secret-looking name (names.is_secret_name): `--password=VALUE`,
  `API_TOKEN=VALUE`, `?access_token=VALUE&…`; quoted values too;
- a secret-looking header or key: `Authorization: Bearer VALUE` (the scheme word is
  kept; also without the blank), `X-Api-Key: VALUE`, `api_key: VALUE` (a blank after the
  colon: `secrets:target`, a Pants address, is not a header), `"token": "VALUE"`;
- a bare `Bearer VALUE` / `Basic VALUE`;
- a secret-looking flag followed by its value: `--token VALUE` inside one argument
  (a shell script), or as two arguments (`--token`, `VALUE`: the whole next
  argument, unless it starts with `-`);
- curl-style user options: `-u USER:PASSWORD`, `--user …`, `--proxy-user …` (the
  part after the first colon).

These are heuristics, tuned to over-mask: a masked span that was not a secret only
makes a record less readable.
"""

from __future__ import annotations

import re
from typing import Iterable, List, NamedTuple, Optional, Pattern, Sequence

from oci_cache.secret_masking.names import is_secret_name


class Span(NamedTuple):
    """Characters start..end-1 of a text."""

    start: int
    end: int


class ArgumentSpan(NamedTuple):
    """Characters start..end-1 of argument number `index`."""

    index: int
    start: int
    end: int


_QUOTED_OR_BARE = r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"';&|<>`()]+))"""
_URL_USER_INFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?P<value>[^/\s@'\"<>?#]+)@")
_ASSIGNMENT = re.compile(r"(?<![\w.-])(?P<name>-{0,2}[A-Za-z_][\w.-]*)=" + _QUOTED_OR_BARE)
_SCHEME_AND_VALUE = r"(?:(?:Bearer|Basic|Token|Digest|Negotiate|NTLM|Bot)[ \t]+)?(?P<value>[^\s\"'][^\r\n\"']*)"
# `Name: value` needs the blank after the colon (so `dir:target`, `host:port`, `a:b` are
# not headers); `Authorization:value` does not.
_HEADER = re.compile(r"(?<![\w-])(?P<name>[A-Za-z][\w-]*)[ \t]*:[ \t]+" + _SCHEME_AND_VALUE, re.IGNORECASE)
_AUTHORIZATION = re.compile(r"(?<![\w-])(?P<name>(?:proxy-)?authorization)[ \t]*:[ \t]*" + _SCHEME_AND_VALUE, re.IGNORECASE)
_JSON_MEMBER = re.compile(r'"(?P<name>[^"\\]{1,100})"\s*:\s*"(?P<value>[^"\\]*)"')
_BARE_SCHEME = re.compile(r"(?<![\w-])(?:Bearer|Basic)[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{8,})")
_FLAG_AND_VALUE = re.compile(r"(?<!\S)(?P<name>--?[A-Za-z][\w-]*)[ \t]+(?!-)" + _QUOTED_OR_BARE)
_USER_OPTION = re.compile(r"(?<!\S)(?:-u|-U|--user|--proxy-user)(?:[ \t]+|=)(?P<user>[^\s:\"']*):(?P<value>[^\s\"']+)")
_FLAG = re.compile(r"--?[A-Za-z][\w-]*")
_USER_FLAGS = ("-u", "-U", "--user", "--proxy-user")


def find_credential_spans(text: str, extra_names: Iterable[str] = ()) -> List[Span]:
    """The spans of `text` that look like credentials (see the module docstring),
    sorted and merged."""
    extra = tuple(extra_names)
    spans: List[Span] = []
    spans.extend(_value_spans(_URL_USER_INFO, text))
    spans.extend(_value_spans(_BARE_SCHEME, text))
    spans.extend(_value_spans(_USER_OPTION, text))
    spans.extend(_value_spans(_AUTHORIZATION, text))
    for pattern in (_ASSIGNMENT, _HEADER, _JSON_MEMBER, _FLAG_AND_VALUE):
        spans.extend(_value_spans(pattern, text, lambda name: is_secret_name(name, extra)))
    return merge_spans(spans)


def find_credential_arguments(arguments: Sequence[str], extra_names: Iterable[str] = ()) -> List[ArgumentSpan]:
    """The spans of `arguments` that look like credentials: those inside each argument,
    and whole arguments that follow a secret-looking flag (`--token`, `VALUE`)."""
    extra = tuple(extra_names)
    found: List[ArgumentSpan] = []
    for index, argument in enumerate(arguments):
        spans = find_credential_spans(argument, extra)
        previous = arguments[index - 1] if index else ""
        if _FLAG.fullmatch(previous) and not argument.startswith("-") and argument:
            if is_secret_name(previous, extra):
                spans = [Span(0, len(argument))]
            elif previous in _USER_FLAGS and ":" in argument:
                spans = merge_spans([*spans, Span(argument.index(":") + 1, len(argument))])
        found.extend(ArgumentSpan(index, span.start, span.end) for span in spans if span.end > span.start)
    return found


def merge_spans(spans: Iterable[Span]) -> List[Span]:
    """Sorted, with overlapping or touching spans joined; empty spans dropped."""
    merged: List[Span] = []
    for span in sorted(s for s in spans if s.end > s.start):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Span(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return merged


def _value_spans(pattern: Pattern[str], text: str, name_is_secret: Optional[object] = None) -> List[Span]:
    spans = []
    for match in pattern.finditer(text):
        if name_is_secret is not None and not name_is_secret(match.group("name")):  # type: ignore[operator]
            continue
        for group in ("value", "dq", "sq", "bare"):
            if group in pattern.groupindex and match.group(group) is not None:
                start, end = match.span(group)
                while end > start and text[end - 1] in " \t":
                    end -= 1
                spans.append(Span(start, end))
                break
    return spans


__all__ = ["ArgumentSpan", "Span", "find_credential_arguments", "find_credential_spans", "merge_spans"]
