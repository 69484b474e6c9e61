"""How the secret settings reach the daemon: `[oci-cache] secret_env_names` →
DaemonSettings → `oci-cache serve --secret-env NAME --secret-masking-key-file PATH`."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from oci_cache.cli import serve_command
from oci_cache.daemon.daemon_dir import DaemonDir
from oci_cache.daemon.launcher import serve_argv
from oci_cache.daemon.settings import DaemonSettings, config_fingerprint, directory_key, masking_key_file


def _settings(tmp_path: Path) -> DaemonSettings:
    return DaemonSettings(repo_root=str(tmp_path / "repo"), state_dir=str(tmp_path / "state"), python=sys.executable)


def test_secret_names_restart_the_daemon_but_keep_its_directory(tmp_path: Path) -> None:
    plain = _settings(tmp_path)
    named = replace(plain, secret_env_names=("DATABASE_URL",))
    assert directory_key(named) == directory_key(plain)
    assert config_fingerprint(named) != config_fingerprint(plain)


def test_serve_is_given_the_names_and_the_state_dir_s_key_file(tmp_path: Path) -> None:
    settings = replace(_settings(tmp_path), secret_env_names=("DATABASE_URL", "*_DSN"))
    daemon_dir = DaemonDir(tmp_path / "state" / directory_key(settings))
    argv = serve_argv(settings, daemon_dir, "FP", "127.0.0.1:0")
    flags = " ".join(argv)
    assert "--secret-env DATABASE_URL --secret-env *_DSN" in flags
    # One key per state dir, shared by its daemon directories, so masks compare across configurations.
    assert masking_key_file(settings) == tmp_path / "state" / "secret-masking.key"
    assert f"--secret-masking-key-file {tmp_path / 'state' / 'secret-masking.key'}" in flags


def test_serve_reads_the_flags_and_refuses_a_bad_name(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    serve_command.configure(parser)
    args = parser.parse_args(["--secret-env", "DATABASE_URL", "--secret-env", "*_DSN", "--secret-masking-key-file", "k"])
    assert args.secret_env == ["DATABASE_URL", "*_DSN"] and args.secret_masking_key_file == "k"
    bad = parser.parse_args(["--state-dir", str(tmp_path / "s"), "--secret-env", "A=1"])
    umask = os.umask(0o022)  # run() sets the daemon's umask: keep this process's
    try:
        assert serve_command.run(bad) == 2
    finally:
        os.umask(umask)
    assert "not an environment variable name" in capsys.readouterr().err
