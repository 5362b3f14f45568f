"""The ``mipctl`` command."""

from __future__ import annotations

import argparse
import sys

from mipd import __version__

DESCRIPTION = (
    "mipctl queries and controls a running mipd instance (Mobile IPv4 agent or mobile node) "
    "through its control socket."
)
EPILOG = (
    "No commands are built yet: status, bindings, visitors, stats, flush, reload and log-level "
    "arrive with later releases."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mipctl", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"mipctl {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 usage error)."""
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else 2
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: no command given (none is built yet)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
