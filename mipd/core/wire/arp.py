"""ARP on Ethernet (RFC 826) as mobility agents use it (RFC 5944 section 4.6).

A gratuitous ARP "is an ARP packet sent by a node in order to spontaneously cause other nodes to
update an entry in their ARP cache": its Sender and Target Protocol Address are both the address
being announced, and its Sender Hardware Address is the link-layer address to use for it (4.6).
It is sent to the link-layer broadcast address. Either an ARP Request or an ARP Reply may be used;
in a Reply the Target Hardware Address is set to the sender's too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from mipd.core.wire.errors import DecodeError

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST_MAC = b"\xff" * 6
REQUEST, REPLY = 1, 2
_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype, ptype, hlen, plen, oper, sha, spa, tha, tpa
_ETHERNET = struct.Struct("!6s6sH")


def mac_bytes(text: str) -> bytes:
    """``"02:00:00:00:00:0a"`` to six bytes (DecodeError if it is not a MAC address)."""
    parts = text.split(":")
    try:
        value = bytes(int(p, 16) for p in parts)
    except ValueError as exc:
        raise DecodeError(f"not a MAC address: {text!r}") from exc
    if len(parts) != 6 or len(value) != 6 or any(len(p) != 2 for p in parts):
        raise DecodeError(f"not a MAC address: {text!r}")
    return value


def mac_text(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP packet with the Ethernet header it travelled in."""

    operation: int
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address
    destination_mac: bytes = BROADCAST_MAC
    source_mac: bytes | None = None  # Ethernet source; defaults to sender_mac

    @property
    def gratuitous(self) -> bool:
        return self.sender_ip == self.target_ip

    def encode(self) -> bytes:
        """The Ethernet frame, padded to the 60-byte minimum."""
        frame = _ETHERNET.pack(self.destination_mac, self.source_mac or self.sender_mac, ETH_P_ARP) + _ARP.pack(
            1, ETH_P_IP, 6, 4, self.operation, self.sender_mac, self.sender_ip.packed, self.target_mac,
            self.target_ip.packed)
        return frame.ljust(60, b"\0")


def gratuitous_arp(mac: bytes, address: IPv4Address, operation: int = REQUEST) -> ArpPacket:
    """A gratuitous ARP announcing ``address`` at ``mac`` (RFC 5944 4.6)."""
    target_mac = mac if operation == REPLY else bytes(6)
    return ArpPacket(operation, mac, address, target_mac, address)


def decode_arp(frame: bytes) -> ArpPacket:
    """Decode an Ethernet frame carrying an IPv4 ARP packet."""
    if len(frame) < _ETHERNET.size + _ARP.size:
        raise DecodeError(f"ARP frame of {len(frame)} bytes is too short", 0)
    destination, source, ethertype = _ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        raise DecodeError(f"ethertype 0x{ethertype:04x} is not ARP", 12)
    htype, ptype, hlen, plen, operation, sha, spa, tha, tpa = _ARP.unpack_from(frame, _ETHERNET.size)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
        raise DecodeError("not Ethernet/IPv4 ARP", _ETHERNET.size)
    return ArpPacket(operation, sha, IPv4Address(spa), tha, IPv4Address(tpa), destination, source)
