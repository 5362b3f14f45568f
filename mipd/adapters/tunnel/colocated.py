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

IPv6 is disabled on ``mipm0`` so that the kernel's own router solicitations never reach the reader.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
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
    open_raw_sockets,
    open_tun,
)
from mipd.core.wire import ipv4
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.tunnel import DropReason, Encapsulation, TunnelRefused, encapsulate

DEVICE = "mipm0"
REVERSE_TABLE = 760_001
PRIORITY_REVERSE = 7620
DEFAULT = IPv4Network("0.0.0.0/0")
PROC = Path("/proc/sys/net/ipv4")

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

    def reverse(self, datagram: bytes) -> bytes | None:
        """Our own ``datagram`` tunnelled to the home agent from the care-of address, or None."""
        colocation = self.colocation
        if not datagram or datagram[0] >> 4 != 4:
            self.counts["ignored_not_ipv4"] += 1
            return None
        try:
            header, _ = ipv4.parse(datagram)
        except DecodeError:
            self.counts["dropped_malformed"] += 1
            return None
        if colocation is None or not colocation.reverse or header.source != colocation.home_address:
            self.counts["dropped_not_home_source"] += 1
            return None
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
            self._tun = open_tun(self.device)
            netlink.set_link_up(self.device)
            (self.proc / "conf" / self.device / "rp_filter").write_text("0")
            ipv6 = self.proc.parent / "ipv6" / "conf" / self.device / "disable_ipv6"
            if ipv6.exists():
                ipv6.write_text("1")
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
        if colocation.reverse:
            netlink.replace_route(DEFAULT, device=self.device, table=REVERSE_TABLE)
            netlink_policy.add_rule(self.reverse_rule(colocation.home_address))
        else:
            netlink_policy.delete_rule(self.reverse_rule(colocation.home_address))
            netlink_policy.delete_table_route(DEFAULT, REVERSE_TABLE)

    def _drain_tun(self) -> None:
        assert self._tun is not None
        for _ in range(BATCH):
            try:
                datagram = os.read(self._tun, MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            packet = self.table.reverse(datagram)
            if packet is None or self._send is None or self.table.colocation is None:
                continue
            try:
                self._send.sendto(packet, (str(self.table.colocation.home_agent), 0))
            except OSError:  # unreachable home agent, EMSGSIZE, full buffer: counted, not fatal
                self.table.counts["send_errors"] += 1
            else:
                self.table.counts["reverse_tunnelled"] += 1

    def _drain_tunnel(self, receiver: socket.socket) -> None:
        drain_into_tun(receiver, self._tun, self.table.deliver, self.table.counts)

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
