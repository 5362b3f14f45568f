"""Tunnel encapsulation and decapsulation: IP-in-IP, GRE and minimal encapsulation.

RFC 5944 4.1: home and foreign agents MUST support IP-in-IP (RFC 2003); minimal encapsulation
(RFC 2004) and GRE (RFC 2784) are optional. Pure functions over bytes, no I/O: the tunnel
backends read datagrams, call :func:`encapsulate` / :func:`decapsulate` and send the result.

Two outcomes besides success, so that a caller can count every drop by its reason:

- :class:`~mipd.core.wire.errors.DecodeError`: the bytes are not a well-formed datagram or tunnel
  packet (counted as ``malformed``);
- :class:`TunnelRefused`: well-formed, but a tunnelling rule forbids carrying it, or it carries
  a protocol we do not (GRE with IPv6 inside: ``unsupported_protocol``); its
  :attr:`TunnelRefused.reason` is a :class:`DropReason` whose value names the counter.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import replace
from enum import StrEnum
from ipaddress import IPv4Address
from typing import NamedTuple

from mipd.core.wire import ipv4
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.icmp import checksum
from mipd.core.wire.ipv4 import Flags, IPv4Header, Protocol


class Encapsulation(StrEnum):
    """Tunnel encapsulations (section 4.1): IP-in-IP always; GRE and minimal where supported."""

    IPIP = "ipip"  # RFC 2003
    GRE = "gre"  # RFC 2784
    MINIMAL = "minimal"  # RFC 2004


DEFAULT_TTL = 64  # RFC 2003 3.1: outer TTL "appropriate for delivery ... to the tunnel exit point"
MAX_DATAGRAM = 0xFFFF  # RFC 791: Total Length is 16 bits

# RFC 2784 2.1: C(1) Reserved0(12) Ver(3), then Protocol Type(16). We send C=0, so no checksum field.
_GRE = struct.Struct("!HH")
GRE_CHECKSUM_PRESENT = 0x8000
GRE_RESERVED0_MUST_BE_ZERO = 0x7C00  # bits 1-5: 2.3 "MUST discard ... unless ... RFC 1701"
GRE_VERSION = 0x0007
ETHERTYPE_IPV4 = 0x0800  # RFC 2784 2.4: Protocol Type is an EtherType

# RFC 2004 3.1: Protocol(8) S(1) reserved(7) Header Checksum(16) Original Destination(32)
# [Original Source(32), only when S is set].
_MINIMAL = struct.Struct("!BBH4s")
MINIMAL_S = 0x80  # "Original Source Address Present", top bit of the second octet
MINIMAL_SHORT, MINIMAL_LONG = 8, 12

_PROTOCOLS = {
    Encapsulation.IPIP: Protocol.IPIP,
    Encapsulation.GRE: Protocol.GRE,
    Encapsulation.MINIMAL: Protocol.MINIMAL,
}


class DropReason(StrEnum):
    """Why a well-formed datagram is not tunnelled; the value is the counter's name."""

    TTL_ZERO = "ttl_zero"  # RFC 2003 3.1: "MUST NOT encapsulate a datagram with TTL = 0"; 3.3 (decapsulator)
    LOOP = "loop"  # RFC 2003 4: source = tunnel destination (covers RFC 5944 4.2.3's re-tunnel case)
    SOURCE_IS_LOCAL = "source_is_local"  # RFC 2003 4: source is one of the encapsulator's own addresses
    FRAGMENTED_MINIMAL = "fragmented_minimal"  # RFC 2004 3: "MUST NOT be used when ... already fragmented"
    TOO_BIG = "too_big"  # the outer datagram would exceed 65535 bytes
    # A well-formed tunnel packet carrying another protocol than IPv4 (GRE Protocol Type not
    # 0x0800, e.g. IPv6's 0x86DD): nothing wrong with it, but Mobile IPv4 carries IPv4 only.
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"


class TunnelRefused(Exception):
    """A tunnelling rule forbids carrying this datagram (RFC 2003 / 2004); ``reason`` says which."""

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else str(reason))


class Decapsulated(NamedTuple):
    """A tunnel packet taken apart: the outer addresses, the kind, and the inner datagram."""

    source: IPv4Address
    destination: IPv4Address
    encapsulation: Encapsulation
    inner: bytes


def _check_tunnelable(header: IPv4Header, destination: IPv4Address, local: Collection[IPv4Address]) -> None:
    # RFC 2003 3.1 (and 4 for the loop checks); RFC 2004 3 refers back to the same rules.
    if header.ttl == 0:
        raise TunnelRefused(DropReason.TTL_ZERO, f"datagram {header.source} -> {header.destination}")
    if header.source == destination:
        raise TunnelRefused(DropReason.LOOP, f"source {header.source} is the tunnel destination")
    if header.source in local:
        raise TunnelRefused(DropReason.SOURCE_IS_LOCAL, f"source {header.source} is our own address")


def encapsulate(inner: bytes, source: IPv4Address, destination: IPv4Address, encapsulation: Encapsulation,
                identification: int, *, ttl: int = DEFAULT_TTL,
                local_addresses: Collection[IPv4Address] = ()) -> bytes:
    """The datagram ``inner`` tunnelled from ``source`` to ``destination``.

    ``identification`` is the outer header's (IP-in-IP, GRE); minimal encapsulation keeps the
    original header and so its identification and TTL. The inner TTL is never changed here: a
    backend hands over datagrams the kernel has already forwarded (and so decremented, RFC 2003
    3.1). ``local_addresses`` are the encapsulator's own addresses for RFC 2003 4's loop check.
    Raises DecodeError (``inner`` malformed) or TunnelRefused.
    """
    header, payload = ipv4.parse(inner)
    _check_tunnelable(header, destination, local_addresses)
    if encapsulation is Encapsulation.MINIMAL:
        return _encapsulate_minimal(header, payload, source, destination)
    body = inner[: header.total_length]
    if encapsulation is Encapsulation.GRE:
        body = _GRE.pack(0, ETHERTYPE_IPV4) + body  # RFC 2784 2.1: C=0, Reserved0=0, Ver=0
    total = ipv4.MIN_HEADER + len(body)
    if total > MAX_DATAGRAM:
        raise TunnelRefused(DropReason.TOO_BIG, f"{total} bytes")
    outer = IPv4Header(
        tos=header.tos,  # RFC 2003 3.1: "copied from the inner IP header"
        total_length=total,
        identification=identification & 0xFFFF,
        # RFC 2003 3.1: inner DF set -> outer DF MUST be set; otherwise left clear so the tunnel may fragment.
        flags=Flags.DF if header.dont_fragment else Flags(0),
        fragment_offset=0,
        ttl=ttl,
        protocol=_PROTOCOLS[encapsulation],
        source=source,
        destination=destination,
        # RFC 2003 3.1: options of the inner header are "in general NOT copied"; we copy none.
    )
    return outer.encode() + body


def _encapsulate_minimal(header: IPv4Header, payload: bytes, source: IPv4Address,
                         destination: IPv4Address) -> bytes:
    # RFC 2004 3: the original header is modified and the forwarding header inserted after it.
    if header.fragmented:
        raise TunnelRefused(DropReason.FRAGMENTED_MINIMAL, f"offset {header.fragment_offset}, {header.flags!r}")
    with_source = source != header.source  # "unless the encapsulator is the original source"
    forwarding = _MINIMAL.pack(header.protocol, MINIMAL_S if with_source else 0, 0, header.destination.packed)
    if with_source:
        forwarding += header.source.packed
    # RFC 2004 3.1: the checksum covers the forwarding header only, computed with the field at zero.
    forwarding = forwarding[:2] + checksum(forwarding).to_bytes(2, "big") + forwarding[4:]
    total = header.total_length + len(forwarding)  # grows by 8 or 12 octets
    if total > MAX_DATAGRAM:
        raise TunnelRefused(DropReason.TOO_BIG, f"{total} bytes")
    # TTL, TOS, identification, flags and options stay: "the TTL ... is not modified".
    modified = replace(header, total_length=total, protocol=Protocol.MINIMAL, source=source,
                       destination=destination)
    return modified.encode() + forwarding + payload


def decapsulate(packet: bytes) -> Decapsulated:
    """Take apart an IP-in-IP (4), GRE (47) or minimal (55) tunnel packet.

    Raises DecodeError for anything malformed or any other IP protocol (GRE only as RFC 2784
    with C=0 and version 0), TunnelRefused(UNSUPPORTED_PROTOCOL) for well-formed GRE whose
    Protocol Type is not IPv4 (0x0800), and TunnelRefused(TTL_ZERO) for an inner datagram with
    TTL 0, which the decapsulator MUST discard (RFC 2003 3.1, RFC 2004 3).
    """
    outer, payload = ipv4.parse(packet)
    if outer.fragmented:
        raise DecodeError("tunnel packet is a fragment (reassemble first)", 6)
    offset = outer.header_length
    if outer.protocol == Protocol.IPIP:
        encapsulation, inner = Encapsulation.IPIP, payload
    elif outer.protocol == Protocol.GRE:
        encapsulation, inner = Encapsulation.GRE, _strip_gre(payload, offset)
    elif outer.protocol == Protocol.MINIMAL:
        encapsulation, inner = Encapsulation.MINIMAL, _restore_minimal(outer, payload, offset)
    else:
        raise DecodeError(f"IP protocol {outer.protocol} is not a tunnel", 9)
    try:
        header, _ = ipv4.parse(inner)
    except DecodeError as exc:
        raise DecodeError(f"inner datagram: {exc.reason}", offset) from None
    if header.ttl == 0:
        raise TunnelRefused(DropReason.TTL_ZERO, f"inner datagram {header.source} -> {header.destination}")
    return Decapsulated(outer.source, outer.destination, encapsulation, inner[: header.total_length])


def _strip_gre(payload: bytes, offset: int) -> bytes:
    if len(payload) < _GRE.size:
        raise DecodeError(f"GRE header of {len(payload)} bytes, need 4", offset)
    word, protocol_type = _GRE.unpack_from(payload)
    if word & GRE_CHECKSUM_PRESENT:
        raise DecodeError("GRE with checksum present (C=1) is not supported", offset)
    if word & GRE_RESERVED0_MUST_BE_ZERO:
        raise DecodeError("GRE Reserved0 bits 1-5 set (RFC 1701 keys/sequence are not supported)", offset)
    if word & GRE_VERSION:
        raise DecodeError(f"GRE version {word & GRE_VERSION}, expected 0", offset + 1)
    # Reserved0 bits 6-12 "MUST be ignored on receipt" (RFC 2784 2.3).
    if protocol_type != ETHERTYPE_IPV4:  # well-formed: IPv6 (0x86DD) or anything else we do not carry
        raise TunnelRefused(DropReason.UNSUPPORTED_PROTOCOL, f"GRE protocol type {protocol_type:#06x} is not IPv4")
    return payload[_GRE.size :]


def _restore_minimal(outer: IPv4Header, payload: bytes, offset: int) -> bytes:
    # RFC 2004 3: restore the forwarding header's fields, remove it, shrink Total Length, re-checksum.
    if len(payload) < MINIMAL_SHORT:
        raise DecodeError(f"minimal forwarding header of {len(payload)} bytes, need 8", offset)
    protocol, flags, _, destination = _MINIMAL.unpack_from(payload)
    size = MINIMAL_LONG if flags & MINIMAL_S else MINIMAL_SHORT
    if len(payload) < size:
        raise DecodeError(f"minimal forwarding header of {len(payload)} bytes, need {size}", offset)
    if checksum(payload[:size]) != 0:
        raise DecodeError("bad minimal forwarding header checksum", offset + 2)
    source = IPv4Address(payload[8:12]) if size == MINIMAL_LONG else outer.source
    original = replace(outer, total_length=outer.total_length - size, protocol=protocol,
                       source=source, destination=IPv4Address(destination))
    return original.encode() + payload[size:]
