"""Ethernet frames carrying IPv4/UDP, as a foreign agent reads and writes them on its visited link.

A foreign agent takes registration requests off the link with the frame they came in (it needs the
node's link-layer source and the IP TTL, RFC 5944 3.7.1 and RFC 3024) and answers a node that is not
reachable by routing straight at that link-layer address (3.7.2.3, 4.2.2). So both directions are
whole frames: :func:`decode_udp_frame` validates one (IPv4 header checksum, UDP length and checksum,
RFC 791 / RFC 768) and :func:`encode_udp_frame` builds one with both checksums computed.

A mobile node does the same with ICMP router discovery (RFC 5944 2.4): it hears Agent Advertisements
with their link-layer source (:func:`decode_ip_frame`) and sends Agent Solicitations as whole frames
(:func:`encode_ip_frame`, :func:`link_destination`), since away from home it may have no address
that the IP stack would route from.

A UDP checksum of zero means "none was computed" (RFC 768) and is accepted; a non-zero one that does
not verify makes the datagram one to "silently discard" (3.7.2.1), reported as :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from mipd.core.wire.arp import BROADCAST_MAC, ETH_P_IP
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.icmp import checksum
from mipd.core.wire.ipv4 import MIN_HEADER, Flags, IPv4Header, Protocol, parse

ETHERNET_HEADER = 14
UDP_HEADER = 8
_ETHERNET = struct.Struct("!6s6sH")
_UDP = struct.Struct("!HHHH")
_PSEUDO = struct.Struct("!4s4sBBH")  # RFC 768: source, destination, zero, protocol, UDP length
BAD_UDP_CHECKSUM = "bad UDP checksum"  # the DecodeError reason, for adapters that count it apart


def udp_checksum(source: IPv4Address, destination: IPv4Address, segment: bytes) -> int:
    """The RFC 768 checksum over the pseudo-header and ``segment`` (header and data), with the
    segment's checksum field taken as it is: 0 over a segment whose field is zeroed gives the value
    to write, 0 over a received segment means it verifies. A computed 0 is sent as 0xFFFF."""
    pseudo = _PSEUDO.pack(source.packed, destination.packed, 0, Protocol.UDP, len(segment))
    return checksum(pseudo + segment)


@dataclass(frozen=True, slots=True)
class UdpFrame:
    """A decoded Ethernet/IPv4/UDP frame."""

    destination_mac: bytes
    source_mac: bytes
    ip: IPv4Header
    source_port: int
    destination_port: int
    payload: bytes
    udp_checksum: int  # as received; 0 when the sender computed none


def decode_udp_frame(frame: bytes, *, verify_udp_checksum: bool = True) -> UdpFrame:
    """Decode and validate an Ethernet frame carrying an unfragmented IPv4 UDP datagram.

    ``verify_udp_checksum=False`` is for a frame whose checksum the sender's kernel has not filled in
    yet (a local sender with checksum offload; see the visited link adapter). Raises DecodeError."""
    if len(frame) < ETHERNET_HEADER:
        raise DecodeError(f"frame of {len(frame)} bytes is shorter than an Ethernet header", 0)
    destination_mac, source_mac, ethertype = _ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_IP:
        raise DecodeError(f"ethertype 0x{ethertype:04x} is not IPv4", 12)
    header, segment = parse(frame[ETHERNET_HEADER:])
    if header.protocol != Protocol.UDP:
        raise DecodeError(f"IP protocol {header.protocol} is not UDP", ETHERNET_HEADER + 9)
    if header.fragmented:
        raise DecodeError("an IP fragment", ETHERNET_HEADER + 6)
    if len(segment) < UDP_HEADER:
        raise DecodeError(f"UDP segment of {len(segment)} bytes is shorter than its header", 0)
    source_port, destination_port, length, value = _UDP.unpack_from(segment)
    if length != len(segment):
        raise DecodeError(f"UDP length {length} but {len(segment)} bytes in the IP datagram", 4)
    if value and verify_udp_checksum and udp_checksum(header.source, header.destination, segment) != 0:
        raise DecodeError(BAD_UDP_CHECKSUM, 6)
    return UdpFrame(destination_mac, source_mac, header, source_port, destination_port,
                    segment[UDP_HEADER:], value)


def encode_udp_frame(payload: bytes, *, destination_mac: bytes, source_mac: bytes, source: IPv4Address,
                     source_port: int, destination: IPv4Address, destination_port: int, ttl: int = 64,
                     identification: int = 0) -> bytes:
    """An Ethernet frame with an IPv4 (DF clear, no options) UDP datagram, both checksums computed."""
    length = UDP_HEADER + len(payload)
    if length > 0xFFFF - MIN_HEADER:
        raise ValueError(f"UDP payload of {len(payload)} bytes does not fit in an IPv4 datagram")
    segment = _UDP.pack(source_port, destination_port, length, 0) + payload
    value = udp_checksum(source, destination, segment) or 0xFFFF  # RFC 768: 0 is sent as all ones
    segment = segment[:6] + value.to_bytes(2, "big") + segment[8:]
    header = IPv4Header(0, MIN_HEADER + length, identification & 0xFFFF, Flags(0), 0, ttl, Protocol.UDP,
                        source, destination)
    return _ETHERNET.pack(destination_mac, source_mac, ETH_P_IP) + header.encode() + segment


@dataclass(frozen=True, slots=True)
class IpFrame:
    """A decoded Ethernet frame carrying an IPv4 datagram of any protocol."""

    destination_mac: bytes
    source_mac: bytes
    ip: IPv4Header
    payload: bytes  # the IP payload, bounded by the header's total length


def decode_ip_frame(frame: bytes) -> IpFrame:
    """Decode an Ethernet frame carrying an IPv4 datagram (header checksum verified). Raises DecodeError."""
    if len(frame) < ETHERNET_HEADER:
        raise DecodeError(f"frame of {len(frame)} bytes is shorter than an Ethernet header", 0)
    destination_mac, source_mac, ethertype = _ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_IP:
        raise DecodeError(f"ethertype 0x{ethertype:04x} is not IPv4", 12)
    header, payload = parse(frame[ETHERNET_HEADER:])
    return IpFrame(destination_mac, source_mac, header, payload)


def encode_ip_frame(payload: bytes, *, destination_mac: bytes, source_mac: bytes, source: IPv4Address,
                    destination: IPv4Address, protocol: int, ttl: int = 64, identification: int = 0) -> bytes:
    """An Ethernet frame with an IPv4 datagram (DF clear, no options) around ``payload``, which must
    already carry its own checksum (an ICMP message from mipd.core.wire.icmp does)."""
    if len(payload) > 0xFFFF - MIN_HEADER:
        raise ValueError(f"payload of {len(payload)} bytes does not fit in an IPv4 datagram")
    header = IPv4Header(0, MIN_HEADER + len(payload), identification & 0xFFFF, Flags(0), 0, ttl, protocol,
                        source, destination)
    return _ETHERNET.pack(destination_mac, source_mac, ETH_P_IP) + header.encode() + payload


def link_destination(destination: IPv4Address) -> bytes:
    """The Ethernet destination of a datagram to a multicast or broadcast ``destination``: the
    group's MAC, 01:00:5e and the group's low 23 bits (RFC 1112 6.4), or ff:ff:ff:ff:ff:ff for
    255.255.255.255. A unicast destination has no fixed one (that takes ARP): ValueError."""
    if destination == IPv4Address("255.255.255.255"):
        return BROADCAST_MAC
    if destination.is_multicast:
        return b"\x01\x00\x5e" + (int(destination) & 0x7FFFFF).to_bytes(3, "big")
    raise ValueError(f"{destination} is unicast: its link-layer address takes ARP")
