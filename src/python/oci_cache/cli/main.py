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


def discover_commands() -> List[ModuleType]:
    """The subcommand modules of this package, sorted by command name."""
    import oci_cache.cli as package

    modules = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.endswith(_COMMAND_SUFFIX):
            modules.append(importlib.import_module(f"{package.__name__}.{info.name}"))
    return sorted(modules, key=lambda module: module.NAME)


def build_parser() -> argparse.ArgumentParser:
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
    for module in discover_commands():
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
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
