"""``mipd cleanup``: remove what mipd left in this network namespace (after a crash, or when uninstalled).

A daemon that stops removes what it made; one that crashed (or was killed with -9) leaves its
forwarding state behind until the next start reconciles it. This command removes every mark of
mipd's ownership in the current network namespace, and nothing else:

- policy rules in mipd's reserved priorities (mobile node 7600-7699, foreign agent 7700-7799)
  marked with protocol 77 (or with no protocol at all: kernels before 4.17 keep none);
- routes with protocol 77 (RTPROT_MIPD) in any table: the home agent's tunnel routes, the foreign
  agent's visitor table 770000 and reverse tables, the mobile node's tables 760000/760001;
- permanent neighbour entries with protocol 77 (the foreign agent's visitors, the mobile node's
  agent);
- the links mipd creates: ``mipip0``, ``mipgre0`` (kernel tunnels), ``mip0``, ``mipu0``, ``mipv0``, ``mipm0``
  (userspace TUN devices), ``mipprobeN`` (a kernel-tunnel probe) and ``mipnHHHHHHHH`` (kernel nesting devices).

Not removed, because nothing marks them as mipd's: proxy-ARP entries, the sysctls an agent sets
while it runs, and a mobile node's home address and NOARP flag on its interface.

Run it only while no instance runs in this namespace (the package's removal stops them first):
it would pull the routes from under a running one.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from mipd.cli.subcommand import Subparsers

if TYPE_CHECKING:
    from mipd.adapters.netlink.policy import Rule

HELP = "remove the tunnels, routes and rules a crashed mipd left in this network namespace"
RULE_PRIORITIES = range(7600, 7800)  # mobile_routing.PRIORITIES + visitor_routing.PRIORITIES
_PROBE = re.compile(r"mipprobe\d+")


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Add ``cleanup`` to the ``mipd`` command line."""
    parser = subparsers.add_parser(
        "cleanup", help=HELP,
        description=HELP + ": links mipip0, mipgre0, mip0, mipu0, mipv0, mipm0; routes and neighbour entries with "
        "protocol 77; rules with priorities 7600-7799 and protocol 77. Prints one line per object removed. "
        "Stop every instance in the namespace first. Exit status: 0 done, 1 a removal failed.")
    parser.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    parser.set_defaults(handler=run)


def owned_links(names: list[str]) -> list[str]:
    """Of the link ``names``, those mipd creates."""
    from mipd.adapters.tunnel import colocated as mobile_colocated  # noqa: PLC0415
    from mipd.adapters.tunnel import kernel as tunnel_kernel  # noqa: PLC0415
    from mipd.adapters.tunnel import udp_tunnel, visitor_userspace  # noqa: PLC0415
    from mipd.adapters.tunnel import userspace as tunnel_userspace  # noqa: PLC0415

    fixed = {*tunnel_kernel.DEVICES.values(), tunnel_userspace.DEVICE, udp_tunnel.DEVICE, visitor_userspace.DEVICE,
             mobile_colocated.DEVICE}
    nesting = tunnel_kernel.NESTING_DEVICE
    return [name for name in names if name in fixed or _PROBE.fullmatch(name) or nesting.fullmatch(name)]


def run(args: argparse.Namespace) -> int:
    """Remove (or with --dry-run list) mipd's rules, routes, neighbour entries and links."""
    from mipd.adapters.netlink import calls as netlink  # noqa: PLC0415 - keeps `mipd --help` light

    verb = "would remove" if args.dry_run else "removed"
    what = "listing what mipd owns"
    try:
        found = owned()
        for what, remove in found:
            if not args.dry_run:
                remove()
            print(f"{verb} {what}")
    except OSError as error:
        hint = " (mipd cleanup needs root: CAP_NET_ADMIN)" if error.errno == errno.EPERM else ""
        print(f"mipd cleanup: {what}: {error.strerror or error}{hint}", file=sys.stderr)
        return 1
    finally:
        netlink.close()
    if not found:
        print("nothing of mipd's to remove")
    return 0


def owned() -> list[tuple[str, Callable[[], None]]]:
    """What mipd owns in this namespace, in the order it is removed: (description, removal)."""
    from mipd.adapters.netlink import calls as netlink  # noqa: PLC0415
    from mipd.adapters.netlink import policy as netlink_policy  # noqa: PLC0415

    found: list[tuple[str, Callable[[], None]]] = []
    for rule in netlink_policy.owned_rules(RULE_PRIORITIES):
        found.append((f"rule {_describe_rule(rule)}", partial(netlink_policy.delete_rule, rule)))
    for route in netlink_policy.table_routes():
        device = f" dev {route.device}" if route.device else ""
        found.append((f"route {route.destination}{device} table {route.table} proto 77",
                      partial(netlink_policy.delete_table_route, route.destination, route.table)))
    for entry in netlink_policy.owned_neighbours():
        found.append((f"neighbour {entry.address} dev {entry.device}",
                      partial(netlink_policy.delete_neighbour, entry.address, entry.device)))
    for name in owned_links(netlink_policy.link_names()):
        found.append((f"link {name}", partial(netlink.delete_link, name)))
    return found


def _describe_rule(rule: Rule) -> str:
    words = [f"{rule.priority}:"]
    if rule.source is not None:
        words.append(f"from {rule.source}")
    if rule.iif is not None:
        words.append(f"iif {rule.iif}")
    words.append("blackhole" if rule.blackhole else f"lookup {rule.table}")
    if rule.suppress_prefixlength is not None:
        words.append(f"suppress_prefixlength {rule.suppress_prefixlength}")
    return " ".join(words)
