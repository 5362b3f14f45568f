"""The mobile node on its current link: Agent Advertisements in, Agent Solicitations out, as frames.

A mobile node needs more of an advertisement than a raw ICMP socket tells: the agent's link-layer
address, to which it sends its registration request (RFC 5944 3.6.1.1: "the link-layer address
from which the Agent Advertisement was received"). And away from home it may have no usable IPv4
address on the link at all (its home address sits on the interface or on ``lo``), so the IP stack
may drop or misroute what it hears and sends. Both directions therefore go below IP:

- *receive*: an AF_PACKET socket bound to the interface for ETH_P_IP, with a classic BPF filter
  (:func:`advertisement_filter`) so the kernel hands over only unfragmented IPv4 ICMP of type 9
  (Router Advertisement, RFC 1256 3). A packet socket sees every frame the NIC accepts: unicast to
  our MAC, ff:ff:ff:ff:ff:ff (255.255.255.255), and 01:00:5e:00:00:01 (224.0.0.1, the all-systems
  group every IPv4 interface joins when it comes up, address or not, RFC 1112 / Linux ip_mc_up).
  The socket also adds 01:00:5e:00:00:01 as a PACKET_MR_MULTICAST membership of its own, so the
  NIC's multicast filter accepts it even on an interface without IPv4 configuration. Each frame is
  validated (IPv4 header checksum; ICMP checksum with :func:`~mipd.core.wire.icmp.decode_icmp`) and kept
  only if it carries the Mobility Agent Advertisement Extension (2.4: that extension is what makes a
  Router Advertisement an Agent Advertisement). Whether to act on it (unknown extensions, 1.8;
  reserved bits, which the codec already ignores) is the engine's decision.
- *send*: :meth:`MobileLink.solicit` writes the whole frame on the same socket: Ethernet destination
  the group's MAC (01:00:5e:00:00:0b for 224.0.0.11) or broadcast, source the interface's MAC, IPv4
  source the home address or 0.0.0.0 (2.4 and RFC 1256 5.1 both allow that), TTL 1 (2.2). No
  route, no ARP and no configured address are involved.

Malformed input is counted, never raised; so is a failed send (a lost solicitation is retried by the
engine's own backoff, 2.4).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from mipd.adapters.link.visited import (
    ACCEPT_ALL,
    BPF_JEQ,
    BPF_JSET,
    BPF_LDB_ABS,
    BPF_LDH_ABS,
    BPF_LDXB_MSH,
    BPF_RET,
    PACKET_AUXDATA,
    SOL_PACKET,
    TP_STATUS_CSUMNOTREADY,
    TP_STATUS_VLAN_VALID,
    Instruction,
    drain_frames,
    open_filtered,
)
from mipd.core.actions import SendIcmp
from mipd.core.wire.addresses import UNSPECIFIED
from mipd.core.wire.arp import ETH_P_IP
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.frames import decode_ip_frame, encode_ip_frame, link_destination
from mipd.core.wire.icmp import ALL_SYSTEMS, AgentAdvertisement, IcmpType, decode_icmp
from mipd.core.wire.ipv4 import Protocol

__all__ = ["HeardAdvertisement", "MobileLink", "advertisement_filter"]

BATCH = 256
MAX_FRAME = 65536 + 64
ARPHRD_ETHER = 1  # <linux/if_arp.h>
BPF_LDB_IND = 0x50  # A = 8 bits at [X + k]
PACKET_ADD_MEMBERSHIP = 1  # <linux/if_packet.h>
PACKET_MR_MULTICAST = 0
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_MREQ = struct.Struct("=iHH8s")  # struct packet_mreq: ifindex, type, alen, address
_ACCEPTED_KINDS = frozenset({socket.PACKET_HOST, socket.PACKET_BROADCAST, socket.PACKET_MULTICAST})


def advertisement_filter() -> list[Instruction]:
    """The BPF program: unfragmented IPv4 ICMP of type 9, offsets from the Ethernet header.

    The ICMP type sits after the IP header, whose length (IHL * 4) the X register holds. Jumps are
    relative to the next instruction; every "no" goes to 10 (drop)."""
    return [
        (BPF_LDH_ABS, 0, 0, 12),  # 0  A = ethertype
        (BPF_JEQ, 0, 8, ETH_P_IP),  # 1  IPv4?                              no -> 10
        (BPF_LDB_ABS, 0, 0, 14 + 9),  # 2  A = IP protocol
        (BPF_JEQ, 0, 6, Protocol.ICMP),  # 3  ICMP?                              no -> 10
        (BPF_LDH_ABS, 0, 0, 14 + 6),  # 4  A = flags and fragment offset
        (BPF_JSET, 4, 0, 0x3FFF),  # 5  MF or an offset: a fragment        yes -> 10
        (BPF_LDXB_MSH, 0, 0, 14),  # 6  X = IP header length
        (BPF_LDB_IND, 0, 0, 14),  # 7  A = ICMP type
        (BPF_JEQ, 0, 1, IcmpType.ROUTER_ADVERTISEMENT),  # 8  a Router Advertisement?   no -> 10
        (BPF_RET, 0, 0, ACCEPT_ALL),  # 9  accept
        (BPF_RET, 0, 0, 0),  # 10 drop
    ]


@dataclass(frozen=True, slots=True)
class HeardAdvertisement:
    """One Agent Advertisement as it arrived on the link (RFC 5944 2.1)."""

    advertisement: AgentAdvertisement
    source: IPv4Address  # the agent's address: where a request through it goes (3.6.1.1)
    destination: IPv4Address  # 224.0.0.1, 255.255.255.255, or unicast (an answer to a solicitation)
    link_address: bytes  # the Ethernet source, 6 bytes: where the request's frame goes (3.6.1.1)
    ttl: int  # the IP TTL; agents send 1 (2.1)


class MobileLink:
    """Agent discovery on ``interface``: solicitations leave with IPv4 source ``source`` (the home
    address, or 0.0.0.0; the attribute may be replaced while running)."""

    def __init__(self, interface: str, source: IPv4Address = UNSPECIFIED) -> None:
        self.interface = interface
        self.source = source
        self.last_send_error: OSError | None = None
        self._counts: Counter[str] = Counter()
        self._packet: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(random.getrandbits(16))

    def start(self, on_advertisements: Callable[[list[HeardAdvertisement]], None]) -> None:
        """Open the packet socket and deliver batches of Agent Advertisements. OSError if impossible
        (no such interface, not Ethernet, no CAP_NET_RAW)."""
        self._loop = asyncio.get_running_loop()
        self._packet = self._open()
        self._loop.add_reader(self._packet.fileno(), self._drain, on_advertisements)

    def _open(self) -> socket.socket:
        sock = open_filtered(self.interface, advertisement_filter())
        try:
            hatype = sock.getsockname()[3]
            if hatype != ARPHRD_ETHER:
                raise OSError(f"{self.interface} is not an Ethernet interface (ARPHRD {hatype})")
            group = link_destination(ALL_SYSTEMS)
            mreq = _MREQ.pack(socket.if_nametoindex(self.interface), PACKET_MR_MULTICAST, len(group), group)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _drain(self, deliver: Callable[[list[HeardAdvertisement]], None]) -> None:
        assert self._packet is not None
        batch = drain_frames(self._packet, self._counts, lambda f: self._heard(*f))
        if batch:
            self._counts["delivered"] += len(batch)
            deliver(batch)

    def _heard(self, frame: bytes, ancillary: list[tuple[int, int, bytes]], flags: int,
               kind: int) -> HeardAdvertisement | None:
        self._counts["received"] += 1
        if kind not in _ACCEPTED_KINDS:  # our own outgoing frames, or another host's (promiscuous)
            self._counts["ignored_outgoing" if kind == socket.PACKET_OUTGOING else "ignored_other_host"] += 1
            return None
        status = 0
        for level, type_, data in ancillary:
            if level == SOL_PACKET and type_ == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                status = _AUXDATA.unpack_from(data)[0]
        if flags & socket.MSG_TRUNC or status & TP_STATUS_VLAN_VALID:
            self._counts["dropped_truncated_or_tagged"] += 1
            return None
        # The ICMP checksum is verified in software whatever the NIC reports: a NIC's "checksum
        # valid" covers TCP and UDP, not ICMP. Only a local sender's frame whose checksum was left
        # to offload (CSUMNOTREADY; not done for ICMP today) is taken as it is.
        verify = not status & TP_STATUS_CSUMNOTREADY
        try:
            decoded = decode_ip_frame(frame)
            message = decode_icmp(decoded.payload, verify_checksum=verify)
        except DecodeError as exc:
            self._counts["dropped_bad_checksum" if "checksum" in exc.reason else "dropped_malformed"] += 1
            return None
        if not isinstance(message, AgentAdvertisement) or decoded.ip.fragmented:  # the filter ensures both
            self._counts["dropped_malformed"] += 1
            return None
        if message.mobility is None:  # 2.4: without extension 16 it is a plain router advertisement
            self._counts["ignored_router_advertisement"] += 1
            return None
        return HeardAdvertisement(message, decoded.ip.source, decoded.ip.destination, decoded.source_mac,
                                  decoded.ip.ttl)

    def solicit(self, action: SendIcmp, source: IPv4Address | None = None) -> None:
        """Send the ICMP message of ``action`` (an Agent Solicitation, 2.2) in a frame to
        ``action.destination`` (multicast or 255.255.255.255) with TTL ``action.ttl``, from
        ``source`` or else :attr:`source`. A failure is counted and remembered, never raised."""
        try:
            if self._packet is None:
                raise OSError("the mobile link is not open")
            mac = self._packet.getsockname()[4]  # the interface's current MAC
            frame = encode_ip_frame(
                action.payload, destination_mac=link_destination(action.destination), source_mac=mac,
                source=self.source if source is None else source, destination=action.destination,
                protocol=Protocol.ICMP, ttl=action.ttl, identification=next(self._ids))
            self._packet.send(frame)
        except (OSError, ValueError) as exc:
            # A link that is down (ENETDOWN) or a full queue loses one solicitation; 2.4's backoff retries.
            self._counts["send_errors"] += 1
            self.last_send_error = exc if isinstance(exc, OSError) else OSError(str(exc))
            return
        self._counts["sent"] += 1

    def counters(self) -> dict[str, int]:
        """Counts by name: received, delivered, sent, send_errors, ignored_router_advertisement,
        dropped_bad_checksum, dropped_malformed, dropped_truncated_or_tagged, ignored_*..."""
        return dict(self._counts)

    def close(self) -> None:
        if self._packet is not None:
            if self._loop is not None and self._packet.fileno() >= 0:
                self._loop.remove_reader(self._packet.fileno())
            self._packet.close()
            self._packet = None
