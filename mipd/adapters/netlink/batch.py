"""Netlink in batches: many route and proxy-neighbour requests per send, their acknowledgements
collected by sequence number, each failure handed back under the tag its caller gave it.

Why a raw socket and not pyroute2 (mipd.adapters.netlink.calls): a home agent restarted with
100,000 bindings reinstalls 100,000 routes and 100,000 proxy entries, and a storm of first
registrations sets up thousands of nodes per second. One pyroute2 round trip costs ~0.1-0.3 ms
of Python per request; here a request is one ``struct.pack`` and its share of one ``sendmsg``.

How (rtnetlink(7), netlink(7)):

- One ``AF_NETLINK``/``NETLINK_ROUTE`` socket per process, opened on first use in the namespace
  the caller is in, with ``NETLINK_CAP_ACK`` (an error does not echo the request back) and
  ``NETLINK_EXT_ACK`` (the kernel says what it refused, e.g. "Device for nexthop is not up").
- Every request carries ``NLM_F_ACK`` and its own sequence number. Requests go out in chunks,
  one ``sendmsg`` each; the kernel handles a chunk's messages one after the other inside that
  call and queues one acknowledgement per message (errno 0 or the refusal), which we read back
  and match to the request by sequence number. A chunk is sized so that its acknowledgements fit
  the socket's receive buffer (the kernel drops what does not fit, ENOBUFS).
- A request whose acknowledgement never came (an overrun) is sent again alone: every request
  here is idempotent (replace, or delete with "absent" counted as done).
- Link indexes are resolved once per name (``if_nametoindex``) and kept; a request refused with
  ENODEV re-resolves its device (it may have been re-created) and is retried once.

Only what the tunnel backends and the home link need is here: host routes (plain and
lightweight-tunnel encap), their deletion, proxy-neighbour entries, and the dumps that list
mipd's routes and a link's proxy entries.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Generic, TypeVar, cast

from mipd.adapters.netlink.calls import MAIN_TABLE, NTF_PROXY, RTPROT_MIPD, TUNNEL_DONT_FRAGMENT, Encap, NetlinkError

# linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h, linux/lwtunnel.h
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_MULTI, _NLM_F_ACK = 0x01, 0x02, 0x04
_NLM_F_ROOT, _NLM_F_MATCH = 0x100, 0x200
_NLM_F_DUMP = _NLM_F_ROOT | _NLM_F_MATCH
_NLM_F_REPLACE, _NLM_F_CREATE = 0x100, 0x400
_NLM_F_CAPPED, _NLM_F_ACK_TLVS = 0x100, 0x200  # in an NLMSG_ERROR's flags
_NLMSGERR_ATTR_MSG = 1
_SOL_NETLINK = 270
_NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 10, 11
_SO_SNDBUFFORCE, _SO_RCVBUFFORCE = 32, 33
_RTM_NEWROUTE, _RTM_DELROUTE, _RTM_GETROUTE = 24, 25, 26
_RTM_NEWNEIGH, _RTM_DELNEIGH, _RTM_GETNEIGH = 28, 29, 30
_RTA_DST, _RTA_OIF, _RTA_METRICS, _RTA_TABLE, _RTA_ENCAP_TYPE, _RTA_ENCAP = 1, 4, 8, 15, 21, 22
_RTAX_MTU = 2
_LWT_IP_DST, _LWT_IP_SRC, _LWT_IP_TTL, _LWT_IP_TOS, _LWT_IP_FLAGS = 2, 3, 4, 5, 6
_LWTUNNEL_ENCAP_IP = 2
_NDA_DST, _NDA_LLADDR = 1, 2
_NUD_PERMANENT = 0x80
_NUD_UNUSABLE = 0x01 | 0x20  # NUD_INCOMPLETE | NUD_FAILED
_AF_INET = 2
_RT_SCOPE_LINK, _RT_SCOPE_NOWHERE = 253, 255
_RTN_UNICAST = 1
_ABSENT = {errno.ENOENT, errno.ESRCH, errno.ENODEV}

Tag = TypeVar("Tag", bound=Hashable)

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_ATTR = struct.Struct("=HH")
BUFFER = 8 << 20  # asked for both directions (granted as root; else capped at rmem_max/wmem_max)
MAX_CHUNK = 4096  # requests per sendmsg at most
ACK_COST = 1024  # bytes of receive buffer one queued acknowledgement may take (its skb's truesize)


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (-length & 3)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


Destination = IPv4Network | IPv4Address  # an address: its /32


def _packed(destination: Destination) -> tuple[bytes, int]:
    if isinstance(destination, IPv4Address):
        return destination.packed, 32
    return destination.network_address.packed, destination.prefixlen


def _route_header(prefixlen: int, table: int, protocol: int, scope: int, kind: int) -> bytes:
    return _RTMSG.pack(_AF_INET, prefixlen, 0, 0, table if table < 256 else 252, protocol, scope, kind, 0)


def route_message(destination: Destination, oif: int, *, protocol: int = RTPROT_MIPD, table: int = MAIN_TABLE,
                  mtu: int | None = None, encap: Encap | None = None) -> bytes:
    """The body of ``ip route replace DEST dev OIF scope link proto P [mtu M] [encap ip ...]``."""
    packed, prefixlen = _packed(destination)
    body = (_route_header(prefixlen, table, protocol, _RT_SCOPE_LINK, _RTN_UNICAST)
            + _attr(_RTA_DST, packed) + _u32(_RTA_OIF, oif) + _u32(_RTA_TABLE, table))
    if mtu is not None:
        body += _attr(_RTA_METRICS, _u32(_RTAX_MTU, mtu))
    if encap is not None:  # no LWTUNNEL_IP_ID: see calls.replace_encap_route
        nested = _attr(_LWT_IP_DST, encap.destination.packed)
        if encap.source is not None:
            nested += _attr(_LWT_IP_SRC, encap.source.packed)
        nested += _attr(_LWT_IP_TTL, bytes([encap.ttl])) + _attr(_LWT_IP_TOS, bytes([encap.tos]))
        if encap.dont_fragment:
            nested += _attr(_LWT_IP_FLAGS, struct.pack(">H", TUNNEL_DONT_FRAGMENT))
        body += _attr(_RTA_ENCAP_TYPE, struct.pack("=H", _LWTUNNEL_ENCAP_IP)) + _attr(_RTA_ENCAP, nested)
    return body


def delete_route_message(destination: Destination, oif: int | None, *, protocol: int = RTPROT_MIPD,
                         table: int = MAIN_TABLE) -> bytes:
    """The body of RTM_DELROUTE for the ``protocol`` route to ``destination`` (through ``oif``), any scope."""
    packed, prefixlen = _packed(destination)
    body = _route_header(prefixlen, table, protocol, _RT_SCOPE_NOWHERE, 0) + _attr(
        _RTA_DST, packed) + _u32(_RTA_TABLE, table)
    if oif is not None:
        body += _u32(_RTA_OIF, oif)
    return body


def proxy_message(ip: IPv4Address, ifindex: int) -> bytes:
    """The body of RTM_NEWNEIGH / RTM_DELNEIGH for the proxy entry of ``ip`` on ``ifindex``."""
    return _NDMSG.pack(_AF_INET, ifindex, _NUD_PERMANENT, NTF_PROXY, 0) + _attr(_NDA_DST, ip.packed)


@dataclass(frozen=True, slots=True)
class _Request:
    tag: Hashable
    kind: int
    flags: int
    device: str | None  # whose index the body holds (re-resolved on ENODEV)
    build: tuple[str, tuple[object, ...]]  # (builder name, arguments before the index) to rebuild it
    absent_ok: bool  # a delete: "no such entry" counts as done


class _Socket:
    """The process's batch socket, its sequence numbers and its link index cache."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._seq = 0
        self.chunk = 64
        self.indexes: dict[str, int] = {}
        self._buffer = bytearray(1 << 16)

    def sock(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
            for force, plain in ((_SO_SNDBUFFORCE, socket.SO_SNDBUF), (_SO_RCVBUFFORCE, socket.SO_RCVBUF)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, force, BUFFER)
                except OSError:  # not root: as much as rmem_max / wmem_max allow
                    sock.setsockopt(socket.SOL_SOCKET, plain, BUFFER)
            for option in (_NETLINK_CAP_ACK, _NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):  # older kernels: plain acknowledgements
                    sock.setsockopt(_SOL_NETLINK, option, 1)
            sock.bind((0, 0))
            sock.settimeout(1.0)  # the kernel queues every acknowledgement within sendmsg: silence is loss
            room = min(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                       sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2)
            self.chunk = max(16, min(MAX_CHUNK, room // ACK_COST))
            self._sock = sock
        return self._sock

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def receive(self) -> Iterator[tuple[int, int, int, memoryview]]:
        """The messages of one datagram: (type, flags, sequence, payload)."""
        size = self.sock().recv_into(self._buffer)
        view = memoryview(self._buffer)[:size]
        offset = 0
        while offset + 16 <= size:
            length, kind, flags, seq, _ = _HEADER.unpack_from(view, offset)
            if length < 16:
                break
            yield kind, flags, seq, view[offset + 16:offset + length]
            offset += (length + 3) & ~3

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.indexes.clear()


_socket = _Socket()


def close() -> None:
    """Close the batch socket and forget the link indexes (the next batch opens it again)."""
    with _socket.lock:
        _socket.close()


def forget_links() -> None:
    """Forget the cached link indexes (links were created or deleted)."""
    _socket.indexes.clear()


def link_index(name: str) -> int:
    """The index of link ``name``, looked up afresh (NetlinkError ENODEV if there is none)."""
    return _index(name, fresh=True)


def _index(name: str, *, fresh: bool = False) -> int:
    if fresh or name not in _socket.indexes:
        try:
            _socket.indexes[name] = socket.if_nametoindex(name)
        except OSError:
            _socket.indexes.pop(name, None)
            raise NetlinkError(errno.ENODEV, f"no link named {name!r}") from None
    return _socket.indexes[name]


def _error(payload: memoryview, flags: int) -> NetlinkError | None:
    (code,) = struct.unpack_from("=i", payload, 0)
    if code == 0:
        return None
    number = -code
    text = os.strerror(number)
    if flags & _NLM_F_ACK_TLVS:  # extended ack: the original header (capped) or whole request, then TLVs
        (original,) = struct.unpack_from("=I", payload, 4)
        offset = 4 + (16 if flags & _NLM_F_CAPPED else original)
        offset = (offset + 3) & ~3
        while offset + 4 <= len(payload):
            length, kind = _ATTR.unpack_from(payload, offset)
            if length < 4:
                break
            if kind & 0x3FFF == _NLMSGERR_ATTR_MSG:
                text += f" ({bytes(payload[offset + 4:offset + length]).rstrip(bytes(1)).decode(errors='replace')})"
            offset += (length + 3) & ~3
    return NetlinkError(number, text)


def _body(request: _Request, fresh: bool = False) -> bytes:
    builder, args = request.build
    oif = None if request.device is None else _index(request.device, fresh=fresh)
    if builder == "route":
        destination, protocol, table, mtu, encap = args
        assert oif is not None
        return route_message(destination, oif, protocol=protocol, table=table, mtu=mtu, encap=encap)  # type: ignore[arg-type]
    if builder == "delete_route":
        destination, protocol, table = args
        return delete_route_message(destination, oif, protocol=protocol, table=table)  # type: ignore[arg-type]
    (ip,) = args
    assert oif is not None
    return proxy_message(ip, oif)  # type: ignore[arg-type]


class Batch(Generic[Tag]):
    """Requests gathered by the caller and sent together by :meth:`send`; each under a ``tag``
    (e.g. the home address whose binding needs it) that its failure is reported under."""

    def __init__(self) -> None:
        self._requests: list[_Request] = []

    def __len__(self) -> int:
        return len(self._requests)

    def replace_route(self, tag: Tag, destination: Destination, *, device: str, protocol: int = RTPROT_MIPD,
                      table: int = MAIN_TABLE, mtu: int | None = None, encap: Encap | None = None) -> None:
        """``ip route replace DEST [encap ip ...] dev DEVICE scope link proto P [mtu M]``."""
        self._requests.append(_Request(tag, _RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_REPLACE, device,
                                       ("route", (destination, protocol, table, mtu, encap)), False))

    def delete_route(self, tag: Tag, destination: Destination, *, device: str | None = None,
                     protocol: int = RTPROT_MIPD, table: int = MAIN_TABLE) -> None:
        """Delete the ``protocol`` route to ``destination`` (through ``device``) in ``table``; no
        error if there is none (or the device is gone, and its routes with it)."""
        self._requests.append(_Request(tag, _RTM_DELROUTE, 0, device, ("delete_route", (destination, protocol, table)),
                                       True))

    def add_proxy(self, tag: Tag, ip: IPv4Address, device: str) -> None:
        """``ip neigh replace proxy IP dev DEVICE``."""
        self._requests.append(_Request(tag, _RTM_NEWNEIGH, _NLM_F_CREATE | _NLM_F_REPLACE, device, ("proxy", (ip,)),
                                       False))

    def delete_proxy(self, tag: Tag, ip: IPv4Address, device: str) -> None:
        """``ip neigh del proxy IP dev DEVICE``; no error if it is not there."""
        self._requests.append(_Request(tag, _RTM_DELNEIGH, 0, device, ("proxy", (ip,)), True))

    def send(self) -> dict[Tag, NetlinkError]:
        """Send every request, in order, and wait for all acknowledgements: the first failure of
        each tag that had one (tags absent from the answer succeeded). The batch is emptied."""
        requests, self._requests = self._requests, []
        failures: dict[Hashable, NetlinkError] = {}
        if not requests:
            return cast("dict[Tag, NetlinkError]", failures)
        with _socket.lock:
            _socket.sock()
            retry: list[_Request] = []
            for start in range(0, len(requests), _socket.chunk):
                chunk = requests[start:start + _socket.chunk]
                results = _exchange(chunk, failures)
                for request, result in zip(chunk, results, strict=True):
                    if result is _LOST:
                        retry.append(request)
                    elif isinstance(result, NetlinkError):
                        if result.errno == errno.ENODEV and request.device is not None:
                            retry.append(request)  # the link may have been re-created: look it up again
                        elif not (request.absent_ok and result.errno in _ABSENT):
                            failures.setdefault(request.tag, result)
            for request in retry:  # alone, with a fresh index; idempotent, so a repeat is harmless
                (result,) = _exchange([request], failures, fresh=True)
                if isinstance(result, NetlinkError) and not (request.absent_ok and result.errno in _ABSENT):
                    failures.setdefault(request.tag, result)
                elif result is _LOST:
                    failures.setdefault(request.tag, NetlinkError(errno.ENOBUFS, "no acknowledgement from the kernel"))
        return cast("dict[Tag, NetlinkError]", failures)


_LOST = object()  # no acknowledgement came (receive buffer overrun)


def _exchange(chunk: list[_Request], failures: dict[Hashable, NetlinkError], *,
              fresh: bool = False) -> list[object]:
    """Send ``chunk`` in one sendmsg; per request: None (done), a NetlinkError, or _LOST. A request
    whose device cannot be resolved is not sent: its result is that ENODEV (absent for a delete)."""
    results: list[object] = [_LOST] * len(chunk)
    by_seq: dict[int, int] = {}
    parts: list[bytes] = []
    for position, request in enumerate(chunk):
        try:
            body = _body(request, fresh)
        except NetlinkError as exc:  # no such link: reported now (absent for a delete), never retried
            if not request.absent_ok:
                failures.setdefault(request.tag, exc)
            results[position] = None
            continue
        seq = _socket.next_seq()
        by_seq[seq] = position
        parts.append(_HEADER.pack(16 + len(body), request.kind, _NLM_F_REQUEST | _NLM_F_ACK | request.flags, seq, 0)
                     + body)
    if not parts:
        return results
    answers, error = _acked(parts)
    if error is not None and error.errno != errno.ENOBUFS and not isinstance(error, TimeoutError):
        raise NetlinkError(error.errno or errno.EIO, str(error)) from None
    # an overrun (or silence): what is still waiting is _LOST and is retried alone
    for seq, position in by_seq.items():
        results[position] = answers[seq]
    return results


def _acked(parts: list[bytes]) -> tuple[dict[int, object], OSError | None]:
    """Send ``parts`` (requests with NLM_F_ACK, each its own sequence number) in one sendmsg and
    collect the acknowledgements: per sequence number None (done), a NetlinkError, or _LOST when
    none came before the socket failed; and that failure (an overrun, a timeout), if any."""
    waiting = {_HEADER.unpack_from(part)[3]: True for part in parts}
    answers: dict[int, object] = dict.fromkeys(waiting, _LOST)
    _socket.sock().sendall(b"".join(parts))  # netlink takes it as one message batch
    try:
        while waiting:
            for kind, flags, seq, payload in _socket.receive():
                if kind != _NLMSG_ERROR or waiting.pop(seq, None) is None:
                    continue
                answers[seq] = _error(payload, flags)
    except OSError as exc:
        return answers, exc
    return answers, None


# --- dumps ----------------------------------------------------------------------------------------

def _dump(kind: int, header: bytes) -> Iterator[bytes]:
    """The payloads of a dump request's answer."""
    with _socket.lock:
        sock = _socket.sock()
        seq = _socket.next_seq()
        sock.sendall(_HEADER.pack(16 + len(header), kind, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0) + header)
        while True:
            for msg_kind, flags, msg_seq, payload in _socket.receive():
                if msg_seq != seq:
                    continue
                if msg_kind == _NLMSG_DONE:
                    return
                if msg_kind == _NLMSG_ERROR:
                    failure = _error(payload, flags)
                    if failure is not None:
                        raise failure
                    return
                yield bytes(payload)


def _attrs(payload: memoryview | bytes, offset: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + 4 <= len(payload):
        length, kind = _ATTR.unpack_from(payload, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = bytes(payload[offset + 4:offset + length])
        offset += (length + 3) & ~3
    return out


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a dump: enough to delete it exactly."""

    destination: IPv4Network
    oif: int | None
    table: int


def owned_routes(protocol: int = RTPROT_MIPD, *, oif: int | None = None) -> list[Route]:
    """The IPv4 routes marked with ``protocol``, in every table (one dump, parsed with struct);
    only those through link ``oif`` if given."""
    out = []
    for payload in list(_dump(_RTM_GETROUTE, _RTMSG.pack(_AF_INET, 0, 0, 0, 0, 0, 0, 0, 0))):
        family, dst_len, _, _, table, proto, _, _, _ = _RTMSG.unpack_from(payload, 0)
        if family != _AF_INET or proto != protocol:
            continue
        attrs = _attrs(payload, _RTMSG.size)
        out_if = struct.unpack("=I", attrs[_RTA_OIF])[0] if _RTA_OIF in attrs else None
        if oif is not None and out_if != oif:
            continue
        if _RTA_TABLE in attrs:
            table = struct.unpack("=I", attrs[_RTA_TABLE])[0]
        dst = attrs.get(_RTA_DST, bytes(4))
        out.append(Route(IPv4Network((IPv4Address(dst), dst_len)), out_if, table))
    return out


def link_name(index: int) -> str:
    """The name of link ``index`` ("" if there is none)."""
    try:
        return socket.if_indextoname(index)
    except OSError:
        return ""


def delete_routes(routes: list[Route]) -> dict[Hashable, NetlinkError]:
    """Delete each of ``routes`` (from :func:`owned_routes`) exactly where it is, in batches."""
    failures: dict[Hashable, NetlinkError] = {}
    for start in range(0, len(routes), MAX_CHUNK):
        parts: list[tuple[Hashable, bytes]] = []
        for route in routes[start:start + MAX_CHUNK]:
            body = delete_route_message(route.destination, route.oif, table=route.table)
            parts.append((route.destination, body))
        failures.update(_send_raw(parts))
    return failures


def _send_raw(parts: list[tuple[Hashable, bytes]]) -> dict[Hashable, NetlinkError]:
    """RTM_DELROUTE bodies already built (no device to resolve): absent counts as done."""
    failures: dict[Hashable, NetlinkError] = {}
    with _socket.lock:
        for start in range(0, len(parts), _socket.chunk):
            by_seq = {}
            data = []
            for tag, body in parts[start:start + _socket.chunk]:
                seq = _socket.next_seq()
                by_seq[seq] = tag
                data.append(_HEADER.pack(16 + len(body), _RTM_DELROUTE, _NLM_F_REQUEST | _NLM_F_ACK, seq, 0) + body)
            answers, error = _acked(data)
            for seq, tag in by_seq.items():
                answer = answers[seq]
                if answer is _LOST:
                    failures.setdefault(tag, NetlinkError(getattr(error, "errno", None) or errno.EIO, str(error)))
                elif isinstance(answer, NetlinkError) and answer.errno not in _ABSENT:
                    failures.setdefault(tag, answer)
    return failures


def proxies(device: str) -> list[IPv4Address]:
    """The addresses proxied on ``device`` (one dump of the pneigh table)."""
    oif = _index(device, fresh=True)
    out = []
    for payload in list(_dump(_RTM_GETNEIGH, _NDMSG.pack(_AF_INET, 0, 0, NTF_PROXY, 0))):
        family, ifindex, _, flags, _ = _NDMSG.unpack_from(payload, 0)
        if family != _AF_INET or not flags & NTF_PROXY or ifindex != oif:
            continue
        dst = _attrs(payload, _NDMSG.size).get(_NDA_DST)
        if dst is not None and len(dst) == 4:
            out.append(IPv4Address(dst))
    return out


def neighbours(device: str) -> dict[IPv4Address, str]:
    """The usable link-layer addresses of ``device``'s neighbour table, as "aa:bb:..." (one dump)."""
    oif = _index(device, fresh=True)
    out = {}
    for payload in list(_dump(_RTM_GETNEIGH, _NDMSG.pack(_AF_INET, 0, 0, 0, 0))):
        family, ifindex, state, flags, _ = _NDMSG.unpack_from(payload, 0)
        if family != _AF_INET or ifindex != oif or flags & NTF_PROXY or state & _NUD_UNUSABLE:
            continue
        attrs = _attrs(payload, _NDMSG.size)
        dst, lladdr = attrs.get(_NDA_DST), attrs.get(_NDA_LLADDR)
        if dst is not None and len(dst) == 4 and lladdr:
            out[IPv4Address(dst)] = ":".join(f"{b:02x}" for b in lladdr)
    return out
