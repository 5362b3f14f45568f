"""Raw ICMP on one link: send Agent Advertisements, receive Agent Solicitations (and Advertisements).

Two raw ICMP sockets, both bound to the link with SO_BINDTODEVICE:

- the *send* socket is bound to the agent's address, so every advertisement leaves from it (a
  mobile node takes the agent's address from the IP source, RFC 5944 3.6.1.1). IP TTL and
  IP_MULTICAST_TTL are 1 (2.1: "The TTL for all Agent Advertisements MUST be set to 1"),
  IP_MULTICAST_IF names the link, SO_BROADCAST allows 255.255.255.255 and IP_MULTICAST_LOOP is
  off. Its ICMP_FILTER blocks every type: it never reads.
- the *receive* socket is not bound to an address (a raw socket bound to one only sees packets
  for it), joins 224.0.0.11 (all mobility agents, which agents "MUST process", 2.3) and 224.0.0.2
  (all routers, where RFC 1256 hosts solicit); 224.0.0.1 and 255.255.255.255 arrive anyway. Its
  ICMP_FILTER lets through only types 10 and, when someone subscribed, 9, so other ICMP never
  wakes the daemon.

Malformed messages are counted and dropped, never raised. The link-layer source of a received
message is not reported: that needs an AF_PACKET socket, which a mobile node can add later.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from mipd.core.actions import SendIcmp
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.icmp import AgentAdvertisement, AgentSolicitation, IcmpType, decode_icmp

ALL_MOBILITY_AGENTS = IPv4Address("224.0.0.11")  # RFC 5944 2.3
ALL_ROUTERS = IPv4Address("224.0.0.2")  # RFC 1256 3
SOL_RAW = 255  # <linux/socket.h>
ICMP_FILTER = 1  # <linux/icmp.h>: a bit set per ICMP type to *block*
BATCH = 64
_ALL_TYPES = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Received:
    """One decoded Router Solicitation or Advertisement as it arrived on the link."""

    message: AgentSolicitation | AgentAdvertisement
    source: IPv4Address
    destination: IPv4Address
    ttl: int


@dataclass
class IcmpCounters:
    received: int = 0  # solicitations and advertisements delivered
    malformed: int = 0  # dropped: truncated IP header, bad checksum, undecodable
    ignored: int = 0  # dropped: a type nobody subscribed to, or a Solicitation with code != 0
    sent: int = 0
    send_errors: int = 0


def _mreqn(group: IPv4Address, address: IPv4Address, ifindex: int) -> bytes:
    """struct ip_mreqn: multicast group, local address, interface index."""
    return group.packed + address.packed + struct.pack("=i", ifindex)


def parse_ip(packet: bytes) -> tuple[bytes, IPv4Address, IPv4Address, int]:
    """(ICMP message, source, destination, TTL) of an IPv4 packet read from a raw socket."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise DecodeError("not an IPv4 header", 0)
    header_length = (packet[0] & 0x0F) * 4
    if header_length < 20 or len(packet) < header_length:
        raise DecodeError(f"IPv4 header length {header_length} exceeds the packet", 0)
    return packet[header_length:], IPv4Address(packet[12:16]), IPv4Address(packet[16:20]), packet[8]


class IcmpEndpoint:
    """Agent discovery messages on ``interface``, sent from ``address``."""

    def __init__(self, interface: str, address: IPv4Address) -> None:
        self.interface = interface
        self.address = address
        self.counters = IcmpCounters()
        self.last_send_error: OSError | None = None
        self._ttl = 1  # the send socket's IP TTL and multicast TTL
        self._send: socket.socket | None = None
        self._receive: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_solicitation: Callable[[list[Received]], None] | None = None
        self._on_advertisement: Callable[[list[Received]], None] | None = None

    def open(
        self,
        on_solicitation: Callable[[list[Received]], None] | None,
        on_advertisement: Callable[[list[Received]], None] | None = None,
    ) -> None:
        """Open both sockets and deliver batches of received messages to the callbacks (a
        message type without a callback is not received at all). OSError if impossible."""
        self._on_solicitation, self._on_advertisement = on_solicitation, on_advertisement
        try:
            ifindex = socket.if_nametoindex(self.interface)
            self._send = self._open_send(ifindex)
            if on_solicitation is not None or on_advertisement is not None:
                self._receive = self._open_receive(ifindex)
        except OSError:
            self.close()
            raise
        if self._receive is not None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._receive.fileno(), self._drain)

    def _raw(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _open_send(self, ifindex: int) -> socket.socket:
        sock = self._raw()
        try:
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", _ALL_TYPES))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            for option in (socket.IP_TTL, socket.IP_MULTICAST_TTL):
                sock.setsockopt(socket.IPPROTO_IP, option, self._ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            _mreqn(IPv4Address(0), self.address, ifindex))
            sock.bind((str(self.address), 0))
        except OSError:
            sock.close()
            raise
        return sock

    def _open_receive(self, ifindex: int) -> socket.socket:
        sock = self._raw()
        wanted = (1 << IcmpType.ROUTER_SOLICITATION if self._on_solicitation is not None else 0) | (
            1 << IcmpType.ROUTER_ADVERTISEMENT if self._on_advertisement is not None else 0)
        try:
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", _ALL_TYPES & ~wanted))
            if self._on_solicitation is not None:
                for group in (ALL_MOBILITY_AGENTS, ALL_ROUTERS):
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                    _mreqn(group, IPv4Address(0), ifindex))
        except OSError:
            sock.close()
            raise
        return sock

    def _drain(self) -> None:
        assert self._receive is not None
        solicitations: list[Received] = []
        advertisements: list[Received] = []
        for _ in range(BATCH):
            try:
                packet = self._receive.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.counters.malformed += 1
                continue
            received = self._decode(packet)
            if received is None:
                continue
            self.counters.received += 1
            kind = solicitations if isinstance(received.message, AgentSolicitation) else advertisements
            kind.append(received)
        if solicitations and self._on_solicitation is not None:
            self._on_solicitation(solicitations)
        if advertisements and self._on_advertisement is not None:
            self._on_advertisement(advertisements)

    def _decode(self, packet: bytes) -> Received | None:
        """The message in ``packet``, or None (counted) when it is malformed or not wanted."""
        try:
            payload, source, destination, ttl = parse_ip(packet)
            if not payload or payload[0] not in (IcmpType.ROUTER_SOLICITATION, IcmpType.ROUTER_ADVERTISEMENT):
                self.counters.ignored += 1
                return None
            message = decode_icmp(payload)
        except DecodeError:
            self.counters.malformed += 1
            return None
        if isinstance(message, AgentSolicitation):
            # RFC 1256 5.3: a router discards a Router Solicitation whose code is not 0.
            wanted = self._on_solicitation is not None and message.code == 0
        else:
            wanted = self._on_advertisement is not None
        if not wanted:
            self.counters.ignored += 1
            return None
        return Received(message, source, destination, ttl)

    def send(self, action: SendIcmp) -> None:
        """Send one ICMP message; a failure is counted and remembered, never raised."""
        if self._send is None:
            self.counters.send_errors += 1
            return
        try:
            if action.ttl != self._ttl:
                for option in (socket.IP_TTL, socket.IP_MULTICAST_TTL):
                    self._send.setsockopt(socket.IPPROTO_IP, option, action.ttl)
                self._ttl = action.ttl
            self._send.sendto(action.payload, (str(action.destination), 0))
            self.counters.sent += 1
        except OSError as exc:
            # A link that is down or a full buffer loses one advertisement; the next one follows.
            self.counters.send_errors += 1
            self.last_send_error = exc

    def close(self) -> None:
        if self._receive is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._receive.fileno())
            self._receive.close()
            self._receive = None
        if self._send is not None:
            self._send.close()
            self._send = None
