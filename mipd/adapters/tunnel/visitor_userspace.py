"""The foreign agent's ``userspace`` data plane: a TUN device plus raw sockets (RFC 5944 4.2.2, RFC 3024).

For kernels without ipip/gre, and the only FA backend that can do minimal encapsulation (RFC 2004).
Routing state (static neighbours, host routes, rules, per-visitor tables) is
mipd.adapters.tunnel.visitor_routing's; the packets are ours:

- **Delivery.** Raw sockets for protocols 4, 47 and 55, bound to the care-of address (shared with
  the home agent's backend: ``tunnel_userspace.open_raw_sockets``), receive what home agents
  tunnel to us. A packet is accepted only if its inner destination is a visitor ("SHOULD be
  silently discarded" otherwise, 4.2.2: counted, no ICMP) and its outer source is *that*
  visitor's home agent. The inner datagram is written to the TUN device ``mipv0``; the kernel
  receives it there and forwards it by the visitor's host route and static neighbour entry.
- **Reverse tunnel.** The rule ``from H iif IF`` sends a visitor's packets to its table, whose
  default route is ``dev mipv0``; we read them from the TUN descriptor and send them
  encapsulated from the care-of address to the visitor's home agent.

- **UDP tunnel (RFC 3519).** For a visitor whose home agent assented to UDP tunnelling, the home
  agent sends MIP Tunnel Data messages (type 4, next header 4) from its port 434 to the relay
  socket, through the NAT; the runtime hands them to :meth:`VisitorUserspaceBackend.from_udp_tunnel`,
  which checks them (3.3, 4.3: outer source and port = the visitor's home agent and 434, next
  header 4, inner destination a UDP-tunnelled visitor) and writes the inner packet to ``mipv0``.
  The visitor's reverse-tunnelled packets go to the home agent's port 434 as type-4 messages from
  the relay socket (the same socket, so the same NAT mapping). When nothing went to the home agent
  for the visitor for K seconds, a UDP-tunnelled ICMP Echo Request (inner source the home address,
  inner destination the home agent) keeps the mapping (4.9); its Echo Reply is consumed here.

``rp_filter`` on ``mipv0`` is set to 0: a decapsulated datagram's source is a correspondent, whose
route goes out of the uplink, never through ``mipv0``, so strict filtering (1) would drop every
one; and loose filtering (2) does too here, because ``mipv0`` has no IPv4 address
(``__fib_validate_source``: a device without addresses goes to "last_resort", which rejects
whenever rp_filter is on). The kernel uses max(``all``, device), so the FA host also needs
``net.ipv4.conf.all.rp_filter`` = 0 (the runtime's host settings; the home agent's do the same).
Which sources may pass is decided here instead: only the visitor's home agent, only to a visitor.
IPv6 is disabled on ``mipv0`` so that the kernel's own router solicitations do not reach the reader.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from pathlib import Path

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.tunnel.backend import BackendError, BackendKind
from mipd.adapters.tunnel.userspace import (
    close_raw_sockets,
    close_tun,
    decapsulate_counted,
    drain_into_tun,
    ipv4_only,
    open_raw_sockets,
    open_tun,
    read_tun,
    write_into_tun,
)
from mipd.adapters.tunnel.visitor_routing import DEFAULT, VisitorRouting, wanted
from mipd.core.planes import Delivery, VisitorPlane
from mipd.core.wire import ipv4
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.icmp import checksum
from mipd.core.wire.nat import Encapsulation as NextHeader
from mipd.core.wire.nat import TunnelData, decode_tunnel_data
from mipd.core.wire.registration import REGISTRATION_PORT
from mipd.core.wire.tunnel import DropReason, Encapsulation, TunnelRefused, encapsulate

DEVICE = "mipv0"
PROC = Path("/proc/sys/net/ipv4")
KEEPALIVE_IDENTIFIER = 0x3519  # the ICMP Echo identifier of our keepalives (RFC 3519 4.9)
KEEPALIVE_CHECK = 1.0  # seconds between looks for idle UDP tunnels
UDP_TUNNEL_MTU = 1500 - 20 - 8 - TunnelData.HEADER_LENGTH  # inner datagrams that fit an Ethernet frame

UdpSender = Callable[[bytes, IPv4Address, int], bool]  # payload, destination, port -> sent

COUNTERS = (
    "decapsulated",  # tunnelled datagrams handed to the kernel for a visitor
    "reverse_tunnelled",  # a visitor's datagrams sent encapsulated to its home agent (RFC 3024)
    "dropped_not_visitor",  # inner destination is no visitor (4.2.2: silently discarded)
    "dropped_not_home_agent",  # outer source is not the visitor's home agent
    "dropped_not_reverse",  # read from mipv0 from a source that is no reverse-tunnelled visitor (a race)
    "dropped_malformed",  # not a well-formed datagram / tunnel packet (DecodeError)
    *(f"dropped_{reason}" for reason in DropReason),  # RFC 2003 / 2004 refusals; unsupported_protocol
    "ignored_not_ipv4",  # read from mipv0 but not IPv4 (e.g. the kernel's own IPv6 before it was disabled)
    "ignored_other_destination",  # a tunnel packet to another of this host's addresses: not ours
    "udp_decapsulated",  # RFC 3519 type-4 messages from a home agent, inner packet handed to the kernel
    "udp_reverse_tunnelled",  # a visitor's datagrams sent as type-4 messages to its home agent's port 434
    "udp_keepalives_sent",  # UDP-tunnelled ICMP Echo Requests to home agents (RFC 3519 4.9)
    "udp_keepalives_answered",  # their Echo Replies, consumed here
    "dropped_udp_malformed",  # a type-4 message too short, or its inner packet not IPv4
    "dropped_udp_next_header",  # next header other than 4 (we only tunnel IP-in-IP inside UDP)
    "dropped_udp_not_visitor",  # inner destination is no UDP-tunnelled visitor
    "dropped_udp_not_home_agent",  # outer source address or port is not the visitor's home agent's 434
    "send_errors",
    "write_errors",
)


class VisitorTable:
    """Every visitor's delivery and the per-packet decisions, without I/O."""

    def __init__(self, care_of_address: IPv4Address) -> None:
        self.care_of_address = care_of_address
        self.deliveries: dict[IPv4Address, Delivery] = {}
        self.counts: Counter[str] = Counter()
        self._identification = 0
        self.last_sent: dict[IPv4Address, float] = {}  # per UDP-tunnelled visitor: last datagram to its HA
        self._sequence = 0

    def set(self, plane: VisitorPlane) -> None:
        if plane.delivery is None:
            self.deliveries.pop(plane.home_address, None)
        else:
            self.deliveries[plane.home_address] = plane.delivery
        if plane.delivery is None or not plane.delivery.udp_tunnel:
            self.last_sent.pop(plane.home_address, None)

    def deliver_udp(self, payload: bytes, source: IPv4Address, port: int) -> bytes | None:
        """The inner packet of a type-4 message that came to the relay socket from ``(source,
        port)``, or None if it must be dropped (counted) or was the answer to a keepalive."""
        try:
            message = decode_tunnel_data(payload)
            header, body = ipv4.parse(message.payload)
        except DecodeError:
            self.counts["dropped_udp_malformed"] += 1
            return None
        if message.next_header != NextHeader.IP_IN_IP:
            self.counts["dropped_udp_next_header"] += 1
            return None
        delivery = self.deliveries.get(header.destination)
        if delivery is None or not delivery.udp_tunnel:
            self.counts["dropped_udp_not_visitor"] += 1
            return None
        if source != delivery.home_agent or port != REGISTRATION_PORT:  # 4.3: the tunnel's endpoints
            self.counts["dropped_udp_not_home_agent"] += 1
            return None
        if _is_keepalive_answer(header, body, delivery):
            self.counts["udp_keepalives_answered"] += 1
            return None
        self.counts["udp_decapsulated"] += 1
        return message.payload

    def keepalives(self, now: float) -> list[tuple[bytes, IPv4Address]]:
        """RFC 3519 4.9: a UDP-tunnelled ICMP Echo Request for every UDP-tunnelled visitor whose home
        agent got nothing from us for it in K seconds (the first K seconds after it appeared)."""
        out: list[tuple[bytes, IPv4Address]] = []
        for home, delivery in self.deliveries.items():
            if not delivery.udp_tunnel or delivery.keepalive_interval <= 0:
                continue
            last = self.last_sent.setdefault(home, now)
            if now - last < delivery.keepalive_interval:
                continue
            self._sequence = (self._sequence + 1) & 0xFFFF
            echo = _echo_request(home, delivery.home_agent, self._sequence, self._next_identification())
            self.last_sent[home] = now
            self.counts["udp_keepalives_sent"] += 1
            out.append((TunnelData(NextHeader.IP_IN_IP, echo).encode(), delivery.home_agent))
        return out

    def _next_identification(self) -> int:
        self._identification = (self._identification + 1) & 0xFFFF
        return self._identification

    def deliver(self, packet: bytes) -> bytes | None:
        """The inner datagram of a tunnel ``packet`` for a visitor, or None if it must be dropped."""
        if packet[16:20] != self.care_of_address.packed:  # raw sockets see tunnel packets to any address
            self.counts["ignored_other_destination"] += 1
            return None
        taken = decapsulate_counted(packet, self.counts)
        if taken is None:
            return None
        delivery = self.deliveries.get(IPv4Address(taken.inner[16:20]))
        if delivery is None:
            self.counts["dropped_not_visitor"] += 1
            return None
        if taken.source != delivery.home_agent:
            self.counts["dropped_not_home_agent"] += 1
            return None
        self.counts["decapsulated"] += 1
        return taken.inner

    def reverse(self, datagram: bytes, now: float = 0.0) -> tuple[bytes, IPv4Address, bool] | None:
        """A visitor's ``datagram`` tunnelled to its home agent: the packet for the raw socket, or
        (``udp`` True) the type-4 UDP payload for the relay socket, RFC 3519 3.3; None to drop."""
        if not datagram or datagram[0] >> 4 != 4:
            self.counts["ignored_not_ipv4"] += 1
            return None
        try:
            header, _ = ipv4.parse(datagram)
        except DecodeError:
            self.counts["dropped_malformed"] += 1
            return None
        delivery = self.deliveries.get(header.source)
        if delivery is None or not delivery.reverse:
            self.counts["dropped_not_reverse"] += 1
            return None
        if delivery.udp_tunnel:
            self.last_sent[header.source] = now
            return TunnelData(NextHeader.IP_IN_IP, datagram).encode(), delivery.home_agent, True
        self._identification = (self._identification + 1) & 0xFFFF
        try:
            packet = encapsulate(datagram, delivery.care_of_address, delivery.home_agent, delivery.encapsulation,
                                 self._identification, local_addresses=(self.care_of_address,))
        except TunnelRefused as refused:
            self.counts[f"dropped_{refused.reason}"] += 1
            return None
        return packet, delivery.home_agent, False


def _echo_request(source: IPv4Address, destination: IPv4Address, sequence: int, identification: int) -> bytes:
    """An ICMP Echo Request datagram from ``source`` to ``destination`` (the keepalive, 4.9)."""
    body = struct.pack("!BBHHH", 8, 0, 0, KEEPALIVE_IDENTIFIER, sequence) + b"mipd keepalive"
    icmp = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
    header = ipv4.IPv4Header(0, ipv4.MIN_HEADER + len(icmp), identification, ipv4.Flags(0), 0, 64,
                             ipv4.Protocol.ICMP, source, destination)
    return header.encode() + icmp


def _is_keepalive_answer(header: ipv4.IPv4Header, body: bytes, delivery: Delivery) -> bool:
    return (header.protocol == ipv4.Protocol.ICMP and header.source == delivery.home_agent
            and len(body) >= 8 and body[0] == 0 and int.from_bytes(body[4:6], "big") == KEEPALIVE_IDENTIFIER)


class VisitorUserspaceBackend:
    """VisitorBackend over TUN + raw sockets."""

    name = BackendKind.USERSPACE
    encapsulations = frozenset(Encapsulation)
    udp_tunnelling = True

    def __init__(self, device: str = DEVICE, proc: Path = PROC) -> None:
        self.device = device
        self.proc = proc
        self.table = VisitorTable(IPv4Address(0))
        self.routing: VisitorRouting | None = None
        self._tun: int | None = None
        self._send: socket.socket | None = None
        self._receivers: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp_send: UdpSender | None = None
        self._keepalive: asyncio.TimerHandle | None = None

    def set_udp_sender(self, send: UdpSender) -> None:
        """How UDP-tunnelled datagrams leave: the relay socket's send (RFC 3519 4.9: same port)."""
        self._udp_send = send

    def from_udp_tunnel(self, payload: bytes, source: IPv4Address, port: int) -> None:
        """A type-4 message the relay socket received from ``(source, port)``."""
        write_into_tun(self._tun, self.table.deliver_udp(payload, source, port), self.table.counts)

    def _send_udp(self, payload: bytes, destination: IPv4Address) -> bool:
        if self._udp_send is None or not self._udp_send(payload, destination, REGISTRATION_PORT):
            self.table.counts["send_errors"] += 1
            return False
        return True

    def _keepalive_tick(self) -> None:
        for payload, home_agent in self.table.keepalives(time.monotonic()):
            self._send_udp(payload, home_agent)
        if self._loop is not None:
            self._keepalive = self._loop.call_later(KEEPALIVE_CHECK, self._keepalive_tick)

    def start(self, care_of_address: IPv4Address, interface: str) -> None:
        """Create ``mipv0`` (up, rp_filter 0, no IPv6), open the raw sockets, add the fixed rules and
        start reading (in the running loop)."""
        self.table.care_of_address = care_of_address
        self._loop = asyncio.get_running_loop()
        self.routing = VisitorRouting(interface, (self.device,), self._reverse_route)
        try:
            self._tun = open_tun(self.device)
            netlink.set_link_up(self.device)
            (self.proc / "conf" / self.device / "rp_filter").write_text("0")
            ipv4_only(self.proc, self.device)
            self._send, self._receivers = open_raw_sockets(care_of_address)
            self.routing.start()
        except (OSError, BackendError) as exc:
            self.close()
            raise BackendError(f"userspace visitor backend cannot start: {exc}") from exc
        self._loop.add_reader(self._tun, self._drain_tun)
        self._keepalive = self._loop.call_later(KEEPALIVE_CHECK, self._keepalive_tick)
        for receiver in self._receivers:
            self._loop.add_reader(receiver.fileno(), self._drain_tunnel, receiver)

    def _reverse_route(self, delivery: Delivery, table: int) -> None:
        # RFC 3519 4.8: the FA MUST fragment before encapsulating in UDP (a NAT cannot map outer
        # fragments): the route's MTU leaves room for the outer IP, UDP and tunnel data headers,
        # so the kernel fragments the visitor's datagrams (or answers Fragmentation Needed) first.
        netlink.replace_route(DEFAULT, device=self.device, table=table,
                              mtu=UDP_TUNNEL_MTU if delivery.udp_tunnel else None)

    def _routing(self) -> VisitorRouting:
        if self.routing is None:
            raise BackendError("the visitor backend is not started")
        return self.routing

    def apply(self, change: VisitorPlane) -> None:
        """Update the visitor's delivery and its routing state (idempotent)."""
        self._routing().apply(change)
        self.table.set(change)

    def reconcile(self, desired: Iterable[VisitorPlane]) -> None:
        """Exactly ``desired``; stale owned routes, rules and neighbour entries are removed."""
        want = wanted(desired)
        self._routing().reconcile(VisitorPlane(home, delivery) for home, delivery in want.items())
        self.table.deliveries = dict(want)

    def counters(self) -> dict[str, int]:
        """Every counter of :data:`COUNTERS`, zero or not."""
        return {name: self.table.counts[name] for name in COUNTERS}

    def _drain_tun(self) -> None:
        assert self._tun is not None and self._send is not None
        for datagram in read_tun(self._tun):
            out = self.table.reverse(datagram, time.monotonic())
            if out is None:
                continue
            if out[2]:
                if self._send_udp(out[0], out[1]):
                    self.table.counts["udp_reverse_tunnelled"] += 1
                continue
            try:
                self._send.sendto(out[0], (str(out[1]), 0))
            except OSError:  # unreachable home agent, EMSGSIZE, full buffer: counted, not fatal
                self.table.counts["send_errors"] += 1
            else:
                self.table.counts["reverse_tunnelled"] += 1

    def _drain_tunnel(self, receiver: socket.socket) -> None:
        drain_into_tun(receiver, self._tun, self.table.deliver, self.table.counts)

    def close(self) -> None:
        """Remove every owned rule, route and neighbour entry, stop reading, close the sockets and
        the TUN descriptor (which deletes ``mipv0``). Idempotent."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        try:
            if self.routing is not None:
                self.routing.close()
        finally:
            self.routing = None
            close_raw_sockets(self._loop, self._send, self._receivers)
            self._send = None
            if self._tun is not None:
                close_tun(self._loop, self._tun)
                self._tun = None
            self.table.deliveries.clear()
