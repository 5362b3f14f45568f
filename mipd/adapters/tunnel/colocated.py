"""A mobile node with a co-located care-of address decapsulates its own tunnel (RFC 5944 4.1, 3.6.1.2 D).

The mirror image of the foreign agent's userspace backend (mipd.adapters.tunnel.visitor_userspace): a TUN
device ``mipm0`` plus raw sockets, no kernel tunnel module needed.

- **Receive.** Raw sockets for protocols 4, 47 and 55 (``tunnel_userspace.open_raw_sockets``),
  bound to the care-of address, see what the home agent tunnels there. A packet is accepted only
  if its outer source is *our* home agent and its inner destination our home address; anything
  else is counted and dropped (no ICMP). The inner datagram is written to ``mipm0``; the kernel
  receives it there and, the home address being local, delivers it. IP-in-IP MUST be received
  (4.1); GRE and minimal encapsulation are accepted too (the node asks for them with G / M as
  ``tunnel.encapsulations`` prefer, mip.yaml(5)), and the source check is what protects us.
- **Home address.** While co-located it lives on ``mipm0`` as a /32, not on the physical
  interface, so that the interface (``arp_ignore`` 1, see mipd.adapters.link.mobile_routing) never
  answers ARP for it. Having an address also keeps *loose* reverse-path filtering (2, the
  systemd default for ``all``) working on ``mipm0``: a device without any IPv4 address fails
  every rp_filter check but 0 (``__fib_validate_source``, "last_resort"). We set ``mipm0``'s own
  rp_filter to 0; strict filtering in ``all`` (1) would still drop decapsulated datagrams when
  the node does not reverse-tunnel (the route back to a correspondent is not through ``mipm0``).
- **Reverse tunnel** (T, RFC 3024). ``ip rule from H lookup 760001 prio 7620 proto 77`` and, in
  that table, ``default dev mipm0 proto 77``: the node's own packets *from its home address* go
  into ``mipm0``; we read them, encapsulate them from the care-of address to the home agent (in
  the encapsulation the home agent granted: ``Colocation.encapsulation``, IP-in-IP unless it
  accepted a request with G or M) and send them with the raw ``IPPROTO_RAW`` socket. The tunnel
  packets themselves have the care-of address as source, so the rule does not catch them: they
  follow the interface's own default route. Registration requests (source: the care-of address,
  3.6.1.1) are not tunnelled either.

- **UDP tunnel** (RFC 3519, a NAT between the node and its home agent). When the home agent
  granted it, both directions are MIP tunnel data messages (type 4, next header 4, 3.3) on UDP:
  the node's registration socket (mipd.adapters.udp.NodeSocket, the same source port as the
  registration, so the NAT keeps one mapping) and the home agent's port 434. What the socket
  receives as type 4 is checked here (from the home agent's port 434, next header 4, for our home
  address) and written to ``mipm0``; what ``mipm0`` yields goes back through the socket. The
  reverse tunnel is then always on: a packet from the home address sent around the tunnel would
  leave with the NAT's address. ``mipm0``'s MTU leaves room for the 32 bytes of outer IP, UDP and
  tunnel header, so the kernel fragments (or signals the path MTU) before we encapsulate (3.3).
  An Echo Reply from the home agent is reported to the engine (``on_echo_reply``): it may answer
  the node's keepalive.

IPv6 is disabled on ``mipm0`` so that the kernel's own router solicitations never reach the reader.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.netlink import mobile as netlink_mobile
from mipd.adapters.netlink import policy as netlink_policy
from mipd.adapters.netlink.mobile import Address
from mipd.adapters.netlink.policy import Rule
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
from mipd.core.wire import ipv4
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.nat import Encapsulation as NextHeader
from mipd.core.wire.nat import TunnelData, decode_tunnel_data
from mipd.core.wire.registration import REGISTRATION_PORT
from mipd.core.wire.tunnel import DropReason, Encapsulation, TunnelRefused, encapsulate

DEVICE = "mipm0"
REVERSE_TABLE = 760_001
PRIORITY_REVERSE = 7620
DEFAULT = IPv4Network("0.0.0.0/0")
PROC = Path("/proc/sys/net/ipv4")
# 1500 less outer IPv4 (20), UDP (8) and the tunnel data header (4): fits the UDP tunnel, and the
# IP-in-IP and GRE tunnels too.
TUN_MTU = 1500 - 20 - 8 - TunnelData.HEADER_LENGTH
_ICMP = 1
_ECHO_REPLY = 0

# (source address, destination address, destination port, payload): a datagram to send from the
# node's registration socket.
UdpSend = Callable[[IPv4Address, IPv4Address, int, bytes], bool]
EchoReply = Callable[[int, int], None]  # (identifier, sequence number) of an Echo Reply from the home agent

COUNTERS = (
    "decapsulated",  # tunnelled datagrams for our home address handed to the kernel
    "reverse_tunnelled",  # our own datagrams sent encapsulated to the home agent (RFC 3024)
    "dropped_not_home_agent",  # outer source is not our home agent
    "dropped_not_home_address",  # inner destination is not our home address
    "dropped_not_home_source",  # read from mipm0 with another source than the home address (a race)
    "dropped_malformed",  # not a well-formed datagram / tunnel packet (DecodeError)
    *(f"dropped_{reason}" for reason in DropReason),  # RFC 2003 / 2004 refusals; unsupported_protocol
    "ignored_other_destination",  # a tunnel packet to another of our addresses: not for the care-of address
    "ignored_not_ipv4",  # read from mipm0 but not IPv4
    "udp_decapsulated",  # UDP tunnel data (RFC 3519) for our home address handed to the kernel
    "udp_reverse_tunnelled",  # our own datagrams sent to the home agent as UDP tunnel data
    "dropped_not_udp_tunnel",  # UDP tunnel data while the home agent did not grant a UDP tunnel
    "dropped_udp_next_header",  # UDP tunnel data whose next header is not IPv4 (4)
    "echo_replies_from_home_agent",  # inner Echo Replies from the home agent (keepalive answers)
    "send_errors",
    "write_errors",
)


@dataclass(frozen=True, slots=True)
class Colocation:
    """What the co-located tunnel needs to know, taken from a ``colocated`` MobilePlane."""

    home_address: IPv4Address
    home_agent: IPv4Address
    care_of_address: IPv4Address
    encapsulation: Encapsulation = Encapsulation.IPIP
    reverse: bool = False
    udp_tunnel: bool = False  # RFC 3519: both directions on UDP, reverse always on


class ColocatedTable:
    """The per-packet decisions, without I/O; ``counts`` outlives any one tunnel."""

    def __init__(self, counts: Counter[str]) -> None:
        self.colocation: Colocation | None = None
        self.counts = counts
        self._identification = 0

    def deliver(self, packet: bytes) -> bytes | None:
        """The inner datagram of a tunnel ``packet`` from our home agent to our home address, or None."""
        colocation = self.colocation
        if colocation is None or packet[16:20] != colocation.care_of_address.packed:
            self.counts["ignored_other_destination"] += 1
            return None
        taken = decapsulate_counted(packet, self.counts)
        if taken is None:
            return None
        if taken.source != colocation.home_agent:
            self.counts["dropped_not_home_agent"] += 1
            return None
        if taken.inner[16:20] != colocation.home_address.packed:
            self.counts["dropped_not_home_address"] += 1
            return None
        self.counts["decapsulated"] += 1
        return taken.inner

    def deliver_udp(self, payload: bytes, source: IPv4Address, port: int) -> bytes | None:
        """The inner datagram of UDP tunnel data ``payload`` from ``source``:``port``, or None: it
        must come from our home agent's port 434 while it tunnels to us over UDP, carry an IPv4
        datagram (next header 4) and be for our home address (RFC 3519 3.3)."""
        colocation = self.colocation
        if colocation is None or not colocation.udp_tunnel:
            self.counts["dropped_not_udp_tunnel"] += 1
            return None
        if source != colocation.home_agent or port != REGISTRATION_PORT:
            self.counts["dropped_not_home_agent"] += 1
            return None
        try:
            data = decode_tunnel_data(payload)
        except DecodeError:
            self.counts["dropped_malformed"] += 1
            return None
        if data.next_header != NextHeader.IP_IN_IP:
            self.counts["dropped_udp_next_header"] += 1
            return None
        inner = data.payload
        try:
            header, _ = ipv4.parse(inner)
        except DecodeError:
            self.counts["dropped_malformed"] += 1
            return None
        if header.destination != colocation.home_address:
            self.counts["dropped_not_home_address"] += 1
            return None
        self.counts["udp_decapsulated"] += 1
        return inner

    def echo_reply(self, inner: bytes) -> tuple[int, int] | None:
        """(identifier, sequence) if ``inner`` (checked by :meth:`deliver_udp`) is an ICMP Echo
        Reply from the home agent, else None."""
        colocation = self.colocation
        header_length = (inner[0] & 0x0F) * 4
        if colocation is None or inner[9] != _ICMP or inner[12:16] != colocation.home_agent.packed \
                or len(inner) < header_length + 8 or inner[header_length] != _ECHO_REPLY:
            return None
        self.counts["echo_replies_from_home_agent"] += 1
        icmp = inner[header_length:]
        return int.from_bytes(icmp[4:6], "big"), int.from_bytes(icmp[6:8], "big")

    def reverse(self, datagram: bytes) -> bytes | None:
        """Our own ``datagram`` tunnelled to the home agent: an outer IPv4 packet from the care-of
        address, or (UDP tunnel) the UDP payload to send from the registration socket; or None."""
        colocation = self.colocation
        if not datagram or datagram[0] >> 4 != 4:
            self.counts["ignored_not_ipv4"] += 1
            return None
        try:
            header, _ = ipv4.parse(datagram)
        except DecodeError:
            self.counts["dropped_malformed"] += 1
            return None
        if colocation is None or not (colocation.reverse or colocation.udp_tunnel) \
                or header.source != colocation.home_address:
            self.counts["dropped_not_home_source"] += 1
            return None
        if colocation.udp_tunnel:
            return TunnelData(NextHeader.IP_IN_IP, datagram).encode()
        self._identification = (self._identification + 1) & 0xFFFF
        try:
            # RFC 2003 4's "own address" check is for routers: the home address is ours by design
            # here; only a datagram from the care-of address itself would loop.
            return encapsulate(datagram, colocation.care_of_address, colocation.home_agent, colocation.encapsulation,
                               self._identification, local_addresses=(colocation.care_of_address,))
        except TunnelRefused as refused:
            self.counts[f"dropped_{refused.reason}"] += 1
            return None


class ColocatedTunnel:
    """``mipm0``, the raw sockets, the home address on ``mipm0`` and the reverse rule and table."""

    def __init__(self, counts: Counter[str], device: str = DEVICE, proc: Path = PROC) -> None:
        self.device = device
        self.proc = proc
        self.table = ColocatedTable(counts)
        # Set by the runtime: the registration socket's sender, and who hears Echo Replies.
        self.udp_send: UdpSend | None = None
        self.on_echo_reply: EchoReply | None = None
        self._tun: int | None = None
        self._send: socket.socket | None = None
        self._receivers: list[socket.socket] = []
        self._bound: IPv4Address | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def open(self) -> bool:
        return self._tun is not None

    def reverse_rule(self, home: IPv4Address) -> Rule:
        """``from H lookup 760001 prio 7620``."""
        return Rule(PRIORITY_REVERSE, REVERSE_TABLE, IPv4Network(home))

    def apply(self, colocation: Colocation) -> None:
        """Make the tunnel match ``colocation`` (idempotent): ``mipm0`` up with the home address,
        sockets bound to the care-of address, reverse rule and route present or absent. Runs in
        the asyncio loop. Raises OSError."""
        self._loop = asyncio.get_running_loop()
        if self._tun is None:
            self._tun = open_tun(self.device, TUN_MTU)
            ipv4_only(self.proc, self.device)
            netlink.set_link_up(self.device)
            (self.proc / "conf" / self.device / "rp_filter").write_text("0")
            self._loop.add_reader(self._tun, self._drain_tun)
        if self._bound != colocation.care_of_address:
            self._close_sockets()
            self._send, self._receivers = open_raw_sockets(colocation.care_of_address)
            self._bound = colocation.care_of_address
            for receiver in self._receivers:
                self._loop.add_reader(receiver.fileno(), self._drain_tunnel, receiver)
        old = self.table.colocation
        self.table.colocation = colocation
        netlink_mobile.add_address(Address(IPv4Interface(colocation.home_address)), self.device)
        if old is not None and old.home_address != colocation.home_address:
            netlink_mobile.delete_address(IPv4Interface(old.home_address), self.device)
            netlink_policy.delete_rule(self.reverse_rule(old.home_address))
        if colocation.reverse or colocation.udp_tunnel:
            netlink.replace_route(DEFAULT, device=self.device, table=REVERSE_TABLE)
            netlink_policy.add_rule(self.reverse_rule(colocation.home_address))
        else:
            netlink_policy.delete_rule(self.reverse_rule(colocation.home_address))
            netlink_policy.delete_table_route(DEFAULT, REVERSE_TABLE)

    def _drain_tun(self) -> None:
        assert self._tun is not None
        for datagram in read_tun(self._tun):
            packet = self.table.reverse(datagram)
            colocation = self.table.colocation
            if packet is None or colocation is None:
                continue
            if colocation.udp_tunnel:
                sent = self.udp_send is not None and self.udp_send(colocation.care_of_address, colocation.home_agent,
                                                                    REGISTRATION_PORT, packet)
                self.table.counts["udp_reverse_tunnelled" if sent else "send_errors"] += 1
                continue
            if self._send is None:
                continue
            try:
                self._send.sendto(packet, (str(colocation.home_agent), 0))
            except OSError:  # unreachable home agent, EMSGSIZE, full buffer: counted, not fatal
                self.table.counts["send_errors"] += 1
            else:
                self.table.counts["reverse_tunnelled"] += 1

    def _drain_tunnel(self, receiver: socket.socket) -> None:
        drain_into_tun(receiver, self._tun, self.table.deliver, self.table.counts)

    def tunnel_data(self, payload: bytes, source: IPv4Address, port: int) -> None:
        """UDP tunnel data the registration socket received: checked, then into ``mipm0``."""
        inner = self.table.deliver_udp(payload, source, port)
        if inner is None:
            return
        echo = self.table.echo_reply(inner)
        if echo is not None and self.on_echo_reply is not None:
            self.on_echo_reply(*echo)
        write_into_tun(self._tun, inner, self.table.counts)

    def _close_sockets(self) -> None:
        close_raw_sockets(self._loop, self._send, self._receivers)
        self._send = None
        self._bound = None

    def close(self) -> None:
        """Remove the reverse rule, close the sockets and the TUN descriptor (which deletes
        ``mipm0`` with its address and routes). Idempotent; the caller has put the home address
        somewhere else first if it is to stay configured."""
        colocation, self.table.colocation = self.table.colocation, None
        try:
            if colocation is not None:
                netlink_policy.delete_rule(self.reverse_rule(colocation.home_address))
            netlink_policy.delete_table_route(DEFAULT, REVERSE_TABLE)
        finally:
            self._close_sockets()
            if self._tun is not None:
                close_tun(self._loop, self._tun)
                self._tun = None
