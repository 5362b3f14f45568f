"""The home agent's UDP tunnel data plane (RFC 3519 3.3): MIP Tunnel Data on UDP port 434.

Linux has no kernel encapsulation with the four-byte MIP tunnel data header, so UDP-tunnelled
bindings always travel through this userspace plane, whichever backend (kernel or userspace)
carries the other bindings:

- **Forward.** For each UDP-tunnelled home address H a host route ``H/32 dev mipu0 proto 77``
  makes the kernel forward H's packets into the TUN device ``mipu0``. Each one read from it goes
  out as a Tunnel Data message (type 4, next header 4: the inner IPv4 packet follows) from the
  home agent's UDP port 434 socket to the binding's outer endpoint, the NAT's address and port
  the registration came from. The TUN MTU leaves room for the outer IP, UDP and tunnel data
  headers, so the kernel fragments (or answers "fragmentation needed") before we encapsulate.
- **Reverse.** Type-4 datagrams that arrive on UDP port 434 are handed here by the runtime (not
  to the registration engine). One is accepted only if its next header is 4, its inner packet is
  a well-formed IPv4 datagram, and its outer source address and port are the outer endpoint of a
  binding of the inner source (the home address); the inner packet is then written to ``mipu0``
  and the kernel forwards it, or answers it when it is for this host: a keepalive, an ICMP Echo
  Request to the home agent, is answered through the same route and tunnel. Strict rp_filter on
  ``mipu0`` holds, as H's route points back into it.

Mobile networks (RFC 5177): a UDP-tunnelled mobile router's accepted prefixes get routes
``P dev mipu0 proto 77`` as well (with an MTU 20 bytes smaller). A packet to a host in P goes to
the router's outer endpoint inside Tunnel Data; when the care-of address is a foreign agent's (D
clear: the agent asked for the UDP tunnel) it is first encapsulated IP-in-IP to the router's home
address, which the agent delivers. A Tunnel Data message from the router's outer endpoint is
accepted when its inner source is the home address or inside an accepted prefix, or, nested, when
it is IP-in-IP from the home address to us carrying a datagram from inside a prefix; a nested
datagram from any other source is dropped (``dropped_udp_foreign_source``).

Every packet is counted; drops under ``dropped_udp_<reason>`` (reported in the journal through
mipd.core.counters.DropReport). The decisions are in :class:`UdpTunnelTable`, which does no I/O.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from mipd.adapters.netlink import batch as netlink_batch
from mipd.adapters.netlink import calls as netlink
from mipd.adapters.tunnel.backend import BackendError, home_routes
from mipd.adapters.tunnel.prefix_owners import PrefixOwners
from mipd.adapters.tunnel.userspace import close_tun, ipv4_only, open_tun, read_tun, write_into_tun
from mipd.core.planes import HALF_BOUND, DataPlane, Endpoint, UdpTunnelEndpoint
from mipd.core.wire import ipv4
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.ipv4 import Protocol
from mipd.core.wire.nat import TUNNEL_DATA_TYPE, Encapsulation, TunnelData, decode_tunnel_data
from mipd.core.wire.tunnel import Encapsulation as Tunnelling
from mipd.core.wire.tunnel import TunnelRefused, decapsulate, encapsulate

DEVICE = "mipu0"
# 1500 on the path, less the outer IPv4 header (20), UDP (8) and the tunnel data header (4).
UDP_TUN_MTU = 1468
NESTED_MTU = UDP_TUN_MTU - 20  # a mobile network's route through a foreign agent: one more IP-in-IP header
PROC = Path("/proc/sys/net/ipv4")

COUNTERS = (
    "udp_encapsulated",  # Tunnel Data messages sent to an outer endpoint
    "udp_decapsulated",  # inner packets of Tunnel Data messages handed to the kernel
    "dropped_udp_no_binding",  # read from mipu0 for a home address with no UDP-tunnelled binding
    "dropped_udp_malformed",  # not a tunnel data message, or its inner packet is no IPv4 datagram
    "dropped_udp_next_header",  # next header other than 4 (we tunnel IP-in-IP inside UDP only)
    "dropped_udp_not_registered",  # outer source address/port not the binding of the inner source
    "dropped_udp_other_destination",  # sent to a broadcast address of UDP port 434, not to ours
    "dropped_udp_foreign_source",  # nested from a mobile router: inner source outside its prefixes (RFC 5177)
    "dropped_udp_awaiting_keepalive",  # for a half-bound tunnel (R, 4.6) whose first keepalive is still due
    "udp_half_bound_learnt",  # half-bound tunnels that took the port of their first keepalive
    "udp_send_errors",
    "udp_write_errors",
)

_UNSET = IPv4Address(0)
SendUdp = Callable[[bytes, IPv4Address, int], bool]  # payload, destination, port -> sent?


def is_tunnel_data(payload: bytes) -> bool:
    """Whether a UDP port 434 payload is a MIP Tunnel Data message (message type 4, RFC 3519 3.3)."""
    return bool(payload) and payload[0] == TUNNEL_DATA_TYPE


class UdpTunnelTable:
    """The UDP-tunnelled endpoints of every away node and the per-packet decisions, without I/O."""

    def __init__(self, local: IPv4Address = _UNSET) -> None:
        self.local = local  # the home agent's address: a keepalive's inner destination
        self.endpoints: dict[IPv4Address, tuple[Endpoint, ...]] = {}
        self.routers = PrefixOwners()  # RFC 5177: the UDP-tunnelled routers' accepted prefixes
        self.counts: Counter[str] = Counter()
        self._identification = 0

    def set(self, change: DataPlane) -> tuple[IPv4Network, ...]:
        """Keep the UDP-tunnelled endpoints of ``change`` (others are not this plane's) and its
        prefixes; return the prefixes it no longer has here."""
        udp = tuple(e for e in change.endpoints if e.outer is not None)
        if udp:
            self.endpoints[change.home_address] = udp
        else:
            self.endpoints.pop(change.home_address, None)
        return self.routers.set(change.home_address, change.prefixes if udp else ())

    def clear(self) -> None:
        self.endpoints.clear()
        self.routers.clear()

    def forward(self, datagram: bytes) -> list[tuple[bytes, UdpTunnelEndpoint]]:
        """The Tunnel Data payloads (and their outer endpoints) that carry ``datagram`` to its node."""
        try:
            header, _ = ipv4.parse(datagram)
        except DecodeError:
            self.counts["dropped_udp_malformed"] += 1
            return []
        home = header.destination
        endpoints = self.endpoints.get(home, ())
        via_home = False
        if not endpoints and (router := self.routers.owner(home)) is not None:
            home, endpoints, via_home = router, self.endpoints.get(router, ()), True
        if not endpoints:
            self.counts["dropped_udp_no_binding"] += 1
            return []
        payload = TunnelData(Encapsulation.IP_IN_IP, datagram).encode()
        nested = b""
        if via_home and any(not e.decapsulates for e in endpoints):
            # RFC 5177, a foreign agent's care-of address: first IP-in-IP to the router's home address.
            self._identification = (self._identification + 1) & 0xFFFF
            try:
                inner = encapsulate(datagram, self.local, home, Tunnelling.IPIP, self._identification,
                                    local_addresses=(self.local,))
            except TunnelRefused:  # TTL 0, too big: a datagram not to tunnel
                self.counts["dropped_udp_malformed"] += 1
                return []
            nested = TunnelData(Encapsulation.IP_IN_IP, inner).encode()
        out = [(nested if via_home and not e.decapsulates else payload, e.outer) for e in endpoints
               if e.outer is not None and e.outer.port != HALF_BOUND]
        if not out:
            self.counts["dropped_udp_awaiting_keepalive"] += 1  # half bound: no port yet (4.6)
        return out

    def receive(self, payload: bytes, source: IPv4Address, port: int) -> bytes | None:
        """The inner packet of a Tunnel Data message from (``source``, ``port``), or None (counted)."""
        try:
            message = decode_tunnel_data(payload)
            if message.next_header != Encapsulation.IP_IN_IP:
                self.counts["dropped_udp_next_header"] += 1
                return None
            header, _ = ipv4.parse(message.payload)
        except DecodeError:
            self.counts["dropped_udp_malformed"] += 1
            return None
        outer = UdpTunnelEndpoint(source, port)
        inner, home = message.payload, header.source
        if (home in self.routers.prefixes and header.protocol == Protocol.IPIP and header.destination == self.local):
            # A mobile router's LAN datagram nested in IP-in-IP from its home address (RFC 5177).
            try:
                inner = decapsulate(inner).inner
            except (DecodeError, TunnelRefused):
                self.counts["dropped_udp_malformed"] += 1
                return None
            if len(inner) < 20 or self.routers.owner(IPv4Address(inner[12:16])) != home:
                self.counts["dropped_udp_foreign_source"] += 1
                return None
        elif home not in self.endpoints and (router := self.routers.owner(home)) is not None:
            home = router  # co-located: a LAN datagram straight inside the UDP tunnel
        endpoints = self.endpoints.get(home, ())
        if not any(e.outer == outer for e in endpoints) and not self._bind_half(header, message.payload, outer):
            self.counts["dropped_udp_not_registered"] += 1
            return None
        self.counts["udp_decapsulated"] += 1
        return inner


    def _bind_half(self, header: ipv4.IPv4Header, inner: bytes, outer: UdpTunnelEndpoint) -> bool:
        """RFC 3519 4.6: a half-bound tunnel (port 0) takes the outer port of the node's first
        keepalive, an ICMP Echo Request from the home address to us, from the registration's address."""
        endpoints = self.endpoints.get(header.source, ())
        half = [e for e in endpoints if e.outer == UdpTunnelEndpoint(outer.address, HALF_BOUND)]
        body = inner[header.header_length:]
        if not half or header.destination != self.local or header.protocol != _ICMP or body[:1] != _ECHO_REQUEST:
            return False
        self.endpoints[header.source] = tuple(replace(e, outer=outer) if e in half else e for e in endpoints)
        self.counts["udp_half_bound_learnt"] += 1
        return True


_ICMP = 1
_ECHO_REQUEST = b"\x08"


class UdpTunnelPlane:
    """The TUN device ``mipu0``, its host routes and the table; datagrams leave through ``send``."""

    def __init__(self, device: str = DEVICE, proc: Path = PROC) -> None:
        self.device = device
        self.proc = proc
        self.table = UdpTunnelTable()
        self._tun: int | None = None
        self._send: SendUdp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, send: SendUdp, local: IPv4Address) -> None:
        """Create ``mipu0``, bring it up (rp_filter strict) and start reading it; BackendError if impossible."""
        self._send = send
        self.table.local = local
        self._loop = asyncio.get_running_loop()
        try:
            self._tun = open_tun(self.device, UDP_TUN_MTU)
            ipv4_only(self.proc, self.device)
            netlink.set_link_up(self.device)
            (self.proc / "conf" / self.device / "rp_filter").write_text("1")
        except OSError as exc:
            self.close()
            raise BackendError(f"UDP tunnel data plane cannot start: {exc}") from exc
        self._loop.add_reader(self._tun, self._drain_tun)

    def apply(self, change: DataPlane) -> None:
        """Update the node's UDP endpoints and its host route through ``mipu0`` (idempotent)."""
        error = self.apply_many([change]).get(change.home_address)
        if error is not None:
            raise error

    def apply_many(self, changes: Sequence[DataPlane]) -> dict[IPv4Address, BackendError]:
        """:meth:`apply` for each of ``changes`` (the last word on each home address counts), the host
        routes in netlink batches; what failed, by home address. A node the table did not hold has
        no route here (``mipu0`` is new at each start and :meth:`reconcile` leaves only the table's
        routes), so a classic binding costs no netlink request at all."""
        batch: netlink_batch.Batch[IPv4Address] = netlink_batch.Batch()
        for home, change in home_routes(changes).items():
            had = home in self.table.endpoints
            for gone in self.table.set(change):
                batch.delete_route(home, gone, device=self.device)
            if home in self.table.endpoints:
                batch.replace_route(home, home, device=self.device)
                for prefix in self.table.routers.prefixes.get(home, ()):  # RFC 5177 6.1 step 4
                    batch.replace_route(home, prefix, device=self.device, mtu=NESTED_MTU)
            elif had:
                batch.delete_route(home, home, device=self.device)
        return {home: BackendError(f"route {home}/32 dev {self.device}: {failure}")
                for home, failure in batch.send().items()}

    def reconcile(self, desired: Iterable[DataPlane]) -> None:
        """Routes on ``mipu0`` exactly for the UDP-tunnelled nodes of ``desired``, in netlink batches."""
        wanted = home_routes(desired)
        self.table.clear()
        for change in wanted.values():
            self.table.set(change)
        prefixes = {p for routed in self.table.routers.prefixes.values() for p in routed}
        try:
            index = netlink_batch.link_index(self.device)
            stale = [route for route in netlink_batch.owned_routes(oif=index) if route.destination not in prefixes and (
                route.destination.prefixlen != 32 or route.destination.network_address not in self.table.endpoints)]
            failed = netlink_batch.delete_routes(stale)
        except OSError as exc:
            raise BackendError(f"cannot reconcile the routes of {self.device}: {exc}") from exc
        if failed:
            raise BackendError(f"cannot reconcile the routes of {self.device}: {next(iter(failed.values()))}")
        batch: netlink_batch.Batch[IPv4Address] = netlink_batch.Batch()
        for home in self.table.endpoints:
            batch.replace_route(home, home, device=self.device)
            for prefix in self.table.routers.prefixes.get(home, ()):
                batch.replace_route(home, prefix, device=self.device, mtu=NESTED_MTU)
        errors = batch.send()
        if errors:
            shown = "; ".join(f"{home}: {error}" for home, error in list(errors.items())[:5])
            raise BackendError(f"{len(errors)} UDP-tunnelled bindings not installed: {shown}")

    def receive(self, payload: bytes, source: IPv4Address, port: int) -> None:
        """A Tunnel Data message that arrived on UDP port 434: its inner packet into ``mipu0``."""
        write_into_tun(self._tun, self.table.receive(payload, source, port), self.table.counts, "udp_write_errors")

    def drop_other_destination(self) -> None:
        """A Tunnel Data message sent to one of port 434's broadcast sockets: counted, not taken."""
        self.table.counts["dropped_udp_other_destination"] += 1

    def _drain_tun(self) -> None:
        assert self._tun is not None and self._send is not None
        for datagram in read_tun(self._tun):
            for payload, outer in self.table.forward(datagram):
                if self._send(payload, outer.address, outer.port):
                    self.table.counts["udp_encapsulated"] += 1
                else:
                    self.table.counts["udp_send_errors"] += 1

    def counters(self) -> dict[str, int]:
        """Every counter of :data:`COUNTERS`, zero or not."""
        return {name: self.table.counts[name] for name in COUNTERS}

    def close(self) -> None:
        """Stop reading and close ``mipu0``; the kernel removes its routes with it."""
        if self._tun is not None:
            close_tun(self._loop, self._tun)
            self._tun = None
        self.table.clear()
