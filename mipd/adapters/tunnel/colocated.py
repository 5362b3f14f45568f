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

- **Mobile router** (RFC 5177, ``Colocation.mobile_networks``: the prefixes the home agent serves,
  each on a LAN interface ``Colocation.lan`` names). Tunnelled packets for those prefixes are
  accepted like those for the home address and written to ``mipm0``: the kernel forwards them to
  the LAN (``ip_forward`` is on for a router, mipd.adapters.link.mobile_routing). Back from the LAN,
  per LAN interface L (priorities inside the mobile node's 7600-7699, before the foreign agent's
  default route at 7610)::

      7604: iif L lookup main suppress_prefixlength 0   (the LAN's and other connected routes)
      7605: iif L from P lookup 760001                  (each served prefix P on L: into mipm0)
      7606: iif L blackhole                             (any other source: dropped)

  so a LAN packet sourced in a served prefix goes into ``mipm0`` and, read there, to the home agent
  like the node's own traffic: from the care-of address, or as UDP tunnel data. 7606 is RFC 5177
  section 10's ingress filtering ("MUST drop any packets that do not have a source address
  belonging to the Mobile Network"); a LAN packet claiming one of the node's own addresses is a
  martian the kernel drops before any rule.
- **Nested, with a foreign agent** (``Colocation.nested``, RFC 5177 section 7): the home agent
  tunnels prefix traffic IP-in-IP to the *home address* inside its usual tunnel to the foreign
  agent's care-of address; the agent decapsulates the outer layer and delivers the inner tunnel
  packet to us on the link. The local endpoint (``care_of_address``) is then the home address, which
  stays on the physical interface: no address on ``mipm0``, no rule for the home address (the
  node's own traffic goes to the agent as usual). What arrives for a served prefix is sent on
  with the raw socket, its TTL decremented (``mipm0`` without an address would fail loose
  reverse-path filtering); what ``mipm0`` yields is encapsulated from the home address to the home
  agent and sent like the node's own traffic, so the agent relays it (reverse-tunnelled with T).

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
    BATCH,
    MAX_PACKET,
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
PRIORITY_LAN_MAIN, PRIORITY_LAN_PREFIX, PRIORITY_LAN_DROP = 7604, 7605, 7606  # RFC 5177: see the docstring
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
    "mobile_network_delivered",  # RFC 5177: tunnelled datagrams for a served prefix handed on to the LAN
    "mobile_network_reverse_tunnelled",  # LAN datagrams from a served prefix sent to the home agent
    "dropped_ttl_exceeded",  # nested: a datagram for the LAN whose TTL ran out
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
    # RFC 5177: the served prefixes, each with its LAN interface ((prefix, interface) in ``lan``).
    mobile_networks: tuple[IPv4Network, ...] = ()
    lan: tuple[tuple[IPv4Network, str], ...] = ()
    # With a foreign agent: care_of_address is the home address, the inner tunnel's end (section 7).
    nested: bool = False

    def served(self, address: bytes) -> bool:
        """``address`` (4 bytes) lies in a served prefix."""
        value = int.from_bytes(address, "big")
        return any(int(n.network_address) == value & int(n.netmask) for n in self.mobile_networks)

    def lan_rules(self) -> list[Rule]:
        """The rules that bring the LAN's packets into ``mipm0`` (see the module docstring)."""
        interfaces = sorted({interface for _, interface in self.lan})
        rules = [Rule(PRIORITY_LAN_MAIN, netlink.MAIN_TABLE, iif=i, suppress_prefixlength=0) for i in interfaces]
        rules += [Rule(PRIORITY_LAN_PREFIX, REVERSE_TABLE, prefix, iif=i) for prefix, i in self.lan]
        rules += [Rule(PRIORITY_LAN_DROP, iif=i, blackhole=True) for i in interfaces]
        return rules


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
        if colocation.served(taken.inner[16:20]):
            self.counts["mobile_network_delivered"] += 1
            return taken.inner
        if colocation.nested or taken.inner[16:20] != colocation.home_address.packed:
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
        if colocation.served(header.destination.packed):
            self.counts["mobile_network_delivered"] += 1
            return inner
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
        if colocation is None:
            self.counts["dropped_not_home_source"] += 1
            return None
        if colocation.served(header.source.packed):
            self.counts["mobile_network_reverse_tunnelled"] += 1  # RFC 5177 section 7, from the LAN
        elif colocation.nested or not (colocation.reverse or colocation.udp_tunnel) \
                or header.source != colocation.home_address:
            self.counts["dropped_not_home_source"] += 1
            return None
        if colocation.udp_tunnel:
            return TunnelData(NextHeader.IP_IN_IP, datagram).encode()
        self._identification = (self._identification + 1) & 0xFFFF
        try:
            # RFC 2003 4's "own address" check is for routers: the home address is ours by design
            # here; only a datagram from the care-of address itself would loop.
            return encapsulate(datagram, colocation.care_of_address, colocation.home_agent,
                               Encapsulation.IPIP if colocation.nested else colocation.encapsulation,
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
        self._lan_rules: list[Rule] = []

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
        if colocation.nested:  # the home address stays on the physical interface (see the docstring)
            netlink_mobile.delete_address(IPv4Interface(colocation.home_address), self.device)
        else:
            netlink_mobile.add_address(Address(IPv4Interface(colocation.home_address)), self.device)
        if old is not None and old.home_address != colocation.home_address:
            netlink_mobile.delete_address(IPv4Interface(old.home_address), self.device)
            netlink_policy.delete_rule(self.reverse_rule(old.home_address))
        own = not colocation.nested and (colocation.reverse or colocation.udp_tunnel)
        if own or colocation.lan:
            netlink.replace_route(DEFAULT, device=self.device, table=REVERSE_TABLE)
        if own:
            netlink_policy.add_rule(self.reverse_rule(colocation.home_address))
        else:
            netlink_policy.delete_rule(self.reverse_rule(colocation.home_address))
        wanted = colocation.lan_rules()
        for rule in wanted:
            netlink_policy.add_rule(rule)
        for rule in self._lan_rules:
            if rule not in wanted:
                netlink_policy.delete_rule(rule)
        self._lan_rules = wanted
        if not own and not colocation.lan:
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
        colocation = self.table.colocation
        if colocation is None or not colocation.nested:
            drain_into_tun(receiver, self._tun, self.table.deliver, self.table.counts)
            return
        for _ in range(BATCH):  # nested: on to the LAN with the raw socket (see the module docstring)
            try:
                packet = receiver.recv(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            inner = self.table.deliver(packet)
            if inner is not None:
                self._forward(inner)

    def _forward(self, inner: bytes) -> None:
        """Send a decapsulated datagram for the LAN as a router would: TTL less one (the kernel
        fills in the header checksum of an IP_HDRINCL packet)."""
        if inner[8] <= 1:
            self.table.counts["dropped_ttl_exceeded"] += 1
            return
        packet = bytearray(inner)
        packet[8] -= 1
        packet[10:12] = b"\0\0"
        if self._send is None:
            return
        try:
            self._send.sendto(bytes(packet), (str(IPv4Address(bytes(packet[16:20]))), 0))
        except OSError:
            self.table.counts["send_errors"] += 1

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
            for rule in self._lan_rules:
                netlink_policy.delete_rule(rule)
            self._lan_rules = []
            netlink_policy.delete_table_route(DEFAULT, REVERSE_TABLE)
        finally:
            self._close_sockets()
            if self._tun is not None:
                close_tun(self._loop, self._tun)
                self._tun = None
