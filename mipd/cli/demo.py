"""``mipd demo [--moves N] [--interval-ms MS] [--reverse-tunneling] [--registration-required] [--nat]
[--mobile-router] [--keep] [--plot FILE.png] [--breakdown FILE.json]``:
the one-machine roaming demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mipd.cli.subcommand import Subparsers

HELP = "the one-machine roaming demo (as root): a mobile node roams while a correspondent pings it"
DESCRIPTION = """\
Builds a throwaway topology of network namespaces (names mipdemo-XXXXXX-*), runs every role as a real
'mipd run --profile ...' process from generated profiles, and moves the mobile node between links while a
correspondent pings its home address and keeps one TCP connection sending to it:

  cn 10.1.0.2 --- home link --- 10.1.0.1 [home agent] 10.6.0.1 --- visited 3 (no agent: co-located 10.6.0.50)
                                          |          \\
                                 [foreign agent 1]  [foreign agent 2]
                                   10.2.0.1 visited 1   10.3.0.1 visited 2
  mn 10.1.0.10 (home address): its link moves between the four links (carrier down, other bridge, up)

The tour: home -> visited 1 -> visited 2 -> home -> co-located (4 moves). On the co-located link the demo
gives the node an address and a default route, as DHCP would. A progress line shows where the node is; at
the end a table shows per move the handoff time (link change to the first ping answered over the new path),
pings lost and the registration round trip, then the summary line:

  roaming: moves=N delivered=X/Y lost=L handoff_ms_median=M tcp_survived=yes|no

With --registration-required both foreign agents advertise R (registration required) and the node
prefers a co-located care-of address (care_of: colocated); on visited 1 and 2 it also gets a lease once it
has registered, so it could go co-located there, but R keeps it registered through the foreign agent. On
visited 3, where no agent advertises, it still registers co-located.

With --nat the tour goes on from the co-located link to a fifth stop, a visited network behind a real
Linux NAT (nftables masquerade; 5 moves unless --moves says otherwise):

  10.1.0.1 [home agent] 10.7.0.1 --- 10.7.0.2 [NAT] 192.168.4.1 --- behind NAT (lease 192.168.4.50)

The node registers co-located and asks for UDP tunnelling (RFC 3519); the home agent sees the request
come from the NAT's address, not the care-of address, and tunnels over UDP to the NAT's mapping.

With --mobile-router the node is a mobile router (RFC 5177) with a vehicle LAN behind it, and a second
correspondent sits beyond the home agent:

  far 10.8.0.2 --- 10.8.0.1 [home agent]
  mn lan0 192.168.50.1 --- LAN host 192.168.50.10 (the mobile prefix 192.168.50.0/24)

The node asks for 192.168.50.0/24 in every registration (explicit mode, with reverse tunneling) and the
home agent routes the prefix through the node's tunnel while it is away; at home an ordinary route via the
node's home address (metric 100) reaches the LAN. The far correspondent pings the LAN host and keeps a
TCP connection sending to it while the node tours home -> visited 1 (foreign agent) -> co-located ->
behind NAT -> home (4 moves). The table gains the LAN host's handoff time and pings lost and sent per
move; the summary line goes on with the LAN host's reachability:

  roaming: ... tcp_survived=yes|no lan_delivered=X/Y lan_lost=L lan_handoff_ms_median=M lan_tcp_survived=yes|no

With --plot FILE.png it also draws the correspondent's ping round trips over time, each move and each
lost ping, and the registration round trip of each move, into FILE.png (needs matplotlib: mipd[plot]).

With --breakdown FILE.json it also writes where each move's handoff time went (discovery, the node's
request, the foreign agent's relay, the home agent, the relayed reply, the node's routes; each role's
commit time) and the median of each stage, as JSON (mipd(8), docs/interfaces.md).

The daemons' state goes with the demo's directory, so their profiles say durability: process-crash
(mip.yaml(5)): no commit waits for the disk.

Everything (namespaces, links, processes, files) is removed at the end, on failure and on Ctrl-C.
Exit status: 0 the tour completed, 1 it failed, 130 interrupted."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _interval(text: str) -> float:
    value = float(text)
    if not 5 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 5 and 1000")
    return value


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the ``mipd`` command line."""
    parser = subparsers.add_parser("demo", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=_positive, default=None, metavar="N",
                        help="number of moves; the tour's moves repeat in order until N are made (default 4, "
                             "5 with --nat, 4 with --mobile-router)")
    parser.add_argument("--interval-ms", type=_interval, default=20.0, metavar="MS",
                        help="the correspondent's ping interval in milliseconds (default 20)")
    parser.add_argument("--reverse-tunneling", action="store_true",
                        help="the mobile node asks for reverse tunneling (its profile's reverse_tunneling: true)")
    parser.add_argument("--registration-required", action="store_true",
                        help="both foreign agents advertise R (their profiles' registration_required: true); the "
                             "node prefers co-location (care_of: colocated) but must register through them")
    parser.add_argument("--nat", action="store_true",
                        help="end the tour on a visited network behind a real NAT (nftables masquerade): the node "
                             "registers co-located and its home agent tunnels to it over UDP (RFC 3519)")
    parser.add_argument("--mobile-router", action="store_true",
                        help="the node is a mobile router with a vehicle LAN (RFC 5177): a correspondent beyond "
                             "the home agent pings a LAN host and keeps a TCP connection to it on the tour home -> "
                             "visited 1 -> co-located -> behind NAT -> home (implies --nat and --reverse-tunneling)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the topology and daemons up at the end and print how to look at them")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="draw the ping round trips, moves, lost pings and registration round trips into "
                             "FILE.png (needs matplotlib: pip install 'mipd[plot]')")
    parser.add_argument("--breakdown", type=Path, metavar="FILE.json",
                        help="write each move's handoff stages and their medians, in milliseconds, to FILE.json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mipd.demo import plot  # noqa: PLC0415 - keeps other commands light
    from mipd.demo.session import Options  # noqa: PLC0415
    from mipd.demo.session import run as run_demo  # noqa: PLC0415

    if args.plot is not None and not plot.available():
        print(plot.MISSING, file=sys.stderr)
        return 1
    if args.plot is not None and not args.plot.parent.is_dir():
        print(f"mipd demo: --plot {args.plot}: {args.plot.parent} is not a directory", file=sys.stderr)
        return 1
    if args.breakdown is not None and not args.breakdown.parent.is_dir():
        print(f"mipd demo: --breakdown {args.breakdown}: {args.breakdown.parent} is not a directory", file=sys.stderr)
        return 1
    moves = args.moves if args.moves is not None else 5 if args.nat and not args.mobile_router else 4
    return run_demo(Options(moves=moves, interval_ms=args.interval_ms, reverse_tunneling=args.reverse_tunneling,
                            registration_required=args.registration_required, nat=args.nat, keep=args.keep,
                            plot=args.plot, breakdown=args.breakdown, mobile_router=args.mobile_router))
