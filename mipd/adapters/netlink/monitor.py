"""Watch one interface's carrier and IPv4 addresses through rtnetlink notifications.

A mobile node solicits as soon as its link comes up (RFC 5944 2.4: it "MAY" solicit on a link-layer
hint, and RFC 1256 5.1 on interface initialisation), and a co-located care-of address is one of the
interface's IPv4 addresses (1.7, 2.4). :class:`LinkMonitor` reports both as they change.

Why a plain socket and not pyroute2 (mipd.adapters.netlink.calls holds every other netlink call): that
module runs pyroute2 on a worker thread because pyroute2 0.9's synchronous API brings its own event
loop; a subscription read in *our* event loop needs only ``socket(AF_NETLINK, SOCK_RAW,
NETLINK_ROUTE)`` bound to RTMGRP_LINK | RTMGRP_IPV4_IFADDR and ``loop.add_reader``. What is parsed is
small and stable kernel ABI (<linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>,
<linux/if_addr.h>): struct nlmsghdr, ifinfomsg (index, flags, IFLA_IFNAME) and ifaddrmsg
(IFA_LOCAL, else IFA_ADDRESS, and the prefix length). Nothing else is read.

The interface is followed by name, so one that is deleted and created again (a USB adapter plugged
back in) is picked up under its new index. "Up" means IFF_UP, IFF_RUNNING and IFF_LOWER_UP: the
interface is enabled, its carrier is on, and it is operationally up (not dormant). Only transitions
are reported, never the same state twice. If the kernel drops notifications because the socket's
buffer ran over (ENOBUFS), the state is read again with a dump and the differences are reported.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface

__all__ = ["LinkMonitor", "LinkState"]

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000
_USABLE = IFF_UP | IFF_RUNNING | IFF_LOWER_UP
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type
_BUFFER = 1 << 16
_RCVBUF = 1 << 20

LinkState = tuple[bool, list[IPv4Interface]]


def _align(length: int) -> int:
    return (length + 3) & ~3


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body) of each netlink message in one datagram; a truncated tail is ignored."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind = _NLMSG.unpack_from(data, offset)[:2]
        if length < _NLMSG.size or offset + length > len(data):
            return
        yield kind, data[offset + _NLMSG.size: offset + length]
        offset += _align(length)


def attributes(data: bytes) -> dict[int, bytes]:
    """The route attributes (struct rtattr) in ``data``, by type; the first of each type wins."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            break
        found.setdefault(kind & 0x3FFF, data[offset + _RTATTR.size: offset + length])  # no NLA_F_ flags
        offset += _align(length)
    return found


class LinkMonitor:
    """Carrier and IPv4 addresses of ``interface``, as they change."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self._index: int | None = None
        self._up = False
        self._known = False  # whether the state was read once: only changes after that are reported
        self.last_error: OSError | None = None
        self._addresses: list[IPv4Interface] = []
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_link: Callable[[bool], None] | None = None
        self._on_addresses: Callable[[list[IPv4Interface]], None] | None = None

    def start(self, on_link: Callable[[bool], None],
              on_addresses: Callable[[list[IPv4Interface]], None]) -> None:
        """Subscribe, then read the current state (so no change falls between the two). Later
        changes are reported to the callbacks; so are differences from an earlier :meth:`snapshot`."""
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._on_link, self._on_addresses = on_link, on_addresses
        try:
            self._resync()
        except OSError:
            self.close()
            raise
        self._loop.add_reader(sock.fileno(), self._drain)

    def snapshot(self) -> LinkState:
        """(up, IPv4 addresses) now: the monitored state once started, else read from the kernel."""
        if self._sock is None:
            self._resync()
        return self._up, list(self._addresses)

    def _resync(self) -> None:
        """Read the whole state with two dumps and apply it as if notified."""
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.bind((0, 0))
            links = self._dump(sock, RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0), 1)
            addresses = self._dump(sock, RTM_GETADDR, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0), 2)
        self._index, up = None, False
        for kind, body in links:
            up = self._link(kind, body, report=False) or up
        found = [a for a in (self._address(body) for _, body in addresses) if a is not None]
        self._set_up(up)
        self._set_addresses(found)
        self._known = True

    @staticmethod
    def _dump(sock: socket.socket, kind: int, body: bytes, seq: int) -> list[tuple[int, bytes]]:
        sock.send(_NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            for reply, data in messages(sock.recv(_BUFFER)):
                if reply == NLMSG_DONE:
                    return replies
                if reply == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data)[0]
                    raise OSError(code, f"rtnetlink dump: {errno.errorcode.get(code, code)}")
                replies.append((reply, data))

    def _drain(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # notifications were lost: read the state afresh
                    self._resync()
                    continue
                self.last_error = exc  # not expected from a netlink socket; the next wake-up retries
                return
            for kind, body in messages(data):
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    self._link(kind, body, report=True)
                elif kind in (RTM_NEWADDR, RTM_DELADDR):
                    self._address_change(kind, body)

    def _link(self, kind: int, body: bytes, *, report: bool) -> bool:
        """Apply one link message; returns whether it shows our interface usable."""
        if len(body) < _IFINFO.size:
            return False
        family, _type, index, flags, _change = _IFINFO.unpack_from(body)
        if family != socket.AF_UNSPEC:  # AF_BRIDGE port notifications repeat the link's flags
            return False
        name = attributes(body[_IFINFO.size:]).get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
        if name != self.interface and index != self._index:
            return False
        if kind == RTM_DELLINK or name != self.interface:  # gone, or renamed away from our name
            self._index = None
            up = False
            if report:
                self._set_addresses([])
        else:
            if index != self._index and report:
                self._set_addresses([])  # a new interface under our name: its addresses follow
            self._index = index
            up = flags & _USABLE == _USABLE
        if report:
            self._set_up(up)
        return up

    def _address(self, body: bytes) -> IPv4Interface | None:
        """The address in an ifaddrmsg if it is an IPv4 address of our interface."""
        if len(body) < _IFADDR.size:
            return None
        family, prefix, _flags, _scope, index = _IFADDR.unpack_from(body)
        if family != socket.AF_INET or index != self._index:
            return None
        attrs = attributes(body[_IFADDR.size:])
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)  # IFA_ADDRESS is the peer on point-to-point
        if raw is None or len(raw) != 4:
            return None
        return IPv4Interface((IPv4Address(raw), prefix))

    def _address_change(self, kind: int, body: bytes) -> None:
        address = self._address(body)
        if address is None:
            return
        if kind == RTM_NEWADDR:
            if address not in self._addresses:  # a NEWADDR also announces flag and lifetime updates
                self._set_addresses([*self._addresses, address])
        else:
            self._set_addresses([a for a in self._addresses if a != address])

    def _set_up(self, up: bool) -> None:
        previous, self._up = self._up, up
        if self._known and previous != up and self._on_link is not None:
            self._on_link(up)

    def _set_addresses(self, addresses: list[IPv4Interface]) -> None:
        if addresses == self._addresses:
            return
        self._addresses = addresses
        if self._known and self._on_addresses is not None:
            self._on_addresses(list(addresses))

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None and self._sock.fileno() >= 0:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
