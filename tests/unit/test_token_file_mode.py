"""`serve --token-file` warns when other users may read the token (and still uses it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from oci_cache.server.token_file import read_token_file


def test_a_token_file_open_to_others_is_used_with_a_warning(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    os.chmod(token_file, 0o644)
    with caplog.at_level(logging.WARNING):
        assert read_token_file(token_file) == "s3cret-token"
    assert [r.getMessage() for r in caplog.records] == [
        f"token file {token_file} is open to other users (mode 0644): anyone who can read it can use this "
        f"cache; `chmod 600 {token_file}`"
    ]
    assert "s3cret" not in caplog.text


def test_a_private_token_file_is_used_quietly(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    token_file = tmp_path / "token"
    token_file.write_text("t")
    os.chmod(token_file, 0o600)
    with caplog.at_level(logging.WARNING):
        assert read_token_file(token_file) == "t"
    assert caplog.records == []
