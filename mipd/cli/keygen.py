"""``mipd keygen``: a fresh random 128-bit key as 32 hex digits (mipd(8) COMMANDS)."""

from __future__ import annotations

import argparse
import secrets

from mipd.cli.subcommand import Subparsers

KEY_BYTES = 16  # RFC 5944 5.1: the default keyed-MD5/HMAC-MD5 key is 128 bits
HELP = "print a fresh random 128-bit key as 32 hex digits (for key files: mipd keygen > KEYFILE)"


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``keygen`` to the ``mipd`` command line."""
    parser = subparsers.add_parser("keygen", help=HELP, description=HELP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print one key from the operating system's secure random source."""
    print(secrets.token_hex(KEY_BYTES))
    return 0
