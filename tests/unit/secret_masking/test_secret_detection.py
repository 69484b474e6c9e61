"""The detector: which names look secret, and which parts of text and argument lists
look like credentials (oci_cache.secret_masking.names / credentials)."""

from __future__ import annotations

from typing import List

import pytest

from oci_cache.secret_masking import (
    SECRET_NAME_PARTS,
    find_credential_arguments,
    find_credential_spans,
    is_secret_name,
    parse_secret_names,
)


@pytest.mark.parametrize("part", SECRET_NAME_PARTS)
def test_a_name_holding_any_secret_part_in_any_case_looks_secret(part: str) -> None:
    assert is_secret_name(f"MY_{part}_VAR")
    assert is_secret_name(f"my_{part.lower()}")
    assert is_secret_name(f"--{part.lower()}-file")


@pytest.mark.parametrize(
    "name",
    ["DEMO_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "npm_config__auth", "PGPASSWORD", "Proxy-Authorization", "SESSIONID"],
)
def test_real_world_secret_names_look_secret(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "PEX_ROOT", "LANG", "DATABASE_URL", "CI", "--verbose"])
def test_ordinary_names_do_not_look_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_pants_cache_key_variables_are_not_secret_unless_listed() -> None:
    assert not is_secret_name("PANTS_CACHE_KEY_TARGET_PLATFORM")
    assert not is_secret_name("PANTS_CACHE_KEY_EXECUTION_STRATEGY")
    assert is_secret_name("PANTS_CACHE_KEY_TARGET_PLATFORM", ["PANTS_CACHE_KEY_*"])
    assert is_secret_name("PANTS_API_KEY")


def test_extra_names_match_exactly_or_as_patterns_case_insensitively() -> None:
    assert is_secret_name("DATABASE_URL", ["database_url"])
    assert is_secret_name("SENTRY_DSN", ["*_DSN"])
    assert not is_secret_name("DATABASE_URL_X", ["DATABASE_URL"])
    assert not is_secret_name("PATH", ["*_DSN"])


def test_secret_name_lists_split_on_semicolons_commas_and_spaces_and_reject_garbage() -> None:
    assert parse_secret_names("A;B, C  D;A") == ("A", "B", "C", "D")
    assert parse_secret_names("  ") == ()
    with pytest.raises(ValueError, match="not an environment variable name"):
        parse_secret_names("OK;B=1")


def _masked_parts(text: str, extra: List[str] = []) -> List[str]:  # noqa: B006 (read only)
    return [text[span.start : span.end] for span in find_credential_spans(text, extra)]


@pytest.mark.parametrize(
    "text, secrets",
    [
        ("--password=hunter2", ["hunter2"]),
        ("--api-token='quoted value'", ["quoted value"]),
        ('export API_TOKEN="a b"; echo hi', ["a b"]),
        ('curl -H "Authorization: Bearer abc.def-123" https://example.com', ["abc.def-123"]),
        ("Authorization: Basic dXNlcjpwYXNz", ["dXNlcjpwYXNz"]),
        ("proxy-authorization:Bearer xyz12345", ["xyz12345"]),
        ("X-Api-Key: 0123456789", ["0123456789"]),
        ("https://user:pa55@registry.example.com/simple", ["user:pa55"]),
        ("git clone https://ghp_abcdef@github.com/acme/repo", ["ghp_abcdef"]),
        ("http://example.com/a?access_token=zz9&b=1", ["zz9"]),
        ('{"client_secret": "s3cr3t", "name": "x"}', ["s3cr3t"]),
        ("deploy --token abc123 --region eu", ["abc123"]),
        ("curl -u bob:letmein http://h", ["letmein"]),
        ("Bearer eyJhbGciOiJIUzI1NiJ9", ["eyJhbGciOiJIUzI1NiJ9"]),
    ],
)
def test_credentials_in_text_are_found_and_nothing_around_them(text: str, secrets: List[str]) -> None:
    assert _masked_parts(text) == secrets


@pytest.mark.parametrize(
    "text",
    [
        "pip install --index-url https://pypi.org/simple requests",
        "python -m pytest -q src/tests",
        "PATH=/usr/bin:/bin",
        "git@github.com:acme/repo.git",
        "--output-file=dist/app.pex",
        "if x: return 1",
        "pants test secrets:uses_token auth/keys:lib",
        "redis://cache.internal:6379/0",
    ],
)
def test_ordinary_text_has_no_credentials(text: str) -> None:
    assert find_credential_spans(text) == []


def test_user_listed_names_are_found_in_assignments_too() -> None:
    assert _masked_parts("DATABASE_URL=postgres://db/app", ["DATABASE_URL"]) == ["postgres://db/app"]
    assert _masked_parts("DATABASE_URL=postgres://db/app") == []


def test_a_secret_flag_masks_the_whole_next_argument_unless_it_is_a_flag() -> None:
    found = find_credential_arguments(["login", "--password", "hunter2", "--token", "--verbose", "-u", "bob:pw"])
    assert [(span.index, span.start, span.end) for span in found] == [(2, 0, 7), (6, 4, 6)]


def test_credentials_inside_arguments_are_found_by_argument_number() -> None:
    arguments = ["/bin/bash", "-c", "curl -H 'Authorization: Bearer abcdefgh' https://x:y@h/p"]
    found = find_credential_arguments(arguments)
    assert {span.index for span in found} == {2}
    assert [arguments[2][span.start : span.end] for span in found] == ["abcdefgh", "x:y"]
