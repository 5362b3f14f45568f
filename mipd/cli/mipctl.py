"""The ``mipctl`` command: query and control a running instance through its control socket."""

from __future__ import annotations

import argparse
import json
import os
import sys
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path

from mipd import __version__
from mipd.cli.mipctl_format import render
from mipd.control.client import DEFAULT_TIMEOUT, Unreachable, call
from mipd.control.protocol import LOG_LEVELS, ProtocolError, Request

DEFAULT_RUN_DIR = "/run/mip"
RUN_DIR_VARIABLE = "MIPD_RUN_DIR"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

DESCRIPTION = (
    "mipctl queries and controls a running mipd instance (Mobile IPv4 agent or mobile node) through its control socket."
)
EPILOG = f"""\
Without --instance or --socket, mipctl talks to the only instance running: the only socket
{DEFAULT_RUN_DIR}/*.sock. --instance NAME means {DEFAULT_RUN_DIR}/NAME.sock.

exit status:
  0  ok
  1  the instance refused or failed the command
  2  usage error (also: several instances run and none was chosen)
  3  instance not reachable (no socket, nobody listening, no permission, no answer in time)

environment:
  {RUN_DIR_VARIABLE}  the directory of the instances' sockets instead of {DEFAULT_RUN_DIR} (for tests)
"""

COMMANDS = {
    "status": "the instance's role, uptime, tunnel backend and state",
    "bindings": "the home agent's mobility bindings",
    "visitors": "the foreign agent's visitor list",
    "stats": "registration counters: received, accepted, denied per code, dropped per reason",
    "flush": "remove a mobile node's bindings or visitor entry now",
    "reload": "re-read the profile and adopt it",
    "log-level": "change the log level",
}


class UsageError(Exception):
    """The command line does not say which instance, or says it wrongly (exit 2)."""


def _ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except AddressValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 0 and 3600")
    return value


def _options() -> argparse.ArgumentParser:
    """Options accepted before and after the command (absent ones leave no attribute)."""
    options = argparse.ArgumentParser(add_help=False)
    target = options.add_mutually_exclusive_group()
    target.add_argument(
        "--instance", metavar="NAME", default=argparse.SUPPRESS, help=f"the instance NAME ({DEFAULT_RUN_DIR}/NAME.sock)"
    )
    target.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS, help="the control socket PATH")
    options.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the result as one JSON document"
    )
    options.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=argparse.SUPPRESS,
        help=f"how long to wait for the instance (default {DEFAULT_TIMEOUT:g})",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    options = _options()
    parser = argparse.ArgumentParser(
        prog="mipctl",
        description=DESCRIPTION,
        epilog=EPILOG,
        parents=[options],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mipctl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, summary in COMMANDS.items():
        command = commands.add_parser(name, parents=[options], help=summary, description=summary)
        if name == "flush":
            command.add_argument("home_address", metavar="HOME_ADDRESS", type=_ipv4, help="the node's home address")
        elif name == "log-level":
            command.add_argument("level", metavar="LEVEL", choices=LOG_LEVELS, help=", ".join(LOG_LEVELS))
    return parser


def run_directory() -> Path:
    """Where instances' sockets live: ``$MIPD_RUN_DIR`` or /run/mip."""
    return Path(os.environ.get(RUN_DIR_VARIABLE) or DEFAULT_RUN_DIR)


def find_socket(instance: str | None, socket_path: str | None) -> Path:
    """The socket to use; raises UsageError (ambiguous, bad name) or Unreachable (none runs)."""
    if socket_path is not None:
        return Path(socket_path)
    directory = run_directory()
    if instance is not None:
        if not instance or "/" in instance or instance.startswith(".") or "\0" in instance:
            raise UsageError(f"{instance!r} is not an instance name")
        return directory / f"{instance}.sock"
    found = sorted(path for path in directory.glob("*.sock") if path.is_socket())
    if len(found) == 1:
        return found[0]
    if not found:
        raise Unreachable(f"no mipd instance is running (no socket in {directory})")
    names = ", ".join(path.stem for path in found)
    raise UsageError(f"several instances are running ({names}): choose one with --instance NAME")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 refused/failed, 2 usage, 3 unreachable)."""
    parser = build_parser()
    try:
        args = vars(parser.parse_args(argv))
        if args.get("command") is None:
            parser.error("no command given")
        if "instance" in args and "socket" in args:
            parser.error("argument --socket: not allowed with argument --instance")
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    command: str = args["command"]
    request = Request(command, home_address=args.get("home_address"), level=args.get("level"))
    try:
        path = find_socket(args.get("instance"), args.get("socket"))
    except UsageError as error:
        print(f"mipctl: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Unreachable as error:
        print(f"mipctl: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        response = call(path, request, timeout=args.get("timeout", DEFAULT_TIMEOUT))
    except Unreachable as error:
        print(f"mipctl: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ProtocolError as error:
        print(f"mipctl: {path}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if not response.ok or response.result is None:
        print(f"mipctl: {command}: {response.error}", file=sys.stderr)
        return EXIT_FAILED
    if args.get("json"):
        print(json.dumps(response.result))
    else:
        text = render(command, response.result)
        if text:
            print(text)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
