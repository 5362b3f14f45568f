"""Netlink for the mobile node's routing: the link's ARP flag, addresses, gateway routes per table.

Like mipd.adapters.netlink.policy, a sibling of mipd.adapters.netlink.calls: every call runs on the same
"mipd-netlink" thread through ``netlink._run`` and fails with the same :class:`NetlinkError`.
mipd.adapters.link.mobile_routing explains what the mobile node does with these.

One kernel behaviour the caller must know (net/core/neighbour.c, ``neigh_changeaddr``): changing
a link's IFF_NOARP flag flushes *every* neighbour entry of that link, permanent ones included.
So a static entry must be (re)made after :func:`set_link_arp`, never before.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from mipd.adapters.netlink.calls import RTPROT_MIPD, NetlinkError, _index, _run

IFF_NOARP = 0x80  # linux/if.h
RTNH_F_ONLINK = 0x04  # linux/rtnetlink.h: the gateway is on the link whatever the prefixes say
_AF_INET = 2
_RT_SCOPE_UNIVERSE = 0
_RTN_UNICAST = 1


# --- the link's ARP flag (RFC 5944 4.6: no ARP at all while away) ---------------------------------

def link_arp(name: str) -> bool:
    """Whether link ``name`` does ARP (IFF_NOARP clear)."""
    def call(ipr: Any) -> bool:
        (msg,) = ipr.link("get", index=_index(ipr, name))
        return not int(msg["flags"]) & IFF_NOARP
    return _run(call)


def set_link_arp(name: str, on: bool) -> None:
    """``ip link set dev NAME arp on|off``. Changing the flag flushes the link's neighbour
    entries, permanent ones too (see the module docstring); setting it to what it is does not."""
    def call(ipr: Any) -> None:
        index = _index(ipr, name)
        (msg,) = ipr.link("get", index=index)
        if bool(not int(msg["flags"]) & IFF_NOARP) != on:
            ipr.link("set", index=index, flags=0 if on else IFF_NOARP, change=IFF_NOARP)
    _run(call)


# --- addresses ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Address:
    """One IPv4 address of a link: address with prefix length, and its broadcast address if any."""

    interface: IPv4Interface
    broadcast: IPv4Address | None = None


def addresses(device: str) -> list[Address]:
    """The IPv4 addresses of ``device`` ([] if it does not exist)."""
    def call(ipr: Any) -> list[Address]:
        found = ipr.link_lookup(ifname=device)
        if not found:
            return []
        out = []
        for msg in ipr.get_addr(family=_AF_INET, index=found[0]):
            broadcast = msg.get("IFA_BROADCAST")
            out.append(Address(IPv4Interface(f"{msg.get('IFA_LOCAL') or msg.get('IFA_ADDRESS')}/{msg['prefixlen']}"),
                               IPv4Address(broadcast) if broadcast else None))
        return out
    return _run(call)


def add_address(address: Address, device: str) -> None:
    """``ip addr add A/P [brd B] dev DEVICE``; the same address and prefix length again is no error."""
    fields: dict[str, Any] = {"address": str(address.interface.ip), "prefixlen": address.interface.network.prefixlen}
    if address.broadcast is not None:
        fields["broadcast"] = str(address.broadcast)
    try:
        _run(lambda ipr: ipr.addr("add", index=_index(ipr, device), **fields))
    except NetlinkError as exc:
        if exc.errno != errno.EEXIST:
            raise


def delete_address(address: IPv4Interface, device: str) -> None:
    """``ip addr del A/P dev DEVICE``; no error if there is no such address or link."""
    def call(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=device)
        if found:
            ipr.addr("del", index=found[0], address=str(address.ip), prefixlen=address.network.prefixlen)
    try:
        _run(call)
    except NetlinkError as exc:
        if exc.errno not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV, errno.ESRCH):
            raise


# --- gateway routes in a table -------------------------------------------------------------------

def replace_gateway_route(destination: IPv4Network, gateway: IPv4Address, *, device: str, table: int,
                          source: IPv4Address | None = None, onlink: bool = True,
                          protocol: int = RTPROT_MIPD) -> None:
    """``ip route replace DEST via GATEWAY dev DEVICE [onlink] [src SOURCE] table T proto P``.

    ``onlink``: the gateway is reachable on ``device`` although no address of ours covers it (a
    foreign agent seen by a node that holds only its home address, RFC 5944 4.6)."""
    fields: dict[str, Any] = {"dst": str(destination.network_address), "dst_len": destination.prefixlen,
                              "gateway": str(gateway), "table": table, "proto": protocol,
                              "scope": _RT_SCOPE_UNIVERSE, "type": _RTN_UNICAST}
    if onlink:
        fields["flags"] = RTNH_F_ONLINK
    if source is not None:
        fields["prefsrc"] = str(source)
    _run(lambda ipr: ipr.route("replace", oif=_index(ipr, device), **fields))
