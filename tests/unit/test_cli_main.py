from __future__ import annotations

import pytest

from oci_cache.cli import main as cli_main


def test_subcommands_are_discovered_from_command_modules() -> None:
    names = [module.NAME for module in cli_main.discover_commands()]
    assert "serve" in names and names == sorted(names)


def test_serve_flags_and_defaults() -> None:
    args = cli_main.build_parser().parse_args(["serve", "--state-dir", "/tmp/x"])
    assert (args.listen, args.max_size, args.token_file, args.log_level) == ("127.0.0.1:0", "10GiB", None, "info")
    args = cli_main.build_parser().parse_args(
        ["serve", "--listen", "127.0.0.1:9", "--max-size", "1G", "--token-file", "t", "--log-level", "debug"]
    )
    assert (args.listen, args.max_size, args.token_file, args.log_level) == ("127.0.0.1:9", "1G", "t", "debug")


def test_no_subcommand_or_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    for argv in ([], ["serve", "--no-such-flag"]):
        with pytest.raises(SystemExit) as raised:
            cli_main.main(argv)
        assert raised.value.code == 2
