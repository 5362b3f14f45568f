"""Every netlink call mipd makes, in one place, because pyroute2's API moves between releases (0.9
rebuilt it on asyncio). This is the only module that imports pyroute2.

The functions are synchronous and act on the network namespace the process was in when the first
call was made. pyroute2 0.9's synchronous ``IPRoute`` runs its own asyncio event loop and so
cannot be used from a thread whose loop is running (it raises "This event loop is already
running") -- and the daemon calls us from inside its loop. So one worker thread
("mipd-netlink") owns one lazily created ``IPRoute`` and every call runs there; callers block for
the (sub-millisecond) netlink round trip. :func:`close` ends both.

Ownership marks (mipd.adapters.tunnel.backend): routes carry ``rtm_protocol`` RTPROT_MIPD; links mipd
creates are named ``mip...``. Kernel refusals raise :class:`NetlinkError` (an OSError with the
kernel's errno); the "no error if absent" operations swallow ENOENT/ESRCH/ENODEV.

Lightweight-tunnel routes (``ip route ... encap ip dst C src S ttl T tos inherit``) are built
from their own attribute classes (_IpEncap below): pyroute2 0.9.7 knows no LWTUNNEL_ENCAP_IP
and its ``encap={'type': 'ip'}`` raises KeyError('data').
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, ClassVar, TypeVar

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink import (  # type: ignore[import-untyped]
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    nla,
)
from pyroute2.netlink.exceptions import NetlinkError as _Pyroute2Error  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl import RTM_GETNEIGH, RTM_NEWROUTE  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl.ndmsg import ndmsg  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # type: ignore[import-untyped]

T = TypeVar("T")

RTPROT_MIPD = 77  # rtm_protocol of every route mipd installs (unassigned in rtnetlink.h / rt_protos)
MAIN_TABLE = 254
NTF_PROXY = 0x08  # ndm_flags of a proxy (pneigh) entry, linux/neighbour.h
_NUD_UNUSABLE = 0x01 | 0x20  # NUD_INCOMPLETE | NUD_FAILED: no usable link-layer address
_ABSENT = {errno.ENOENT, errno.ESRCH, errno.ENODEV}
_AF_INET = 2
_RT_SCOPE_LINK = 253
_RT_SCOPE_NOWHERE = 255  # in RTM_DELROUTE: a route of any scope
_RTN_UNICAST = 1
LWTUNNEL_ENCAP_IP = 2  # linux/lwtunnel.h
TUNNEL_DONT_FRAGMENT = 0x0100  # linux/if_tunnel.h (__be16, host value as the wire carries it)
TOS_INHERIT = 1  # LWTUNNEL_IP_TOS 1: copy the inner TOS (ip_md_tunnel_xmit)


class NetlinkError(OSError):
    """The kernel refused a netlink request (``errno`` says why), or a link is missing."""


# --- the worker thread and its IPRoute --------------------------------------------------------

class _Worker:
    """The netlink thread and the IPRoute that lives on it, both created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._ipr: Any = None  # touched only on the worker thread

    def run(self, call: Callable[[Any], T]) -> T:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mipd-netlink")
            executor = self._executor
        return executor.submit(self._work, call).result()

    def _work(self, call: Callable[[Any], T]) -> T:
        if self._ipr is None:
            self._ipr = IPRoute()
        try:
            return call(self._ipr)
        except _Pyroute2Error as exc:
            raise NetlinkError(exc.code, os.strerror(exc.code) if exc.code else str(exc)) from None

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._shut).result()
            executor.shutdown()

    def _shut(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


_worker = _Worker()


def _run(call: Callable[[Any], T]) -> T:
    """Run ``call(ipr)`` on the netlink thread; pyroute2 errors become NetlinkError."""
    return _worker.run(call)


def close() -> None:
    """Close the netlink socket and end the worker thread (the next call opens them again)."""
    _worker.close()


def _request(ipr: Any, msg: Any, msg_type: int, msg_flags: int) -> tuple[Any, ...]:
    """Send one hand-built message and collect the replies. pyroute2 0.9.7's synchronous
    ``IPRoute.nlm_request`` fails with KeyError('nlm_generator') after sending, so this does what
    it means to do: drive the async core's request on the IPRoute's own loop."""
    return tuple(ipr._generate_with_cleanup(ipr.asyncore.nlm_request, msg, msg_type, msg_flags, None, None, None))


def _absent(exc: NetlinkError) -> bool:
    return exc.errno in _ABSENT


# --- links --------------------------------------------------------------------------------------

def _index(ipr: Any, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise NetlinkError(errno.ENODEV, f"no link named {name!r}")
    return int(found[0])


def link_index(name: str) -> int:
    """The interface index of link ``name`` (NetlinkError ENODEV if there is none)."""
    return _run(lambda ipr: _index(ipr, name))


def link_exists(name: str) -> bool:
    """Whether a link called ``name`` exists."""
    return bool(_run(lambda ipr: ipr.link_lookup(ifname=name)))


def link_address(name: str) -> str:
    """The link-layer address of ``name``, as "aa:bb:cc:dd:ee:ff"."""
    def call(ipr: Any) -> str:
        (msg,) = ipr.link("get", index=_index(ipr, name))
        return str(msg.get("IFLA_ADDRESS") or "")
    return _run(call)


def interface_addresses(name: str) -> list[IPv4Interface]:
    """The IPv4 addresses of ``name`` with their prefix lengths."""
    def call(ipr: Any) -> list[IPv4Interface]:
        index = _index(ipr, name)
        return [IPv4Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
                for msg in ipr.get_addr(family=socket.AF_INET, index=index)]
    return _run(call)


def set_link_up(name: str) -> None:
    """Bring link ``name`` up."""
    _run(lambda ipr: ipr.link("set", index=_index(ipr, name), state="up"))


def link_stats(name: str) -> dict[str, int]:
    """The link's IFLA_STATS64 counters (rx_packets, tx_packets, rx_dropped...); {} if it is absent."""
    def call(ipr: Any) -> dict[str, int]:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return {}
        (msg,) = ipr.link("get", index=found[0])
        stats = msg.get("IFLA_STATS64") or {}
        return {key: int(value) for key, value in dict(stats).items() if isinstance(value, int)}
    return _run(call)


def _link_names(ipr: Any) -> dict[int, str]:
    return {int(msg["index"]): str(msg.get("IFLA_IFNAME")) for msg in ipr.link("dump")}


def add_external_tunnel(name: str, kind: str) -> None:
    """Create (if missing) and bring up an external ("collect_md") ``kind`` device, ``ipip`` or
    ``gre``: one device that sends to whatever endpoint each route's encap names and receives
    every packet of its protocol addressed to this host (ip_tunnel_lookup's collect_md_tun)."""
    if kind not in ("ipip", "gre"):
        raise ValueError(f"unsupported tunnel kind {kind!r}")

    def call(ipr: Any) -> None:
        if not ipr.link_lookup(ifname=name):
            ipr.link("add", ifname=name, kind=kind, **{f"{kind}_collect_metadata": True})
        ipr.link("set", index=_index(ipr, name), state="up")
    _run(call)


def add_ipip_tunnel(name: str, *, local: IPv4Address, remote: IPv4Address, ttl: int) -> None:
    """Create (if missing) and bring up a classic ipip device ``name`` from ``local`` to
    ``remote`` (``ip link add NAME type ipip local L remote R ttl T tos inherit pmtudisc``): it
    sends every datagram routed through it to ``remote`` and receives exactly the ipip datagrams
    from ``remote`` to ``local`` (ip_tunnel_lookup prefers it over the external device)."""
    def call(ipr: Any) -> None:
        if not ipr.link_lookup(ifname=name):
            ipr.link("add", ifname=name, kind="ipip", ipip_local=str(local), ipip_remote=str(remote),
                     ipip_ttl=ttl, ipip_tos=1, ipip_pmtudisc=1)
        ipr.link("set", index=_index(ipr, name), state="up")
    _run(call)


def delete_link(name: str) -> None:
    """Delete link ``name`` and with it its routes; no error if it is absent."""
    def call(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])
    try:
        _run(call)
    except NetlinkError as exc:
        if not _absent(exc):
            raise


def kernel_tunnels_available() -> tuple[bool, str]:
    """Whether this kernel can make external ipip devices: create a throwaway one and delete it.
    Loads no module (the daemon does not modprobe); the reason says what failed.

    A namespace holds at most one external ipip device (ip_tunnel_newlink answers EEXIST for a
    second): EEXIST means one already exists -- e.g. mipip0, left by a mipd killed with -9 -- so
    the kernel has them."""
    name = f"mipprobe{threading.get_native_id() % 10000}"
    try:
        add_external_tunnel(name, "ipip")
    except NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            return True, "external ipip devices work (one already exists)"
        return False, f"cannot create an external ipip device: {exc.strerror} (errno {exc.errno})"
    delete_link(name)
    return True, "external ipip devices work"


# --- routes ------------------------------------------------------------------------------------

def _route_key(destination: IPv4Network) -> dict[str, Any]:
    return {"dst": str(destination.network_address), "dst_len": destination.prefixlen}


def replace_route(destination: IPv4Network, *, device: str, protocol: int = RTPROT_MIPD,
                  table: int = MAIN_TABLE, mtu: int | None = None) -> None:
    """Route ``destination`` straight out of ``device`` (scope link), replacing any route to it;
    ``mtu``: the route's MTU metric (the kernel fragments, or answers Fragmentation Needed, to it)."""
    extra: dict[str, Any] = {} if mtu is None else {"metrics": {"mtu": mtu}}
    _run(lambda ipr: ipr.route("replace", **_route_key(destination), oif=_index(ipr, device),
                               proto=protocol, table=table, scope=_RT_SCOPE_LINK, type=_RTN_UNICAST, **extra))


def _dump_routes(ipr: Any, protocol: int | None) -> list[Any]:
    return [msg for msg in ipr.route("dump", family=_AF_INET)
            if protocol is None or msg["proto"] == protocol]


def _route_oif(msg: Any) -> int | None:
    oif = msg.get("RTA_OIF")
    if oif is None:
        hops = msg.get("RTA_MULTIPATH") or []
        oif = hops[0]["oif"] if hops else None
    return None if oif is None else int(oif)


def _route_network(msg: Any) -> IPv4Network:
    return IPv4Network(f"{msg.get('RTA_DST') or '0.0.0.0'}/{msg['dst_len']}")


def delete_route(destination: IPv4Network, *, device: str | None = None, protocol: int = RTPROT_MIPD,
                 table: int | None = MAIN_TABLE) -> None:
    """Delete the ``protocol`` routes to ``destination`` (through ``device`` if given) in ``table``, or in
    any table if ``table`` is None; no error if there are none.

    In one table the kernel finds the route itself (RTM_DELROUTE matches destination, protocol and
    device), so removing a binding's route costs the same with a million routes as with one. Any table
    means a dump of every route first: for reconciliation at start, not per binding."""
    def call(ipr: Any) -> None:
        oif = None
        if device is not None:
            found = ipr.link_lookup(ifname=device)
            if not found:
                return
            oif = int(found[0])
        if table is not None:
            nexthop = {} if oif is None else {"oif": oif}
            while True:  # one route normally; a duplicate of another type or scope would be next
                try:
                    ipr.route("del", **_route_key(destination), proto=protocol, table=table,
                              scope=_RT_SCOPE_NOWHERE, **nexthop)
                except _Pyroute2Error as exc:
                    if exc.code in _ABSENT:
                        return
                    raise
        for msg in _dump_routes(ipr, protocol):
            if _route_network(msg) != destination or (oif is not None and _route_oif(msg) != oif):
                continue
            try:
                ipr.route("del", **_route_key(destination), proto=protocol, table=msg.get("RTA_TABLE"),
                          oif=_route_oif(msg), scope=msg["scope"], type=msg["type"])
            except _Pyroute2Error as exc:
                if exc.code not in _ABSENT:
                    raise
    _run(call)


def owned_routes(protocol: int = RTPROT_MIPD) -> list[tuple[IPv4Network, str]]:
    """The IPv4 routes marked with ``protocol`` (mipd's own by default): (destination, device)."""
    def call(ipr: Any) -> list[tuple[IPv4Network, str]]:
        names = _link_names(ipr)
        out = []
        for msg in _dump_routes(ipr, protocol):
            oif = _route_oif(msg)
            out.append((_route_network(msg), names.get(oif, "") if oif is not None else ""))
        return out
    return _run(call)


@dataclass(frozen=True, slots=True)
class Encap:
    """The outer header of a lightweight-tunnel route (LWTUNNEL_ENCAP_IP, net/ipv4/ip_tunnel_core.c).

    ``ttl`` 0 would copy the inner TTL; ``tos`` TOS_INHERIT copies the inner TOS; ``dont_fragment``
    sets DF on every outer header."""

    destination: IPv4Address
    source: IPv4Address | None = None
    ttl: int = 64
    tos: int = TOS_INHERIT
    dont_fragment: bool = True


class _IpEncap(nla):  # type: ignore[misc]
    """RTA_ENCAP's nested attributes for LWTUNNEL_ENCAP_IP (linux/lwtunnel.h, enum lwtunnel_ip_t)."""

    __slots__ = ()
    prefix = "LWTUNNEL_IP_"
    nla_map = (
        ("LWTUNNEL_IP_UNSPEC", "none"),
        ("LWTUNNEL_IP_ID", "be64"),
        ("LWTUNNEL_IP_DST", "ip4addr"),
        ("LWTUNNEL_IP_SRC", "ip4addr"),
        ("LWTUNNEL_IP_TTL", "uint8"),
        ("LWTUNNEL_IP_TOS", "uint8"),
        ("LWTUNNEL_IP_FLAGS", "be16"),
    )


class _EncapRtmsg(rtmsg):  # type: ignore[misc]
    """rtmsg whose RTA_ENCAP also knows LWTUNNEL_ENCAP_IP (rtmsg.encap_info looks in ``encaps``)."""

    __slots__ = ()
    encaps: ClassVar[dict[int, Any]] = {**rtmsg.encaps, LWTUNNEL_ENCAP_IP: _IpEncap}


def replace_encap_route(destination: IPv4Network, encap: Encap, *, device: str,
                        protocol: int = RTPROT_MIPD, table: int = MAIN_TABLE) -> None:
    """``ip route replace DEST encap ip dst D [src S] ttl T tos inherit dev DEVICE proto P``.

    No LWTUNNEL_IP_ID: with it the kernel sets TUNNEL_KEY and GRE would carry a key field; a
    plain RFC 2784 header has none. Without it ipip and gre send key 0 / no key."""
    attrs: list[tuple[str, Any]] = [("LWTUNNEL_IP_DST", str(encap.destination))]
    if encap.source is not None:
        attrs.append(("LWTUNNEL_IP_SRC", str(encap.source)))
    attrs += [("LWTUNNEL_IP_TTL", encap.ttl), ("LWTUNNEL_IP_TOS", encap.tos)]
    if encap.dont_fragment:
        attrs.append(("LWTUNNEL_IP_FLAGS", TUNNEL_DONT_FRAGMENT))

    def call(ipr: Any) -> None:
        msg = _EncapRtmsg()
        msg["family"] = _AF_INET
        msg["dst_len"] = destination.prefixlen
        msg["table"] = table if table < 256 else 252
        msg["proto"] = protocol
        msg["scope"] = _RT_SCOPE_LINK
        msg["type"] = _RTN_UNICAST
        msg["attrs"] = [
            ("RTA_DST", str(destination.network_address)),
            ("RTA_OIF", _index(ipr, device)),
            ("RTA_TABLE", table),
            ("RTA_ENCAP_TYPE", LWTUNNEL_ENCAP_IP),
            ("RTA_ENCAP", {"attrs": attrs}),
        ]
        _request(ipr, msg, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
    _run(call)


# --- neighbours and proxy ARP (RFC 5944 4.6) -----------------------------------------------------

def neighbor_address(ip: IPv4Address, device: str) -> str | None:
    """The link-layer address the neighbour table holds for ``ip`` on ``device``, if usable."""
    def call(ipr: Any) -> str | None:
        oif = _index(ipr, device)
        for msg in ipr.neigh("dump", ifindex=oif, family=_AF_INET):
            if msg.get("NDA_DST") == str(ip) and not msg["state"] & _NUD_UNUSABLE and msg.get("NDA_LLADDR"):
                return str(msg.get("NDA_LLADDR"))
        return None
    return _run(call)


def add_proxy(ip: IPv4Address, device: str) -> None:
    """Answer ARP for ``ip`` on ``device`` (``ip neigh add proxy IP dev DEVICE``); idempotent."""
    _run(lambda ipr: ipr.neigh("replace", dst=str(ip), ifindex=_index(ipr, device), flags=NTF_PROXY,
                               family=_AF_INET))


def delete_proxy(ip: IPv4Address, device: str) -> None:
    """Stop answering ARP for ``ip`` on ``device``; no error if it was not proxied."""
    try:
        _run(lambda ipr: ipr.neigh("del", dst=str(ip), ifindex=_index(ipr, device), flags=NTF_PROXY,
                                   family=_AF_INET))
    except NetlinkError as exc:
        if not _absent(exc):
            raise


def proxies(device: str) -> list[IPv4Address]:
    """The addresses proxied on ``device``."""
    def call(ipr: Any) -> list[IPv4Address]:
        oif = _index(ipr, device)
        # A dump whose request ndmsg has ndm_flags == NTF_PROXY lists the pneigh table
        # (neigh_dump_info); pyroute2's neigh("dump") does not set it, so build the request.
        request = ndmsg()
        request["family"] = _AF_INET
        request["flags"] = NTF_PROXY
        replies = _request(ipr, request, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP)
        return [IPv4Address(msg.get("NDA_DST")) for msg in replies
                if msg["flags"] & NTF_PROXY and msg["ifindex"] == oif and msg.get("NDA_DST")]
    return _run(call)
