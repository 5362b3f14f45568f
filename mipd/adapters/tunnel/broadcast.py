"""Forward the home link's broadcasts to away nodes that asked for them (RFC 5944 4.3).

A home agent "MUST NOT forward broadcast datagrams to any mobile node" other than those that set
B in their registration. For such a node:

- D set (co-located care-of address: the node decapsulates itself): the broadcast datagram is
  tunnelled straight to the care-of address;
- D clear (a foreign agent decapsulates): the home agent MUST "first encapsulate the broadcast
  datagram in a unicast datagram addressed to the mobile node's home address" and tunnel that,
  so the foreign agent delivers a unicast and the node unwraps the broadcast itself. The inner
  layer is IP-in-IP, which every mobile node must be able to decapsulate (4.1).

The datagrams are read with an ``AF_PACKET`` socket on the home interface (only frames the link
delivered to the broadcast address: never our own outgoing ones) and sent with a raw socket of
this class's own, so it works with either tunnel backend. Multicast (4.4) is not forwarded yet.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from ipaddress import IPv4Address, IPv4Network

from mipd.core.planes import DataPlane, Endpoint
from mipd.core.wire import ipv4
from mipd.core.wire.addresses import LIMITED_BROADCAST
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.tunnel import Encapsulation, TunnelRefused, encapsulate

ETH_P_IP = 0x0800
PACKET_BROADCAST = 1  # linux/if_packet.h: a frame to the link-layer broadcast address
BATCH = 256


class BroadcastForwarder:
    """Tunnels home-link broadcasts to every endpoint registered with B."""

    def __init__(self) -> None:
        self.endpoints: dict[IPv4Address, tuple[Endpoint, ...]] = {}
        self.counts: Counter[str] = Counter()
        self.broadcast_addresses = frozenset({LIMITED_BROADCAST})
        self._identification = 0
        self._receiver: socket.socket | None = None
        self._send: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, interface: str, home_network: IPv4Network) -> None:
        """Listen on ``interface`` for broadcasts to 255.255.255.255 or ``home_network``'s
        broadcast address (in the running loop). Raises OSError."""
        self.broadcast_addresses = frozenset({LIMITED_BROADCAST, home_network.broadcast_address})
        self._loop = asyncio.get_running_loop()
        try:
            self._receiver = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
            self._receiver.bind((interface, ETH_P_IP))
            self._receiver.setblocking(False)
            self._send = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self._send.setblocking(False)
        except OSError:
            self.close()
            raise
        self._loop.add_reader(self._receiver.fileno(), self._drain)

    def update(self, change: DataPlane) -> None:
        """Follow one node's desired state: only its endpoints with B receive broadcasts."""
        wanted = tuple(e for e in change.endpoints if e.broadcast)
        if wanted:
            self.endpoints[change.home_address] = wanted
        else:
            self.endpoints.pop(change.home_address, None)

    def _next_identification(self) -> int:
        self._identification = (self._identification + 1) & 0xFFFF
        return self._identification

    def packets(self, datagram: bytes) -> list[tuple[bytes, IPv4Address]]:
        """The tunnel packets (with their care-of addresses) that carry broadcast ``datagram``."""
        try:
            header, _ = ipv4.parse(datagram)
        except DecodeError:
            self.counts["dropped_malformed"] += 1
            return []
        if header.destination not in self.broadcast_addresses:
            return []  # a unicast datagram in a broadcast frame: not a broadcast datagram
        out = []
        for home, endpoints in self.endpoints.items():
            for endpoint in endpoints:
                try:
                    packet = datagram
                    if not endpoint.decapsulates:  # 4.3: nested, via a unicast to the home address
                        packet = encapsulate(packet, endpoint.source, home, Encapsulation.IPIP,
                                             self._next_identification())
                    packet = encapsulate(packet, endpoint.source, endpoint.care_of_address,
                                         endpoint.encapsulation, self._next_identification())
                except TunnelRefused as refused:
                    self.counts[f"dropped_{refused.reason}"] += 1
                    continue
                out.append((packet, endpoint.care_of_address))
        return out

    def _drain(self) -> None:
        assert self._receiver is not None and self._send is not None
        for _ in range(BATCH):
            try:
                datagram, address = self._receiver.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            if address[2] != PACKET_BROADCAST:
                continue
            for packet, care_of_address in self.packets(datagram):
                try:
                    self._send.sendto(packet, (str(care_of_address), 0))
                except OSError:
                    self.counts["send_errors"] += 1
                else:
                    self.counts["broadcasts_forwarded"] += 1

    def counters(self) -> dict[str, int]:
        """Broadcast copies forwarded and dropped, by reason."""
        return dict(self.counts)

    def close(self) -> None:
        """Stop listening and close both sockets."""
        if self._receiver is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._receiver.fileno())
            self._receiver.close()
            self._receiver = None
        if self._send is not None:
            self._send.close()
            self._send = None
