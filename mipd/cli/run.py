"""``mipd run --profile PATH [--instance NAME]``: run one instance in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from mipd.cli.subcommand import Subparsers

HELP = "run one instance in the foreground (what systemd's mipd@.service runs)"


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``run`` to the ``mipd`` command line."""
    parser = subparsers.add_parser(
        "run", help=HELP,
        description=HELP + ". Stops cleanly on SIGTERM; SIGHUP re-reads the profile. Exit status: 0 after a "
        "clean stop, 1 if the instance cannot start (invalid profile, address in use, ...).")
    parser.add_argument("--profile", required=True, type=Path, metavar="PATH", help="the instance's YAML profile")
    parser.add_argument("--instance", metavar="NAME",
                        help="instance name (default: the profile's file name without .yaml)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mipd.runtime.daemon import run as run_daemon  # noqa: PLC0415 - keeps `mipd check` light

    return run_daemon(args.profile, args.instance)
