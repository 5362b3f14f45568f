"""The foreign agent's relay socket: requests to home agents, their replies and ICMP errors back.

A relayed request leaves from the care-of address and from a port of our choosing: RFC 5944
3.7.2.2 makes the UDP source port "variable", and the home agent answers to it (3.8.3). So one UDP
socket bound to ``(care_of_address, 0)`` carries every relayed request and receives every reply.

3.7.3 asks the foreign agent to turn an ICMP Destination Unreachable for a relayed request into a
reply to the node (80, 81, 82, 88). Linux hands ICMP errors for a UDP socket to its owner only with
IP_RECVERR: each is queued on the socket's error queue, read with ``recvmsg(MSG_ERRQUEUE)``, whose
data is the UDP payload of the datagram that caused the error (as far as the ICMP message quoted it)
and whose IP_RECVERR control message is a ``struct sock_extended_err`` naming the ICMP type and code
(<linux/errqueue.h>). A pending error also makes the socket readable, so the one reader drains the
error queue first and the replies after it, each in bounded batches.

Behind a NAT (RFC 3519) the home agent also sends MIP Tunnel Data messages (type 4) to this socket,
through the NAT mapping the relayed registrations made, and the visitors' reverse-tunnelled packets
and keepalives leave from it (4.9: the registration's source port): :meth:`RelaySocket.send_to`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address

from mipd.core.actions import Datagram, SendDatagram

BATCH = 256
MAX_DATAGRAM = 65535
IP_RECVERR = 11  # <linux/in.h>; not exported by Python's socket module
SO_EE_ORIGIN_ICMP = 2  # <linux/errqueue.h>: the error came from an ICMP message
# struct sock_extended_err: ee_errno, ee_origin, ee_type, ee_code, ee_pad, ee_info, ee_data
_EXTENDED_ERR = struct.Struct("=IBBBBII")

OnReply = Callable[[list[Datagram]], None]
OnError = Callable[[bytes, int, int], None]
OnData = Callable[[bytes, IPv4Address, int], None]
TUNNEL_DATA = 4  # RFC 3519 3.3: the first byte of a MIP Tunnel Data message on this socket


def icmp_error(ancillary: list[tuple[int, int, bytes]]) -> tuple[int, int] | None:
    """(ICMP type, code) from the IP_RECVERR control message of an error-queue read, if the error
    came from an ICMP message (not from the local stack)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_IP and kind == IP_RECVERR and len(data) >= _EXTENDED_ERR.size:
            _errno, origin, icmp_type, icmp_code, _pad, _info, _data = _EXTENDED_ERR.unpack_from(data)
            if origin == SO_EE_ORIGIN_ICMP:
                return icmp_type, icmp_code
    return None


class RelaySocket:
    """One UDP socket on the care-of address, port chosen by the kernel."""

    def __init__(self, care_of_address: IPv4Address) -> None:
        self.care_of_address = care_of_address
        self.last_send_error: OSError | None = None
        self._counts: Counter[str] = Counter()
        self._sock: socket.socket | None = None
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        """The UDP source port of relayed requests (0 before :meth:`start`)."""
        return self._port

    def start(self, on_reply: OnReply, on_error: OnError, on_data: OnData | None = None) -> None:
        """Bind the socket and start delivering replies (in batches), ICMP errors (one by one:
        original UDP payload, ICMP type, ICMP code) and RFC 3519 tunnel data (one by one: payload,
        source, port; without ``on_data`` it is counted and dropped)."""
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
            sock.bind((str(self.care_of_address), 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._port = int(sock.getsockname()[1])
        self._loop.add_reader(sock.fileno(), self._drain, on_reply, on_error, on_data)

    def _drain(self, on_reply: OnReply, on_error: OnError, on_data: OnData | None = None) -> None:
        assert self._sock is not None
        for _ in range(BATCH):
            try:
                payload, ancillary, _flags, _address = self._sock.recvmsg(
                    MAX_DATAGRAM, socket.CMSG_SPACE(512), socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._counts["receive_errors"] += 1
                break
            error = icmp_error(ancillary)
            if error is None:
                self._counts["local_errors"] += 1
                continue
            self._counts["icmp_errors"] += 1
            on_error(payload, *error)
        batch: list[Datagram] = []
        for _ in range(BATCH):
            try:
                payload, (host, port) = self._sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # An ICMP error that came in after the error queue was read is reported once here
                # as well (the socket's pending error); it stays queued for the next wake-up.
                continue
            if payload[:1] == bytes((TUNNEL_DATA,)):  # RFC 3519: data, not for the registration engine
                if on_data is None:
                    self._counts["tunnel_data_dropped"] += 1
                else:
                    self._counts["tunnel_data"] += 1
                    on_data(payload, IPv4Address(host), port)
                continue
            batch.append(Datagram(payload, IPv4Address(host), port, self.care_of_address, self._port))
        if batch:
            self._counts["replies"] += len(batch)
            on_reply(batch)

    def send(self, action: SendDatagram) -> OSError | None:
        """Send to ``(destination, destination_port)``; an error is counted and returned, never
        raised (the caller may answer the node at once instead of letting it time out)."""
        try:
            if self._sock is None:
                raise OSError("the relay socket is not open")
            self._sock.sendto(action.payload, (str(action.destination), action.destination_port))
        except OSError as exc:
            self._counts["send_errors"] += 1
            self.last_send_error = exc
            return exc
        self._counts["sent"] += 1
        return None

    def send_to(self, payload: bytes, destination: IPv4Address, port: int) -> bool:
        """Send a UDP-tunnelled datagram (RFC 3519: from the port the registrations used); an error
        is counted, never raised."""
        try:
            if self._sock is None:
                raise OSError("the relay socket is not open")
            self._sock.sendto(payload, (str(destination), port))
        except OSError:
            self._counts["tunnel_send_errors"] += 1
            return False
        self._counts["tunnel_sent"] += 1
        return True

    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
