"""The mobile node's routing and ARP, as the engine's MobilePlane asks (RFC 5944 4.6, 4.1, 3.6).

Where the home address H lives, and what ARP does, per location (interface IF, home prefix /P):

    location        H                       IF's ARP                  mipd's routing
    home            H/P on IF (as found)    on                        none: the node's own routes
    foreign-agent   H/32 on IF              off (NOARP)               default via the agent, onlink
    unknown         H/32 on IF              off (NOARP)               none
    colocated       H/32 on mipm0           on, arp_ignore 1,         the interface's own default;
                                            arp_announce 2            with T: from H into the tunnel

- The node keeps its home address configured at all times (4.6 "keeps its home address"); away,
  as a /32 so that the home prefix is no longer on-link and packets for home-network hosts take
  the default route. Moving it, the new place is filled before the old one is emptied, so it
  never stops being a local address.
- Away, "MUST NOT transmit any broadcast ARP Request or ARP Reply" (4.6): NOARP on IF is set
  before anything else changes. It also stops the node answering ARP at all, which is right: the
  foreign agent keeps a static entry for a visitor (it never ARPs for a home address, 4.2.2), and
  the agent's own address is reached through a permanent neighbour entry made from its
  advertisement's link-layer source (``proto 77``; remade after every NOARP change, which
  flushes the link's neighbours). With NOARP and no entry the kernel would not ARP either: it
  would address frames to our own MAC, which is harmless.
- Co-located, IF holds the care-of address (the runtime's, never touched here) and must answer
  ARP for it; H is moved to ``mipm0`` (mipd.adapters.tunnel.colocated), ``arp_ignore`` 1 makes IF
  answer only for addresses on IF itself, and ``arp_announce`` 2 makes IF's own ARP requests
  carry the care-of address as sender, never H (the source of the packet that caused them).
- Back home the order of 4.6 is: ARP back on and H/P back (this :meth:`MobileRouting.apply`),
  then the gratuitous ARPs (:meth:`MobileRouting.announce_home`), then the deregistration.

The default route via the agent is *not* put in the main table: two rules in mipd's range
(7600-7699) do it without touching anyone's routes, as wg-quick does::

    7600: lookup main suppress_prefixlength 0   (main's routes except its default route)
    7610: lookup 760000                         (default via AGENT dev IF onlink src H proto 77)

So the home router's default route (or a DHCP client's) stays in main, suppressed while the node
is with a foreign agent and in force again when the rules go: nothing to snapshot or restore.
Owned and swept at start: rules in 7600-7699 marked proto 77, routes with proto 77 in 760000 and
760001, NUD_PERMANENT proto 77 neighbour entries on IF. :meth:`MobileRouting.close` restores the
IF's ARP flag, its ``arp_ignore``/``arp_announce`` and the home address as :meth:`start` found
them (if start found none, it added H/32 and takes it away again). What start finds is what close
restores: after a crash while away that is NOARP and H/32, until the engine applies ``home``.
The kernel uses the larger of ``all`` and the interface's ``arp_ignore``/``arp_announce``, so
stricter host-wide values are kept.

Each netlink call costs about a millisecond, and a handoff waits for the routing twice: before the
request leaves, and after the reply (the event loop, which also carries the co-located tunnel, is
busy meanwhile). So :meth:`MobileRouting.apply` remembers the last plane it applied in full: the same
plane again changes nothing; from one foreign agent to another, NOARP, H/32, the closed tunnel and the
two rules are already there, and only the agent's neighbour entry and the default route change (and
the old agent's entry goes); coming from a place without an agent (home, co-located, unknown) there
are no agent rules, route or entries to remove, and from anywhere but co-located no tunnel to close.
Any failure forgets the plane, so that the next apply does everything. Closing the co-located tunnel
deletes ``mipm0``, which takes the kernel some 20 ms: leaving a co-located care-of address without a
reverse tunnel (nothing from H is routed into ``mipm0`` then), H is on IF first and the tunnel is closed
by :meth:`MobileRouting.settle`, which the runtime calls once the turn's request has been sent. Leaving
home likewise: NOARP, H/32 and the agent's route come first, and H/P (harmless meanwhile: nothing ARPs,
and the agent's address is not on the home prefix) is deleted in :meth:`MobileRouting.settle`.

A mobile router (RFC 5177, ``router``): :meth:`MobileRouting.start` turns ``ip_forward`` on (and
:meth:`MobileRouting.close` puts back what it found), so at home the LAN is plainly routed, with no
mipd rule for it. Away, with the plane's ``mobile_networks``, each served prefix is matched to the
LAN interface holding an address inside it and the co-located tunnel device carries the LAN's
traffic (mipd.adapters.tunnel.colocated, "Mobile router"): co-located or UDP-tunnelled as part of
the co-located tunnel; with a foreign agent as the nested tunnel between the home agent and the
home address (RFC 5177 section 7), opened by :meth:`MobileRouting.apply` beside the agent's route
and closed when the plane has no served prefix.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.netlink import mobile as netlink_mobile
from mipd.adapters.netlink import policy as netlink_policy
from mipd.adapters.netlink.mobile import Address
from mipd.adapters.netlink.policy import Rule
from mipd.adapters.tunnel.backend import BackendError
from mipd.adapters.tunnel.colocated import COUNTERS as TUNNEL_COUNTERS
from mipd.adapters.tunnel.colocated import DEVICE, PROC, REVERSE_TABLE, ColocatedTunnel, Colocation
from mipd.core.names import Location
from mipd.core.planes import AnnounceHome, MobilePlane
from mipd.core.wire.arp import ETH_P_ARP, gratuitous_arp, mac_bytes
from mipd.core.wire.tunnel import Encapsulation

LOCATIONS = frozenset(Location)
AGENT_TABLE = 760_000
PRIORITIES = range(7600, 7700)
PRIORITY_MAIN, PRIORITY_AGENT = 7600, 7610
DEFAULT = IPv4Network("0.0.0.0/0")
REPEATS = 3  # gratuitous ARPs per announcement, like mipd.adapters.link.home ("a small number", 4.6)
SPACING = 0.5  # seconds between them
ARP_SYSCTLS = ("arp_ignore", "arp_announce")
COLOCATED_SYSCTLS = {"arp_ignore": "1", "arp_announce": "2"}
COUNTERS = (*TUNNEL_COUNTERS, "gratuitous_arps_sent", "arp_send_errors", "announce_refused_away",
            "mobile_network_without_interface")


class MobileRouting:
    """A mobile node's addresses, ARP flag, routes, rules and co-located tunnel on one interface."""

    def __init__(self, interface: str, home_address: IPv4Address, home_network: IPv4Network, *,
                 device: str = DEVICE, proc: Path = PROC, router: bool = False) -> None:
        self.interface = interface
        self.home_address = home_address
        self.home_network = home_network
        self.proc = proc
        self.location: Location | None = None  # the last applied; None before the first apply
        self.counts: Counter[str] = Counter()
        self.tunnel = ColocatedTunnel(self.counts, device, proc)
        self._found_arp = True
        self._found_home: list[Address] = []
        self._found_sysctls: dict[str, str] = {}
        self._added_home = False  # start added H/32: close takes it away again
        self._mac = b""
        self._sock: socket.socket | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._applied: MobilePlane | None = None  # the last plane applied in full (see the module docstring)
        self._close_later = False  # the co-located tunnel waits for settle() to be closed
        self._trim_later = False  # H/P waits for settle() to be deleted (H/32 is on the interface)
        self.router = router  # RFC 5177: forwards for its mobile networks (ip_forward on)
        self._found_forward: str | None = None  # ip_forward as start found it, when start changed it

    # --- what is ours ---------------------------------------------------------------------------

    def agent_rules(self) -> list[Rule]:
        """7600 ``lookup main suppress_prefixlength 0`` and 7610 ``lookup 760000``."""
        return [Rule(PRIORITY_MAIN, netlink.MAIN_TABLE, suppress_prefixlength=0), Rule(PRIORITY_AGENT, AGENT_TABLE)]

    def _sysctl(self, name: str) -> Path:
        return self.proc / "conf" / self.interface / name

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Note the interface's ARP flag, ARP sysctls and home address; remove what a previous
        mipd left (stale owned rules, routes, neighbours); make sure the home address is
        configured (H/32 on the interface if it is nowhere); open the ARP socket. Raises BackendError."""
        with _errors(f"mobile routing on {self.interface}"):
            self._mac = mac_bytes(netlink.link_address(self.interface))
            self._found_arp = netlink_mobile.link_arp(self.interface)
            self._found_sysctls = {name: self._sysctl(name).read_text().strip() for name in ARP_SYSCTLS}
            self._found_home = self._home_entries()
            self._sweep()
            if self.router:
                forward = self.proc / "ip_forward"
                found = forward.read_text().strip()
                if found != "1":
                    forward.write_text("1")
                    self._found_forward = found
            if not self._found_home:
                netlink_mobile.add_address(Address(IPv4Interface(self.home_address)), self.interface)
                self._added_home = True
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            sock.bind((self.interface, ETH_P_ARP))
            sock.setblocking(False)
            self._sock = sock

    def _home_entries(self) -> list[Address]:
        return [a for a in netlink_mobile.addresses(self.interface) if a.interface.ip == self.home_address]

    def _sweep(self) -> None:
        for rule in netlink_policy.owned_rules(PRIORITIES):
            netlink_policy.delete_rule(rule)
        for route in netlink_policy.table_routes():
            if route.table in (AGENT_TABLE, REVERSE_TABLE):
                netlink_policy.delete_table_route(route.destination, route.table)
        for entry in netlink_policy.owned_neighbours():
            if entry.device == self.interface:
                netlink_policy.delete_neighbour(entry.address, entry.device)

    def apply(self, plane: MobilePlane) -> None:
        """Make routing and ARP match ``plane`` (idempotent; from any location to any other). Runs
        in the asyncio loop (the co-located tunnel reads there). Raises BackendError."""
        if plane.location not in LOCATIONS:
            raise BackendError(f"unknown location {plane.location!r}")
        if plane.home_address != self.home_address:
            raise BackendError(f"home address {plane.home_address} is not {self.home_address}")
        self.settle()
        previous, self._applied = self._applied, None
        if plane == previous:
            self._applied = plane
            return
        with _errors(f"mobile routing for {plane.location}"):
            if plane.location == Location.HOME:
                self._at_home(previous)
            elif plane.location == Location.COLOCATED:
                self._colocated(plane, previous)
            else:
                self._away(plane, previous)
        self.location = plane.location
        self._applied = plane

    def _at_home(self, previous: MobilePlane | None) -> None:
        # 4.6 step 1: ARP (and with it the replies for H) back on, H with its home prefix.
        self._remove_agent(previous)
        netlink_mobile.set_link_arp(self.interface, True)
        self._restore_sysctls()
        prefixed = [a for a in self._found_home if a.interface.network.prefixlen == self.home_network.prefixlen]
        home = prefixed[0] if prefixed else Address(IPv4Interface(f"{self.home_address}/{self.home_network.prefixlen}"),
                                                    self.home_network.broadcast_address)
        self._home_on_interface([home])
        self._close_tunnel(previous)
        self._close_nested()

    def _away(self, plane: MobilePlane, previous: MobilePlane | None) -> None:
        # Already away (with an agent or none): NOARP, H/32, no tunnel and the sysctls are in place.
        away = previous is not None and previous.location in (Location.FOREIGN_AGENT, Location.UNKNOWN)
        if not away:
            # NOARP first: from here on no ARP leaves the node, whatever changes next (4.6).
            netlink_mobile.set_link_arp(self.interface, False)
            if previous is not None and previous.location == Location.HOME:
                netlink_mobile.add_address(Address(IPv4Interface(self.home_address)), self.interface)
                self._trim_later = True
            else:
                self._home_on_interface([Address(IPv4Interface(self.home_address))])
            self._close_tunnel(previous)
            self._restore_sysctls()
        if plane.location == Location.UNKNOWN:
            self._remove_agent(previous)
            self._close_nested()
            return
        if plane.agent is None or plane.agent_link_address is None:
            raise BackendError("a foreign-agent plane needs the agent's address and link-layer address")
        # After NOARP (which flushes the neighbours), before the route that needs it.
        netlink_policy.replace_static_neighbour(plane.agent, plane.agent_link_address, self.interface)
        netlink_mobile.replace_gateway_route(DEFAULT, plane.agent, device=self.interface, table=AGENT_TABLE,
                                             source=self.home_address)
        with_agent = previous is not None and previous.location == Location.FOREIGN_AGENT
        if not with_agent:
            for rule in self.agent_rules():
                netlink_policy.add_rule(rule)
        if previous is None:
            for entry in netlink_policy.owned_neighbours():  # an earlier agent's entry, of whatever came before
                if entry.device == self.interface and entry.address != plane.agent:
                    netlink_policy.delete_neighbour(entry.address, entry.device)
        elif with_agent and previous.agent is not None and previous.agent != plane.agent:
            netlink_policy.delete_neighbour(previous.agent, self.interface)  # the agent left behind
        if plane.mobile_networks:
            # RFC 5177 section 7: the prefixes' traffic in the nested tunnel between the home agent and H.
            self._close_later = False
            self.tunnel.apply(Colocation(plane.home_address, plane.home_agent, plane.home_address,
                                        Encapsulation.IPIP, True, False, plane.mobile_networks,
                                        self._lan(plane.mobile_networks), nested=True))
        else:
            self._close_nested()

    def _colocated(self, plane: MobilePlane, previous: MobilePlane | None) -> None:
        if plane.care_of_address is None:
            raise BackendError("a colocated plane needs the care-of address")
        # arp_ignore/arp_announce before ARP comes back on, H off the interface before that too.
        for name, value in COLOCATED_SYSCTLS.items():
            self._sysctl(name).write_text(value)
        self.tunnel.apply(Colocation(plane.home_address, plane.home_agent, plane.care_of_address,
                                    plane.encapsulation, plane.reverse, plane.udp_tunnel, plane.mobile_networks,
                                    self._lan(plane.mobile_networks)))
        self._home_on_interface([])
        self._remove_agent(previous)  # before ARP is back: nothing may ARP for the old agent
        netlink_mobile.set_link_arp(self.interface, True)

    def _home_on_interface(self, wanted: list[Address]) -> None:
        """Exactly ``wanted`` forms of H on the interface: add them first, then delete the others."""
        for address in wanted:
            netlink_mobile.add_address(address, self.interface)
        keep = {a.interface for a in wanted}
        for present in self._home_entries():
            if present.interface not in keep:
                netlink_mobile.delete_address(present.interface, self.interface)

    def _close_tunnel(self, previous: MobilePlane | None) -> None:
        """Close the co-located tunnel, unless the last plane applied shows there is none; with no
        reverse tunnel, in :meth:`settle` (the caller has put H on IF)."""
        if previous is not None and previous.location == Location.COLOCATED and not previous.reverse:
            self._close_later = True
        elif previous is None or previous.location == Location.COLOCATED:
            self.tunnel.close()

    def _close_nested(self) -> None:
        """Close the nested tunnel of a mobile router with a foreign agent, if it is open."""
        colocation = self.tunnel.table.colocation
        if colocation is not None and colocation.nested:
            self.tunnel.close()

    def _lan(self, networks: tuple[IPv4Network, ...]) -> tuple[tuple[IPv4Network, str], ...]:
        """Each served prefix with the interface that holds an address inside it (RFC 5177: the
        LAN behind the router); a prefix found on no interface is left out (counted)."""
        if not networks:
            return ()
        found: list[tuple[IPv4Network, str]] = []
        held = [(a.interface.ip, name) for name in netlink_policy.link_names()
                if name not in (self.interface, self.tunnel.device) for a in netlink_mobile.addresses(name)]
        for network in networks:
            interface = next((name for ip, name in held if ip in network), None)
            if interface is None:
                self.counts["mobile_network_without_interface"] += 1
            else:
                found.append((network, interface))
        return tuple(found)

    def settle(self) -> None:
        """What :meth:`apply` left for after the turn's datagrams: H/P off the interface, the co-located
        tunnel closed. Raises BackendError."""
        if self._trim_later:
            self._trim_later = False
            with _errors("removing the home prefix's form of the home address"):
                self._home_on_interface([Address(IPv4Interface(self.home_address))])
        if self._close_later:
            self._close_later = False
            with _errors("closing the co-located tunnel"):
                self.tunnel.close()

    def _remove_agent(self, previous: MobilePlane | None = None) -> None:
        """Remove the agent's rules, route and neighbour entries, unless the last plane applied shows
        there are none (home, co-located, unknown: each removed them)."""
        if previous is not None and previous.location != Location.FOREIGN_AGENT:
            return
        for rule in self.agent_rules():
            netlink_policy.delete_rule(rule)
        netlink_policy.delete_table_route(DEFAULT, AGENT_TABLE)
        if previous is not None and previous.agent is not None:
            netlink_policy.delete_neighbour(previous.agent, self.interface)  # the one entry it made
            return
        for entry in netlink_policy.owned_neighbours():
            if entry.device == self.interface:
                netlink_policy.delete_neighbour(entry.address, entry.device)

    def _restore_sysctls(self) -> None:
        for name, value in self._found_sysctls.items():
            path = self._sysctl(name)
            if path.read_text().strip() != value:
                path.write_text(value)

    # --- gratuitous ARP (4.6) -------------------------------------------------------------------

    def announce_home(self, action: AnnounceHome) -> None:
        """Broadcast gratuitous ARPs for ``action.home_address`` with the interface's MAC, now and
        :data:`REPEATS` - 1 more times :data:`SPACING` s apart (in the running loop, if any).
        Refused (counted) while an away location is applied: away, the node "MUST NOT transmit
        any broadcast ARP" (4.6) -- so apply the ``home`` plane first, as 4.6 orders."""
        if self.location not in (None, Location.HOME):
            self.counts["announce_refused_away"] += 1
            return
        frame = gratuitous_arp(self._mac, action.home_address).encode()
        self._send_arp(frame)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timers = [t for t in self._timers if not t.cancelled()]
        for i in range(1, REPEATS):
            self._timers.append(loop.call_later(i * SPACING, self._send_arp, frame))

    def _send_arp(self, frame: bytes) -> None:
        if self._sock is None or self.location not in (None, Location.HOME):
            return  # closed, or left home again before a repeat was due
        try:
            self._sock.send(frame)
            self.counts["gratuitous_arps_sent"] += 1
        except OSError:
            self.counts["arp_send_errors"] += 1

    def counters(self) -> dict[str, int]:
        """Every counter of :data:`COUNTERS`, zero or not."""
        return {name: self.counts[name] for name in COUNTERS}

    def close(self) -> None:
        """Leave the node as :meth:`start` found it: no mipd rule, route, neighbour entry or
        ``mipm0``; the home address, ARP flag and ARP sysctls as they were. Idempotent."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        try:
            with _errors(f"cannot restore {self.interface}"):
                if self.location is not None:
                    self._home_on_interface(list(self._found_home))
                    self.tunnel.close()
                    self._remove_agent()
                    self._sweep()
                    self._restore_sysctls()
                    netlink_mobile.set_link_arp(self.interface, self._found_arp)
                if self._added_home:
                    netlink_mobile.delete_address(IPv4Interface(self.home_address), self.interface)
                    self._added_home = False
                if self._found_forward is not None:
                    (self.proc / "ip_forward").write_text(self._found_forward)
                    self._found_forward = None
        finally:
            self._close_later = self._trim_later = False
            self.tunnel.close()
            self.location = None


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn a netlink/OS error into a BackendError that says what was being done."""
    try:
        yield
    except OSError as exc:
        raise BackendError(f"{what}: {exc}") from exc
