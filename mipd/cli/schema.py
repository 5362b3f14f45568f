"""``mipd schema``: the JSON Schema of the profiles, for editors and CI linting (mipd(8) COMMANDS)."""

from __future__ import annotations

import argparse
import json

from mipd.cli.subcommand import Subparsers
from mipd.config import json_schema

HELP = "print the JSON Schema of the profiles (for editors and CI linting)"


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``schema`` to the ``mipd`` command line."""
    parser = subparsers.add_parser("schema", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the schema as indented JSON."""
    print(json.dumps(json_schema(), indent=2))
    return 0
