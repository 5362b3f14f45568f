"""The ``mipd`` command.

Each subcommand is a module of this package with ``register(subparsers)`` (see
:mod:`mipd.cli.subcommand`); to add one, write the module and list it in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from types import ModuleType

from mipd import __version__
from mipd.cli import check, cleanup, demo, keygen, run, schema
from mipd.cli.subcommand import Handler, Subparsers

DESCRIPTION = (
    "mipd is a Mobile IPv4 (RFC 5944) daemon for Linux: it runs a home agent, a foreign agent or a "
    "mobile node, each configured by a YAML profile."
)
EPILOG = "Run 'mipd COMMAND --help' for a command's options."

SUBCOMMANDS: tuple[ModuleType, ...] = (run, check, keygen, schema, demo, cleanup)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand of ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(prog="mipd", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"mipd {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in SUBCOMMANDS:
        register: Callable[[Subparsers[argparse.ArgumentParser]], None] = module.register
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else 2
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: no command given", file=sys.stderr)
        return 2
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
