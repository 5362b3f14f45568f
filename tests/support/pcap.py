"""Write IPv4 frames into a classic pcap file, for decoders that read captures (tshark).

The frames are raw IPv4 (LINKTYPE_RAW), so no link layer has to be invented. Header and UDP
checksums are filled in so that an independent decoder can check them too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path

LINKTYPE_RAW = 101
IPPROTO_ICMP = 1
IPPROTO_UDP = 17


def internet_checksum(data: bytes) -> int:
    """RFC 1071, written out here independently of mipd.core.wire.icmp.checksum."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def ipv4(proto: int, src: str, dst: str, payload: bytes, ttl: int = 64) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, 0, ttl, proto, 0,
        IPv4Address(src).packed, IPv4Address(dst).packed,
    )
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    return header + payload


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 datagram carrying ``payload`` over UDP, with a correct UDP checksum."""
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = IPv4Address(src).packed + IPv4Address(dst).packed + struct.pack("!BBH", 0, IPPROTO_UDP, len(segment))
    value = internet_checksum(pseudo + segment) or 0xFFFF
    return ipv4(IPPROTO_UDP, src, dst, segment[:6] + value.to_bytes(2, "big") + segment[8:])


def icmp(src: str, dst: str, message: bytes) -> bytes:
    """An IPv4 datagram carrying an ICMP message, TTL 1 as agent discovery requires."""
    return ipv4(IPPROTO_ICMP, src, dst, message, ttl=1)


def write_pcap(path: Path, frames: Iterable[bytes]) -> None:
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for number, frame in enumerate(frames, 1):
            out.write(struct.pack("<IIII", number, 0, len(frame), len(frame)))
            out.write(frame)
