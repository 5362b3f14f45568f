"""``mipd check PATH...``: validate profiles (mipd(8) COMMANDS)."""

from __future__ import annotations

import argparse

from mipd.cli.subcommand import Subparsers
from mipd.config import ProfileError, load_profile

HELP = "validate profiles: prints 'PATH: ok' or 'PATH:LINE: yaml.path: message' per problem"


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``check`` to the ``mipd`` command line."""
    parser = subparsers.add_parser(
        "check", help=HELP, description=HELP + ". Exit status: 0 all valid, 1 any invalid, 2 usage error.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="profile to check")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check each profile; 0 if all are valid, 1 otherwise."""
    status = 0
    for path in args.paths:
        try:
            load_profile(path)
        except ProfileError as error:
            status = 1
            for problem in error.problems:
                print(problem)
        else:
            print(f"{path}: ok")
    return status
