"""UDP port 434: receive registration messages, send the engine's replies.

An agent listens on its unicast ``address``; a home agent also on its home network's
subnet-directed broadcast address and on 255.255.255.255 (bound to its home link), because a
request sent there must be answered with 136 (RFC 5944 3.8.2.1 e). Each socket is bound to one
address, so the socket a datagram arrives on tells its destination address, which the engine
needs (3.8.3.1) — no IP_PKTINFO ancillary data is required.

Each wake-up drains up to :data:`BATCH` datagrams from a socket and hands them over together,
so that the runtime handles a burst in one turn of the event loop and commits it once (group
commit, docs/interfaces.md "Durability") instead of once per datagram. Each socket asks for a
receive buffer of :data:`RECEIVE_BUFFER` bytes (SO_RCVBUFFORCE, which root may use beyond
net.core.rmem_max; else SO_RCVBUF, which the kernel caps at it), so that a flood fills a large
queue the agent drains in batches, and a legitimate request in it waits rather than being lost.

A home agent asks the kernel to drop a repeat offender's datagrams before they are queued
(:meth:`RegistrationEndpoints.drop_until`, the engine's ``DropSource``): each socket gets a classic
BPF socket filter (SO_ATTACH_FILTER) that compares the IP source address with the
:data:`MAX_FILTERED` most recent offenders and drops a match, replaced as offenders come and go,
each removed when the engine said (its budget's decay, mipd(8) "Overload protection"), and
detached when none is left. Under a flood from spoofed sources the same filter admits the known
sources the engine names and only a random share of the rest (:meth:`RegistrationEndpoints.admit`,
the engine's ``AdmitSources``). What the kernel dropped on these sockets — for the filter, or because
the queue was full — is :meth:`RegistrationEndpoints.kernel_drops` (SO_MEMINFO).

The same sockets carry a home agent's UDP tunnel data (RFC 3519: "the same ports as the
registration"): the runtime hands type-4 datagrams to its UDP tunnel plane and sends that plane's
datagrams with :meth:`RegistrationEndpoints.send_tunnel_data`.

A mobile node has one socket (:class:`NodeSocket`): any local address, bound to its interface,
each request sent from the source its engine chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from mipd.core.actions import Datagram, SendDatagram
from mipd.core.wire.nat import TUNNEL_DATA_TYPE

BATCH = 256
RECEIVE_BUFFER = 8 << 20  # bytes asked for each port-434 socket: a burst waits here, not in a drop
MAX_DATAGRAM = 65535
IP_PKTINFO = 8  # <linux/in.h>; the socket module has the name only from Python 3.12
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; the socket module does not name it
_TUNNEL_DATA = bytes((TUNNEL_DATA_TYPE,))  # the first byte of RFC 3519 tunnel data
MAX_FILTERED = 64  # offenders the socket filter drops in the kernel; more are shed as they are read
# <linux/filter.h>, <asm-generic/socket.h>: the socket module names none of these.
SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_MEMINFO = 26, 27, 55
SK_MEMINFO_VARS, SK_MEMINFO_DROPS = 9, 8
# BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_JMP|BPF_JGT|BPF_K, BPF_RET|BPF_K
_LD_W_ABS, _JEQ_K, _JGT_K, _RET_K = 0x20, 0x15, 0x25, 0x06
_SOURCE_ADDRESS = (-0x100000 + 12) & 0xFFFFFFFF  # SKF_NET_OFF + 12: the IPv4 header's source address
_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_RANDOM: a random 32-bit number
MAX_KNOWN = 128  # known sources the filter admits under a flood from spoofed sources
_INSN = struct.Struct("HBBI")  # struct sock_filter, native order


@functools.lru_cache(maxsize=1 << 14)
def source_address(host: str) -> IPv4Address:
    """``IPv4Address(host)`` for a datagram's source, cached: the same nodes and agents send again
    and again, and parsing the dotted quad showed in the profile of a saturated home agent."""
    return IPv4Address(host)


@functools.lru_cache(maxsize=1 << 14)
def address_text(address: IPv4Address) -> str:
    """``str(address)`` for a reply's destination, cached like :func:`source_address`."""
    return str(address)


def offender_filter(sources: list[IPv4Address], known: list[IPv4Address] = (),  # type: ignore[assignment]
                    fraction: float = 1.0) -> bytes:
    """A classic BPF program (struct sock_filter[]): load the IP source address; drop it if it is
    one of ``sources``, accept it if it is one of ``known``; then, with ``fraction`` < 1, accept
    only that random share of the rest (SKF_AD_RANDOM), else accept it. At most 255 addresses in
    all (a jump offset is 8 bits)."""
    if len(sources) + len(known) > 255:
        raise ValueError("at most 255 sources and known sources: a BPF jump offset is 8 bits")
    sampled = fraction < 1.0
    accept = 1 + len(sources) + len(known) + (2 if sampled else 0)  # the index of "return all of it"
    drop = accept + 1
    program = [_INSN.pack(_LD_W_ABS, 0, 0, _SOURCE_ADDRESS)]
    for address, target in [(a, drop) for a in sources] + [(a, accept) for a in known]:
        program.append(_INSN.pack(_JEQ_K, target - len(program) - 1, 0, int(address)))
    if sampled:
        threshold = max(0, min(0xFFFFFFFF, int(fraction * 0xFFFFFFFF)))
        program.append(_INSN.pack(_LD_W_ABS, 0, 0, _RANDOM))
        program.append(_INSN.pack(_JGT_K, drop - len(program) - 1, 0, threshold))
    program += [_INSN.pack(_RET_K, 0, 0, 0xFFFFFFFF), _INSN.pack(_RET_K, 0, 0, 0)]
    return b"".join(program)


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_FILTER: ``program`` replaces the socket's filter at once (the kernel copies it)."""
    code = ctypes.create_string_buffer(program, len(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HL", len(program) // _INSN.size, ctypes.addressof(code)))


def socket_drops(sock: socket.socket) -> int:
    """The datagrams the kernel dropped for ``sock`` (its filter, a full queue): SO_MEMINFO's drops."""
    info = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * SK_MEMINFO_VARS)
    return int(struct.unpack(f"{SK_MEMINFO_VARS}I", info)[SK_MEMINFO_DROPS])


@dataclass(frozen=True, slots=True)
class Listen:
    """One socket to open: the address to bind, and the link to bind it to (broadcast only)."""

    address: IPv4Address
    interface: str | None = None


def _socket(listen: Listen, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # No SO_REUSEADDR: a second agent on the same address and port must fail to start
        # ("Address already in use") rather than silently share the requests. The broadcast
        # sockets are bound to their link, so agents on different links do not collide.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        _large_receive_buffer(sock)
        if listen.interface is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, listen.interface.encode())
        sock.bind((str(listen.address), port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _large_receive_buffer(sock: socket.socket) -> None:
    """Ask for :data:`RECEIVE_BUFFER` bytes of receive queue; what the kernel grants is enough."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:  # without CAP_NET_ADMIN: SO_RCVBUF, capped at net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


class RegistrationEndpoints:
    """The sockets of UDP port 434. Replies leave from the socket bound to their source."""

    def __init__(self, port: int = 434) -> None:
        self.port = port
        self._sockets: dict[IPv4Address, socket.socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.receive_errors = 0
        self.send_errors = 0
        self.last_send_error: OSError | None = None
        # Asked with each datagram's source (dotted quad) before anything is built of it; True
        # drops it unread (a home agent's budget of authentication failures, mipd/core/budget.py).
        # Tunnel data (RFC 3519) is never asked about: it is no registration.
        # ``now`` is the event loop's time, taken once per batch (the engines' clock); what it
        # drops is counted here and handed to ``on_shed`` once per batch.
        self.shed: Callable[[str, float], bool] | None = None
        self.on_shed: Callable[[int], None] = lambda _count: None
        self._dropping: dict[IPv4Address, float] = {}  # offender -> until (loop time), latest last
        self._known: list[IPv4Address] = []  # under a flood from spoofed sources: always admitted
        self._fraction = 1.0  # of other sources' datagrams, the share admitted
        self._filtered = False
        self._refilter: asyncio.Handle | None = None
        self.filter_errors = 0

    def open(self, listens: list[Listen], deliver: Callable[[list[Datagram]], None]) -> None:
        """Bind every socket (all or none) and start delivering batches of datagrams."""
        self._loop = asyncio.get_running_loop()
        try:
            for listen in listens:
                self._sockets[listen.address] = _socket(listen, self.port)
        except OSError:
            self.close()
            raise
        for address, sock in self._sockets.items():
            self._loop.add_reader(sock.fileno(), self._drain, sock, address, deliver)

    def _drain(self, sock: socket.socket, local: IPv4Address, deliver: Callable[[list[Datagram]], None]) -> None:
        batch: list[Datagram] = []
        shed = self.shed
        now = self._loop.time() if self._loop is not None else 0.0
        dropped = 0
        for _ in range(BATCH):
            try:
                data, (host, port) = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP port unreachable reported on the socket: not fatal
                self.receive_errors += 1
                continue
            if shed is not None and shed(host, now) and data[:1] != _TUNNEL_DATA:
                dropped += 1
                continue
            batch.append(Datagram(data, source_address(host), port, local, self.port))
        if dropped:
            self.on_shed(dropped)
        if batch:
            deliver(batch)

    def drop_until(self, source: IPv4Address, until: float) -> None:
        """Have the kernel drop ``source``'s datagrams until ``until`` (the loop's clock). The
        filters are rebuilt once per loop turn, however many offenders a batch brought."""
        self._dropping.pop(source, None)
        self._dropping[source] = until
        self._schedule_refilter(None)

    def admit(self, known: tuple[IPv4Address, ...], fraction: float) -> None:
        """Under a flood from spoofed sources: admit ``known`` and only ``fraction`` of the others
        (the engine's AdmitSources; 1.0: everything again)."""
        self._known, self._fraction = list(known)[-MAX_KNOWN:], fraction
        self._schedule_refilter(None)

    def _schedule_refilter(self, at: float | None) -> None:
        if self._loop is None:
            return
        if self._refilter is not None:
            self._refilter.cancel()
        self._refilter = (self._loop.call_soon(self._apply_filter) if at is None
                          else self._loop.call_at(at, self._apply_filter))

    def _apply_filter(self) -> None:
        """Attach the filter of the offenders still due (or detach it); come back at the next expiry."""
        assert self._loop is not None
        self._refilter = None
        now = self._loop.time()
        self._dropping = {s: u for s, u in self._dropping.items() if u > now}
        sources = list(self._dropping)[-MAX_FILTERED:]
        sampled = self._fraction < 1.0
        known = [k for k in self._known if k not in self._dropping] if sampled else []
        program = offender_filter(sources, known, self._fraction) if sources or sampled else None
        for sock in self._sockets.values():
            try:
                if program is not None:
                    attach_filter(sock, program)
                elif self._filtered:
                    sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            except OSError:  # a kernel without socket filters: the offenders are shed as they are read
                self.filter_errors += 1
        self._filtered = program is not None
        if self._dropping:
            self._schedule_refilter(min(self._dropping.values()))

    def filtered_sources(self) -> list[IPv4Address]:
        """The sources the kernel is dropping now (tests, mipctl)."""
        return list(self._dropping)[-MAX_FILTERED:] if self._filtered else []

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped on these sockets since they opened (filter or full queue)."""
        total = 0
        for sock in self._sockets.values():
            with contextlib.suppress(OSError):
                total += socket_drops(sock)
        return total

    def send(self, action: SendDatagram) -> None:
        """Send from the socket bound to ``action.source``, else from the first one."""
        sock = self._sockets.get(action.source) or next(iter(self._sockets.values()))
        try:
            sock.sendto(action.payload, (address_text(action.destination), action.destination_port))
        except OSError as exc:
            # UDP: an unreachable peer or a full buffer loses this reply, and the node retransmits;
            # counted and remembered, never fatal.
            self.send_errors += 1
            self.last_send_error = exc

    def send_tunnel_data(self, payload: bytes, source: IPv4Address, destination: IPv4Address, port: int) -> bool:
        """Send a MIP Tunnel Data message (RFC 3519 3.3) from the port-434 socket bound to ``source``;
        False when it could not leave (not open yet, unreachable, full buffer): the caller counts it."""
        sock = self._sockets.get(source)
        if sock is None:
            return False
        try:
            sock.sendto(payload, (str(destination), port))
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._refilter is not None:
            self._refilter.cancel()
            self._refilter = None
        for sock in self._sockets.values():
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()


class NodeSocket:
    """The node's UDP socket: any local address, bound to its interface; each request leaves
    from the source the engine chose (home or co-located address, IP_PKTINFO) with its TTL.

    It is also the node's end of a UDP tunnel (RFC 3519 3.3): tunnel data (message type 4) goes
    to ``tunnel_data`` instead of the engine, and :meth:`send_payload` sends the reverse
    direction, from the same port as the registration so that a NAT keeps one mapping."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.sock: socket.socket | None = None
        self.send_errors = 0
        self.tunnel_data: Callable[[bytes, IPv4Address, int], None] | None = None
        self._ttl = -1  # the IP_TTL set on the socket (-1: not set yet)

    def start(self, deliver: Callable[[list[Datagram]], None]) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.bind(("0.0.0.0", 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain, deliver)

    def _drain(self, deliver: Callable[[list[Datagram]], None]) -> None:
        assert self.sock is not None
        batch: list[Datagram] = []
        for _ in range(64):
            try:
                data, (host, port) = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            if data[:1] == _TUNNEL_DATA and self.tunnel_data is not None:
                self.tunnel_data(data, IPv4Address(host), port)
                continue
            batch.append(Datagram(data, IPv4Address(host), port, IPv4Address(0)))
        if batch:
            deliver(batch)

    def send(self, action: SendDatagram) -> None:
        self._send(action.source, action.destination, action.destination_port, action.payload, action.ttl or 64)

    def send_payload(self, source: IPv4Address, destination: IPv4Address, port: int, payload: bytes) -> bool:
        """Send ``payload`` (UDP tunnel data) from ``source``; False if it could not be sent."""
        return self._send(source, destination, port, payload, 64)

    def _send(self, source: IPv4Address, destination: IPv4Address, port: int, payload: bytes, ttl: int) -> bool:
        if self.sock is None:
            return False
        try:
            if ttl != self._ttl:
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                self._ttl = ttl
            info = struct.pack("I4s4s", 0, source.packed, b"\0" * 4)  # ipi_spec_dst: the source
            self.sock.sendmsg([payload], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, (str(destination), port))
        except OSError:
            self.send_errors += 1  # e.g. no route yet: the engine retransmits
            return False
        return True

    def close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
