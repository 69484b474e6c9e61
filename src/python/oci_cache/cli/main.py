"""`oci-cache`: the command-line entry point.

Subcommands are discovered: every module `oci_cache/cli/<name>_command.py`
defines

    NAME: str                                        # e.g. "serve"
    HELP: str                                        # one line for --help
    def configure(parser: argparse.ArgumentParser) -> None   # adds its flags
    def run(args: argparse.Namespace) -> int                 # the exit status

so adding a subcommand is adding one module. Every subcommand also accepts
`--log-level`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from types import ModuleType
from typing import List, Optional

from oci_cache import __version__

_COMMAND_SUFFIX = "_command"
LOG_LEVELS = ("debug", "info", "warning", "error")


def command_module_names() -> List[str]:
    """The names of this package's subcommand modules (nothing imported)."""
    import oci_cache.cli as package

    return sorted(
        f"{package.__name__}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.endswith(_COMMAND_SUFFIX)
    )


def discover_commands(only: Optional[str] = None) -> List[ModuleType]:
    """The subcommand modules of this package, sorted by command name; with `only`,
    just the module of that command when there is one (so that `oci-cache serve`
    does not import every other command)."""
    names = command_module_names()
    if only is not None:
        chosen = [name for name in names if name.rpartition(".")[2] == f"{only}{_COMMAND_SUFFIX}"]
        names = chosen or names
    modules = [importlib.import_module(name) for name in names]
    return sorted(modules, key=lambda module: module.NAME)


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oci-cache",
        description="A REAPI remote cache (for Pants, Bazel, Buck2) stored as OCI cache images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="what to log on stderr (default: info)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in discover_commands(only):
        subparser = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP, parents=[common])
        module.configure(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def configure_logging(level_name: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level_name.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Optional[List[str]] = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    # The command is the first word when it is not an option (`oci-cache --help`,
    # `oci-cache --version` and mistakes get the parser with every command).
    first = words[0] if words and not words[0].startswith("-") else None
    args = build_parser(first).parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
