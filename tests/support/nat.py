"""A real Linux NAT for the tests: a namespace that masquerades a private visited network with nftables.

    inside hosts 10.8.0.x --- br-nat (in ``sw``) --- inside0 10.8.0.1 [nat] outside0 10.7.0.2 --- wan3 10.7.0.1 [ha]

The NAT namespace (``nat`` in the test's :class:`~tests.support.netns.Topology`) forwards between a
bridge in namespace ``sw`` (the visited network: hosts join it with :func:`tests.support.roaming.port`,
a mobile node's link is moved onto it with :func:`tests.support.roaming.move`) and a veth to the
namespace towards the home network (the home agent's, by default). What leaves through ``outside0``
has its source rewritten to the NAT's outside address by ``masquerade`` (conntrack keeps the mapping);
from outside, only what belongs to a mapping comes in: an unsolicited datagram to the NAT's address
reaches nobody inside, and nothing is routed to the private network. As at most home routers, only
TCP, UDP and ICMP cross (``carry_other_protocols`` lets everything through): an IP-in-IP or GRE
tunnel to a node behind the NAT is dead, which is what RFC 3519 UDP tunnelling is for.

Options:

- ``udp_timeout`` (seconds) sets ``net.netfilter.nf_conntrack_udp_timeout`` and
  ``nf_conntrack_udp_timeout_stream`` inside the NAT namespace (they are per network namespace: the
  host's and other tests' stay as they are), so a mapping without traffic goes away quickly.
- ``randomize_ports``: ``masquerade random,fully-random``. Without it Linux keeps the inside source
  port when it is free on the outside address, also for a new mapping after :meth:`Nat.flush`; with
  it every new mapping gets a freshly drawn source port (as carrier-grade NATs do), so a NAT reboot
  shows up at the home agent as a new (address, port).

:meth:`Nat.flush` empties the conntrack table (``conntrack -F``): a NAT reboot, every mapping lost.
:meth:`Nat.mappings` lists the current UDP mappings (``conntrack -L -p udp``).

Everything is removed when the context ends, also on failure: the NAT namespace (and so both its
links) and the bridge.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

from tests.support.netns import Topology
from tests.support.roaming import port
from tests.support.tools import tool

NAT_INSIDE, NAT_OUTSIDE, NAT_PEER = "10.8.0.1", "10.7.0.2", "10.7.0.1"
INSIDE_NETWORK = "10.8.0.0/24"
BRIDGE = "br-nat"
TABLE = "mipt_nat"


class NatError(RuntimeError):
    """Setting up or inspecting the NAT failed."""


@dataclass(frozen=True)
class Mapping:
    """One UDP conntrack entry: the inside host's (address, port) talking to a remote (address, port),
    seen from outside as the NAT's public (address, port)."""

    inside: tuple[IPv4Address, int]
    remote: tuple[IPv4Address, int]
    public: tuple[IPv4Address, int]
    timeout: int  # seconds left
    replied: bool  # the remote has answered (not [UNREPLIED])
    assured: bool


_FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")


def parse_conntrack(text: str) -> list[Mapping]:
    """The UDP entries of ``conntrack -L -p udp`` output (the default format)."""
    found: list[Mapping] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "udp":
            continue
        fields = _FIELD.findall(line)
        if len(fields) < 8:
            continue
        original = dict(fields[:4])
        reply = dict(fields[4:8])
        found.append(Mapping(
            inside=(IPv4Address(original["src"]), int(original["sport"])),
            remote=(IPv4Address(original["dst"]), int(original["dport"])),
            public=(IPv4Address(reply["dst"]), int(reply["dport"])),
            timeout=int(words[2]),
            replied="[UNREPLIED]" not in words,
            assured="[ASSURED]" in words,
        ))
    return found


def _run(namespace: str, *argv: str) -> str:
    out = subprocess.run([tool("ip"), "netns", "exec", namespace, *argv], capture_output=True, text=True,
                         timeout=30, check=False)
    if out.returncode:
        raise NatError(f"{' '.join(argv)} in {namespace}: {out.stderr.strip()}")
    return out.stdout


def _ip(*args: str) -> None:
    out = subprocess.run([tool("ip"), *args], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode:
        raise NatError(f"ip {' '.join(args)}: {out.stderr.strip()}")


def ruleset(*, randomize_ports: bool, carry_other_protocols: bool) -> str:
    """The NAT namespace's nftables ruleset (``nft -f`` text)."""
    protocols = "" if carry_other_protocols else "meta l4proto { tcp, udp, icmp } "
    random = " random,fully-random" if randomize_ports else ""
    return (
        f"table ip {TABLE} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy drop;\n"
        "    ct state established,related accept\n"
        f'    iifname "inside0" oifname "outside0" {protocols}accept\n'
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "outside0" {protocols}masquerade{random}\n'
        "  }\n"
        "}\n"
    )


@dataclass
class Nat:
    """A running NAT: its namespace, addresses and conntrack table."""

    topo: Topology
    namespace: str  # the full namespace name
    bridge: str  # the visited network's bridge in ``sw``
    inside_address: IPv4Address  # the visited network's router (hosts behind route via it)
    outside_address: IPv4Address  # the NAT's public address: what the outside sees as the source
    peer_address: IPv4Address  # the outside neighbour's address on the NAT's outside link

    def sysctl(self, name: str) -> str:
        """``/proc/sys/net/netfilter/NAME`` inside the NAT namespace."""
        return _run(self.namespace, tool("cat"), f"/proc/sys/net/netfilter/{name}").strip()

    def set_udp_timeout(self, seconds: int) -> None:
        """Set both UDP conntrack timeouts (unreplied and stream) inside the NAT namespace."""
        for name in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            _run(self.namespace, tool("sysctl"), "-q", "-w", f"net.netfilter.{name}={seconds}")
            if self.sysctl(name) != str(seconds):
                raise NatError(f"{name} stays {self.sysctl(name)} in {self.namespace}")

    def flush(self) -> None:
        """Empty the conntrack table: a NAT reboot, every mapping is gone."""
        _run(self.namespace, tool("conntrack"), "-F")

    def mappings(self) -> list[Mapping]:
        """The current UDP mappings."""
        return parse_conntrack(_run(self.namespace, tool("conntrack"), "-L", "-p", "udp"))

    def mapping(self, inside: tuple[str, int]) -> Mapping | None:
        """The mapping of the inside (address, port), if there is one (the first, if several remotes)."""
        key = (IPv4Address(inside[0]), inside[1])
        return next((m for m in self.mappings() if m.inside == key), None)

    def close(self) -> None:
        subprocess.run([tool("ip"), "netns", "del", self.namespace], capture_output=True, timeout=30, check=False)
        if self.namespace in self.topo.namespaces:
            self.topo.namespaces.remove(self.namespace)
        if "sw" in {n.removeprefix(f"{self.topo.prefix}-") for n in self.topo.namespaces}:
            subprocess.run([tool("ip"), "-n", self.topo.ns("sw"), "link", "del", self.bridge],
                           capture_output=True, timeout=30, check=False)


@contextmanager
def nat(topo: Topology, *, name: str = "nat", peer: str = "ha", peer_interface: str = "wan3",
        peer_address: str = f"{NAT_PEER}/24", outside_address: str = f"{NAT_OUTSIDE}/24",
        inside_address: str = f"{NAT_INSIDE}/24", bridge: str = BRIDGE, udp_timeout: int | None = None,
        randomize_ports: bool = False, carry_other_protocols: bool = False) -> Iterator[Nat]:
    """A NAT namespace ``name`` between a new bridge ``bridge`` in ``sw`` (``inside0`` at ``inside_address``)
    and namespace ``peer`` (``outside0`` at ``outside_address``, ``peer_interface`` at ``peer_address`` in
    ``peer``); its default route is via the peer. Removed at the end, also on failure."""
    sw = topo.ns("sw")
    namespace = topo.ns(name)
    box = Nat(topo, namespace, bridge, IPv4Interface(inside_address).ip, IPv4Interface(outside_address).ip,
              IPv4Interface(peer_address).ip)
    try:
        _ip("-n", sw, "link", "add", bridge, "type", "bridge")
        _ip("-n", sw, "link", "set", bridge, "up")
        port(topo, name, "inside0", inside_address, bridge)
        topo.link(name, "outside0", outside_address, peer, peer_interface, peer_address)
        _ip("-n", namespace, "route", "add", "default", "via", str(box.peer_address))
        _run(namespace, tool("sysctl"), "-q", "-w", "net.ipv4.ip_forward=1")
        rules = subprocess.run([tool("ip"), "netns", "exec", namespace, tool("nft"), "-f", "-"],
                               input=ruleset(randomize_ports=randomize_ports,
                                             carry_other_protocols=carry_other_protocols),
                               capture_output=True, text=True, timeout=30, check=False)
        if rules.returncode:
            raise NatError(f"nft -f in {namespace}: {rules.stderr.strip()}")
        if udp_timeout is not None:
            box.set_udp_timeout(udp_timeout)
        yield box
    finally:
        box.close()
