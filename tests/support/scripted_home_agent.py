"""A scripted RFC 3519 home agent for tests: one UDP socket on port 434 in a namespace, built with
mipd.core.wire, that answers relayed registrations (optionally with a UDP Tunnel Reply after MN-HA,
the place for the answer to a foreign agent's request) and exchanges MIP Tunnel Data messages.

Reusable wherever a test needs to see exactly what reaches a home agent: through a real NAT (the
request's source and port are the NAT's mapping, :attr:`ScriptedHomeAgent.peer`), or directly.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address

from mipd.core.wire import ipv4
from mipd.core.wire.auth import append_authentication
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.nat import TunnelData, UdpTunnelReply, decode_tunnel_data
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, decode_registration
from tests.support.netns import netns_socket


@dataclass(frozen=True)
class Received:
    """A datagram that reached the home agent's port 434, decoded."""

    payload: bytes
    source: tuple[str, int]
    request: RegistrationRequest | None = None
    data: TunnelData | None = None


class ScriptedHomeAgent:
    """Port 434 of ``address`` in namespace ``ns``; MN-HA keys by home address, FA-HA key optional."""

    def __init__(self, ns: str, address: str, mn_ha: dict[str, tuple[int, bytes]],
                 fa_ha: tuple[int, bytes] | None = None) -> None:
        self.address = address
        self.mn_ha = mn_ha
        self.fa_ha = fa_ha
        self.sock = netns_socket(ns, socket.SOCK_DGRAM, 0, (address, 434))
        self.peer: tuple[str, int] | None = None  # where the last request came from (the NAT mapping)

    def receive(self, timeout: float = 5.0, *, want: str = "any") -> Received | None:
        """The next datagram (``want``: "request", "data" or "any"; others are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                payload, source = self.sock.recvfrom(65535)
            except TimeoutError:
                return None
            if payload[:1] == b"\x04":
                if want in ("data", "any"):
                    return Received(payload, source, data=decode_tunnel_data(payload))
                continue
            message = decode_registration(payload)
            if isinstance(message, RegistrationRequest) and want in ("request", "any"):
                self.peer = source
                return Received(payload, source, request=message)
        return None

    def answer(self, request: RegistrationRequest, to: tuple[str, int], *, code: int = 0,
               udp: UdpTunnelReply | None = None) -> RegistrationReply:
        """Reply to ``request``: MN-HA, then ``udp`` (if any), then FA-HA (if we have the key)."""
        spi, key = self.mn_ha[str(request.home_address)]
        reply = RegistrationReply(code, request.lifetime, request.home_address, IPv4Address(self.address),
                                  request.identification)
        reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, spi, key, "hmac-md5")
        if udp is not None:
            reply = RegistrationReply(reply.code, reply.lifetime, reply.home_address, reply.home_agent,
                                      reply.identification, (*reply.extensions, udp))
        if self.fa_ha is not None:
            reply = append_authentication(reply, ExtensionType.FOREIGN_HOME_AUTHENTICATION, *self.fa_ha, "hmac-md5")
        self.sock.sendto(reply.encode(), to)
        return reply

    def send_data(self, inner: bytes, to: tuple[str, int], next_header: int = 4) -> None:
        """A MIP Tunnel Data message carrying ``inner`` (RFC 3519 3.3) from port 434."""
        self.sock.sendto(TunnelData(next_header, inner).encode(), to)

    def close(self) -> None:
        self.sock.close()


def udp_datagram(source: str, destination: str, source_port: int, destination_port: int, body: bytes) -> bytes:
    """An IPv4/UDP datagram (UDP checksum 0: allowed for IPv4, RFC 768)."""
    udp = source_port.to_bytes(2, "big") + destination_port.to_bytes(2, "big") + \
        (8 + len(body)).to_bytes(2, "big") + b"\0\0" + body
    header = ipv4.IPv4Header(0, 20 + len(udp), 7, ipv4.Flags(0), 0, 64, ipv4.Protocol.UDP,
                             IPv4Address(source), IPv4Address(destination))
    return header.encode() + udp
