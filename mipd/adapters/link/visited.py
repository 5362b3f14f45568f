"""The foreign agent on its visited link: registration requests in, replies out, as whole frames.

A foreign agent needs more of a request than a UDP socket tells: the node's link-layer source
address, to answer and deliver to it without ARP (RFC 5944 3.7.1, 4.2.2), and the IP TTL (RFC 3024:
a reverse-tunnel request must come with TTL 255). And a request's IP source is a home address that is
not on the link, which the IP stack may refuse (reverse-path filtering) before any socket sees it. So
requests are read off an AF_PACKET socket bound to the interface, below IP, and replies are written
onto it as whole Ethernet frames to the node's link-layer address.

The packet socket carries a classic BPF filter (:func:`registration_filter`) so that the kernel hands
over only unfragmented IPv4 UDP to the registration port; the adapter then validates the IP header
and UDP checksums (3.7.2.1: a bad UDP checksum is silently discarded, and counted) and keeps only
datagrams addressed to one of ``accepted``, to 224.0.0.11 or to 255.255.255.255. Fragments are not
reassembled here: registration messages are far below any link MTU.

Beside it a plain UDP socket is bound to the registration port on the interface (SO_BINDTODEVICE,
INADDR_ANY) and joined to 224.0.0.11 there, and whatever it receives is read and thrown away. It is
there for the kernel's sake: with a socket on the port the IP stack does not answer each request
with ICMP port unreachable, and the membership programs the interface's multicast filter so that
frames to 224.0.0.11 reach the host (and so the packet socket) at all.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import TypeVar

from mipd.adapters.netlink import calls as netlink
from mipd.core.actions import SendToNode
from mipd.core.foreign_agent import ALL_MOBILITY_AGENTS, NodeRequest
from mipd.core.wire.addresses import LIMITED_BROADCAST
from mipd.core.wire.arp import ETH_P_IP, mac_bytes
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.frames import BAD_UDP_CHECKSUM, decode_udp_frame, encode_udp_frame
from mipd.core.wire.ipv4 import Protocol

BATCH = 256
MAX_FRAME = 65536 + 64
T = TypeVar("T")
REPLY_TTL = 64

# <linux/if_packet.h>, <linux/socket.h>, <asm-generic/socket.h>: not all exported by Python's socket.
SOL_PACKET = 263
PACKET_AUXDATA = 8
SO_ATTACH_FILTER = 26
TP_STATUS_CSUMNOTREADY = 1 << 3  # the checksum is left to offload: a local sender, not yet computed
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_CSUM_VALID = 1 << 7  # the checksum was verified (by the NIC or the kernel)
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_ACCEPTED_KINDS = frozenset({socket.PACKET_HOST, socket.PACKET_BROADCAST, socket.PACKET_MULTICAST})

# Classic BPF opcodes (<linux/filter.h>): class | size | mode.
BPF_LDH_ABS = 0x28  # A = 16 bits at [k]
BPF_LDB_ABS = 0x30  # A = 8 bits at [k]
BPF_LDXB_MSH = 0xB1  # X = 4 * ([k] & 0x0f): the IP header length
BPF_LDH_IND = 0x48  # A = 16 bits at [X + k]
BPF_JEQ = 0x15  # if A == k goto +jt else goto +jf
BPF_JSET = 0x45  # if A & k goto +jt else goto +jf
BPF_RET = 0x06  # accept k bytes of the frame (0: drop it)
ACCEPT_ALL = 0x40000

Instruction = tuple[int, int, int, int]  # (code, jt, jf, k) as struct sock_filter


def registration_filter(port: int) -> list[Instruction]:
    """The BPF program: unfragmented IPv4 UDP to ``port``, offsets from the Ethernet header.

    Jumps are relative to the next instruction; every "no" goes to 10 (drop)."""
    return [
        (BPF_LDH_ABS, 0, 0, 12),  # 0  A = ethertype
        (BPF_JEQ, 0, 8, ETH_P_IP),  # 1  IPv4?                           no -> 10
        (BPF_LDB_ABS, 0, 0, 14 + 9),  # 2  A = IP protocol
        (BPF_JEQ, 0, 6, Protocol.UDP),  # 3  UDP?                            no -> 10
        (BPF_LDH_ABS, 0, 0, 14 + 6),  # 4  A = flags and fragment offset
        (BPF_JSET, 4, 0, 0x3FFF),  # 5  MF or an offset: a fragment     yes -> 10
        (BPF_LDXB_MSH, 0, 0, 14),  # 6  X = IP header length
        (BPF_LDH_IND, 0, 0, 14 + 2),  # 7  A = UDP destination port
        (BPF_JEQ, 0, 1, port),  # 8  the registration port?          no -> 10
        (BPF_RET, 0, 0, ACCEPT_ALL),  # 9  accept
        (BPF_RET, 0, 0, 0),  # 10 drop
    ]


def attach_filter(sock: socket.socket, program: list[Instruction]) -> None:
    """SO_ATTACH_FILTER: struct sock_fprog {unsigned short len; struct sock_filter *filter}."""
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in program))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


Frame = tuple[bytes, list[tuple[int, int, bytes]], int, int]  # frame, ancillary data, flags, packet type


def open_filtered(interface: str, program: list[Instruction]) -> socket.socket:
    """An AF_PACKET socket on ``interface`` that sees only what ``program`` passes, with the
    kernel's per-frame auxiliary data (checksum status). Opened with protocol 0, which receives
    nothing until bind() names ETH_P_IP, so no unfiltered frame can be queued in between."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_filter(sock, program)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.bind((interface, ETH_P_IP))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def drain_frames(sock: socket.socket, counts: Counter[str], parse: Callable[[Frame], T | None]) -> list[T]:
    """Read up to BATCH frames now waiting on ``sock`` and return what ``parse`` makes of them;
    receive errors are counted, never raised."""
    batch: list[T] = []
    for _ in range(BATCH):
        try:
            frame, ancillary, flags, address = sock.recvmsg(MAX_FRAME, socket.CMSG_SPACE(_AUXDATA.size))
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            counts["receive_errors"] += 1
            continue
        parsed = parse((frame, ancillary, flags, address[2]))
        if parsed is not None:
            batch.append(parsed)
    return batch


class VisitedLink:
    """Registration requests from, and replies to, the nodes on one visited link."""

    def __init__(self, interface: str, port: int = 434, accepted: frozenset[IPv4Address] = frozenset()) -> None:
        self.interface = interface
        self.port = port
        self.accepted = accepted  # the interface's addresses; may be replaced while running
        self.last_send_error: OSError | None = None
        self._counts: Counter[str] = Counter()
        self._packet: socket.socket | None = None
        self._discard: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mac = b""
        self._ids = itertools.count(random.getrandbits(16))

    def start(self, deliver: Callable[[list[NodeRequest]], None]) -> None:
        """Open both sockets (all or none) and start delivering batches of requests."""
        self._loop = asyncio.get_running_loop()
        self._mac = mac_bytes(netlink.link_address(self.interface))
        try:
            self._packet = self._open_packet()
            self._discard = self._open_discard()
        except OSError:
            self.close()
            raise
        self._loop.add_reader(self._packet.fileno(), self._drain, deliver)
        self._loop.add_reader(self._discard.fileno(), self._drain_discard)

    def _open_packet(self) -> socket.socket:
        return open_filtered(self.interface, registration_filter(self.port))

    def _open_discard(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.bind(("0.0.0.0", self.port))
            mreqn = struct.pack("=4s4si", ALL_MOBILITY_AGENTS.packed, bytes(4), socket.if_nametoindex(self.interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _drain(self, deliver: Callable[[list[NodeRequest]], None]) -> None:
        assert self._packet is not None
        batch = drain_frames(self._packet, self._counts, lambda f: self._request(*f))
        if batch:
            self._counts["delivered"] += len(batch)
            deliver(batch)

    def _request(self, frame: bytes, ancillary: list[tuple[int, int, bytes]], flags: int,
                 kind: int) -> NodeRequest | None:
        self._counts["received"] += 1
        # Our own outgoing frames (a socket bound to ETH_P_IP is not handed them today; only ETH_P_ALL
        # taps are), or frames to another host's MAC (promiscuous mode): not requests to us.
        if kind not in _ACCEPTED_KINDS:
            self._counts["ignored_outgoing" if kind == socket.PACKET_OUTGOING else "ignored_other_host"] += 1
            return None
        status = 0
        for level, kind_, data in ancillary:
            if level == SOL_PACKET and kind_ == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                status = _AUXDATA.unpack_from(data)[0]
        if flags & socket.MSG_TRUNC or status & TP_STATUS_VLAN_VALID:
            self._counts["dropped_truncated_or_tagged"] += 1
            return None
        # A frame from a sender on this host (a veth peer, a bridge) may carry a UDP checksum the
        # kernel has left to offload (CSUMNOTREADY): it is not computed yet, and not wrong.
        verify = not status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID)
        try:
            decoded = decode_udp_frame(frame, verify_udp_checksum=verify)
        except DecodeError as exc:
            self._counts["dropped_bad_udp_checksum" if exc.reason == BAD_UDP_CHECKSUM else "dropped_malformed"] += 1
            return None
        destination = decoded.ip.destination
        if destination not in self.accepted and destination not in (ALL_MOBILITY_AGENTS, LIMITED_BROADCAST):
            self._counts["dropped_not_for_us"] += 1
            return None
        if decoded.destination_port != self.port:  # the filter already ensures it
            self._counts["dropped_malformed"] += 1
            return None
        return NodeRequest(decoded.payload, decoded.ip.source, decoded.source_port, destination,
                           decoded.source_mac, decoded.ip.ttl)

    def _drain_discard(self) -> None:
        assert self._discard is not None
        for _ in range(BATCH):
            try:
                self._discard.recv(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            self._counts["discarded"] += 1

    def send(self, action: SendToNode) -> None:
        """Send the datagram in a frame to ``action.link_address``; errors are counted, not raised."""
        try:
            if self._packet is None:
                raise OSError("the visited link is not open")
            if len(action.link_address) != 6:
                raise OSError(f"link-layer address of {len(action.link_address)} bytes")
            frame = encode_udp_frame(
                action.payload, destination_mac=action.link_address, source_mac=self._mac, source=action.source,
                source_port=action.source_port, destination=action.destination,
                destination_port=action.destination_port, ttl=REPLY_TTL, identification=next(self._ids))
            self._packet.send(frame)
        except (OSError, ValueError) as exc:
            # Like any UDP reply: a lost one is retransmitted for by the node; never fatal.
            self._counts["send_errors"] += 1
            self.last_send_error = exc if isinstance(exc, OSError) else OSError(str(exc))
            return
        self._counts["sent"] += 1

    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    def close(self) -> None:
        for sock in (self._packet, self._discard):
            if sock is None:
                continue
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._packet = self._discard = None
