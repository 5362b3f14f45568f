"""Keepalives of a UDP tunnel (RFC 3519 3.6), without I/O.

A NAT forgets a UDP mapping that carries nothing for a while; the home agent can then no longer
reach the node behind it. So the end behind the NAT sends a keepalive whenever it has sent the
home agent nothing for the keepalive interval K that the UDP Tunnel Reply gave (0 there: the
default, 110 s): an ICMP Echo Request tunnelled over UDP like any datagram, from the home address
to the home agent, from the same UDP port as the registration. The home agent answers it (its
kernel does, once the packet is out of the tunnel), which tells the node that the mapping still
leads to it.

:class:`Keepalive` is the schedule: the first keepalive K after the registration, then K after
each answer. An unanswered keepalive is sent again after :data:`ANSWER_WAIT`, then twice that,
and :data:`TRIES` unanswered in a row mean the mapping is gone (a NAT that rebooted, or a new
mapping the home agent does not know): the node registers again, which tells the home agent the
new mapping (RFC 3519 3.6, 5.3). The interval is never below :data:`MIN_INTERVAL` s (3.6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address

from mipd.core.wire.icmp import checksum
from mipd.core.wire.ipv4 import Flags, IPv4Header
from mipd.core.wire.nat import Encapsulation, TunnelData

DEFAULT_INTERVAL = 110  # RFC 3519 3.2: the keepalive interval a reply with 0 leaves to the node
MIN_INTERVAL = 10  # RFC 3519 3.6: never more often
ANSWER_WAIT = 1.0  # seconds before an unanswered keepalive is sent again (doubling)
TRIES = 3  # keepalives unanswered in a row before the mapping counts as lost
_ICMP = 1
_ECHO_REQUEST = 8
_TTL = 64
_PAYLOAD = b"mipd keepalive"


class Due(Enum):
    """What :meth:`Keepalive.poll` asks for."""

    NOTHING = "nothing"
    SEND = "send"
    LOST = "lost"


def interval_from_reply(keepalive_interval: int) -> int:
    """The interval to use for a UDP Tunnel Reply's Keepalive Interval field (0: the default)."""
    return max(MIN_INTERVAL, keepalive_interval or DEFAULT_INTERVAL)


def echo_request(source: IPv4Address, destination: IPv4Address, identifier: int, sequence: int) -> bytes:
    """An IPv4 ICMP Echo Request datagram (RFC 792) from ``source`` to ``destination``."""
    icmp = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, identifier, sequence) + _PAYLOAD
    icmp = icmp[:2] + checksum(icmp).to_bytes(2, "big") + icmp[4:]
    header = IPv4Header(0, 20 + len(icmp), sequence, Flags(0), 0, _TTL, _ICMP, source, destination)
    return header.encode() + icmp


@dataclass(slots=True)
class Keepalive:
    """The keepalive schedule of one UDP-tunnelled registration (times on the engine's clock)."""

    interval: float
    identifier: int  # the Echo Requests' identifier: an answer must carry it
    next_at: float  # when the next keepalive is due, while none is unanswered
    sequence: int = 0
    unanswered: int = 0  # keepalives sent since the last answer
    sent_at: float = 0.0  # the last one

    def next_timer(self) -> float:
        if self.unanswered == 0:
            return self.next_at
        if self.unanswered >= TRIES:
            return self.sent_at + ANSWER_WAIT * float(2 ** (TRIES - 1))
        return self.sent_at + ANSWER_WAIT * float(2 ** (self.unanswered - 1))

    def poll(self, now: float) -> Due:
        if now < self.next_timer():
            return Due.NOTHING
        return Due.LOST if self.unanswered >= TRIES else Due.SEND

    def send(self, now: float, home_address: IPv4Address, home_agent: IPv4Address) -> bytes:
        """The next keepalive as a UDP payload (tunnel data, next header 4), counted as sent."""
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.unanswered += 1
        self.sent_at = now
        inner = echo_request(home_address, home_agent, self.identifier, self.sequence)
        return TunnelData(Encapsulation.IP_IN_IP, inner).encode()

    def answered(self, identifier: int, sequence: int, now: float) -> bool:
        """An Echo Reply from the home agent: True if it answers one of ours (any still unanswered:
        a late answer to an earlier try counts too); the next keepalive is then due after K."""
        if identifier != self.identifier or self.unanswered == 0 \
                or (self.sequence - sequence) & 0xFFFF >= self.unanswered:
            return False
        self.unanswered = 0
        self.next_at = now + self.interval
        return True
