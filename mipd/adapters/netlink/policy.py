"""Netlink for the foreign agent's data plane: static neighbours, policy rules, routes per table.

Split out of mipd.adapters.netlink.calls (which stays the home of the worker thread and of every older
function) so that neither module grows past its size; both run their calls on the same
"mipd-netlink" thread through ``netlink._run``, and errors are the same :class:`NetlinkError`.

Ownership marks used here (mipd.adapters.tunnel.visitor_routing explains the design):

- static neighbours: ``NUD_PERMANENT`` with ``NDA_PROTOCOL`` = RTPROT_MIPD (``ip neigh ... proto
  77``; kernels since 5.2 keep it);
- rules: ``FRA_PROTOCOL`` = RTPROT_MIPD (``ip rule ... proto 77``; kernels since 4.17), inside
  a priority range the caller reserves. A kernel that ignores FRA_PROTOCOL reports none; such
  a rule in the reserved range is counted as owned too (:func:`owned_rules`);
- routes in any table: ``rtm_protocol`` = RTPROT_MIPD, as everywhere in mipd.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from mipd.adapters.netlink.calls import (
    RTPROT_MIPD,
    NetlinkError,
    _absent,
    _index,
    _link_names,
    _route_network,
    _route_oif,
    _run,
)

NUD_PERMANENT = 0x80  # linux/neighbour.h
FR_ACT_TO_TBL, FR_ACT_BLACKHOLE = 1, 6  # linux/fib_rules.h
_NO_SUPPRESS = 0xFFFF_FFFF  # FRA_SUPPRESS_PREFIXLEN of a rule without suppress_prefixlength
_AF_INET = 2


def _mac(link_address: bytes | str) -> str:
    if isinstance(link_address, bytes):
        return ":".join(f"{b:02x}" for b in link_address)
    return link_address


def _quiet(call: Any) -> None:
    """Run a deletion; "no such object" is success."""
    try:
        _run(call)
    except NetlinkError as exc:
        if not _absent(exc):
            raise


def link_names() -> list[str]:
    """The names of every link in this network namespace (for ``mipd cleanup``)."""
    return sorted(_run(_link_names).values())


# --- static neighbours (RFC 5944 4.2.2: the FA never ARPs for a visitor's home address) ----------

def replace_static_neighbour(ip: IPv4Address, link_address: bytes | str, device: str,
                             protocol: int = RTPROT_MIPD) -> None:
    """``ip neigh replace IP lladdr MAC dev DEVICE nud permanent proto P``: never probed, never
    expires, not overwritten by received ARP."""
    _run(lambda ipr: ipr.neigh("replace", dst=str(ip), lladdr=_mac(link_address), ifindex=_index(ipr, device),
                               state=NUD_PERMANENT, family=_AF_INET, NDA_PROTOCOL=protocol))


def delete_neighbour(ip: IPv4Address, device: str) -> None:
    """Delete the neighbour entry for ``ip`` on ``device``; no error if there is none."""
    def call(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=device)
        if found:
            ipr.neigh("del", dst=str(ip), ifindex=found[0], family=_AF_INET)
    _quiet(call)


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One IPv4 neighbour entry: address, device name, link-layer address, NUD state, protocol."""

    address: IPv4Address
    device: str
    link_address: str
    state: int
    protocol: int | None


def neighbours(device: str | None = None) -> list[Neighbour]:
    """The IPv4 neighbour entries (of ``device`` only, if given; [] if it does not exist)."""
    def call(ipr: Any) -> list[Neighbour]:
        names = _link_names(ipr)
        out = []
        for msg in ipr.neigh("dump", family=_AF_INET):
            name = names.get(int(msg["ifindex"]), "")
            if msg.get("NDA_DST") is None or (device is not None and name != device):
                continue
            protocol = msg.get("NDA_PROTOCOL")
            out.append(Neighbour(IPv4Address(msg.get("NDA_DST")), name, str(msg.get("NDA_LLADDR") or ""),
                                 int(msg["state"]), None if protocol is None else int(protocol)))
        return out
    return _run(call)


def owned_neighbours(protocol: int = RTPROT_MIPD) -> list[Neighbour]:
    """The permanent entries marked with ``protocol``, on any device."""
    return [n for n in neighbours() if n.state & NUD_PERMANENT and n.protocol == protocol]


# --- policy rules ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Rule:
    """One IPv4 rule: ``priority``, optional ``source`` and ``iif`` selectors, and either
    ``lookup table`` or (``blackhole``) a silent discard. ``suppress_prefixlength`` N makes the
    lookup ignore routes of prefix length N or less (``suppress_prefixlength 0``: all but the
    default route, Linux >= 3.12)."""

    priority: int
    table: int = 0
    source: IPv4Network | None = None
    iif: str | None = None
    blackhole: bool = False
    suppress_prefixlength: int | None = None

    def _fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"priority": self.priority, "family": _AF_INET}
        if self.blackhole:
            fields["action"] = FR_ACT_BLACKHOLE
        else:
            fields["action"] = FR_ACT_TO_TBL
            fields["table"] = self.table
        if self.source is not None:
            fields.update(src=str(self.source.network_address), src_len=self.source.prefixlen)
        if self.iif is not None:
            fields["iifname"] = self.iif
        if self.suppress_prefixlength is not None:
            fields["FRA_SUPPRESS_PREFIXLEN"] = self.suppress_prefixlength
        return fields


def add_rule(rule: Rule, protocol: int = RTPROT_MIPD) -> None:
    """Add ``rule`` marked with ``protocol``; adding an identical one again is no error."""
    def call(ipr: Any) -> None:
        if rule not in _rules(ipr, None):
            ipr.rule("add", **rule._fields(), protocol=protocol)
    _run(call)


def delete_rule(rule: Rule) -> None:
    """Delete ``rule``; no error if there is none."""
    _quiet(lambda ipr: ipr.rule("del", **rule._fields()))


def _rules(ipr: Any, protocol: int | None, priorities: range | None = None) -> list[Rule]:
    out = []
    for msg in ipr.rule("dump", family=_AF_INET):
        priority = int(msg.get("FRA_PRIORITY") or 0)
        if priorities is not None and priority not in priorities:
            continue
        marked = msg.get("FRA_PROTOCOL")
        if protocol is not None and marked is not None and int(marked) != protocol:
            continue
        source = msg.get("FRA_SRC")
        suppress = msg.get("FRA_SUPPRESS_PREFIXLEN")  # the kernel reports -1 (as u32) for "none"
        out.append(Rule(priority, int(msg.get("FRA_TABLE") or msg["table"]) if msg["action"] == FR_ACT_TO_TBL else 0,
                        IPv4Network(f"{source}/{msg['src_len']}") if source else None,
                        msg.get("FRA_IIFNAME"), msg["action"] == FR_ACT_BLACKHOLE,
                        None if suppress is None or int(suppress) >= _NO_SUPPRESS else int(suppress)))
    return out


def owned_rules(priorities: range, protocol: int = RTPROT_MIPD) -> list[Rule]:
    """The rules in ``priorities`` marked with ``protocol`` -- or with no protocol at all (a
    kernel before 4.17 does not keep FRA_PROTOCOL, so the reserved range alone marks them)."""
    return _run(lambda ipr: _rules(ipr, protocol, priorities))


def rules() -> list[Rule]:
    """Every IPv4 rule (for tests and diagnosis)."""
    return _run(lambda ipr: _rules(ipr, None))


# --- routes per table -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TableRoute:
    """A route as listed: destination, device name ("" if none), table, protocol, route type."""

    destination: IPv4Network
    device: str
    table: int
    protocol: int
    kind: int


def table_routes(protocol: int | None = RTPROT_MIPD) -> list[TableRoute]:
    """The IPv4 routes of every table (marked with ``protocol`` only, unless it is None)."""
    def call(ipr: Any) -> list[TableRoute]:
        names = _link_names(ipr)
        out = []
        for msg in ipr.route("dump", family=_AF_INET):
            if protocol is not None and msg["proto"] != protocol:
                continue
            oif = _route_oif(msg)
            out.append(TableRoute(_route_network(msg), names.get(oif, "") if oif is not None else "",
                                  int(msg.get("RTA_TABLE") or msg["table"]), int(msg["proto"]), int(msg["type"])))
        return out
    return _run(call)


def delete_table_route(destination: IPv4Network, table: int, protocol: int = RTPROT_MIPD) -> None:
    """Delete the ``protocol`` route to ``destination`` in ``table`` only; no error if absent."""
    def call(ipr: Any) -> None:
        for msg in ipr.route("dump", family=_AF_INET, table=table):
            if msg["proto"] != protocol or _route_network(msg) != destination:
                continue
            ipr.route("del", dst=str(destination.network_address), dst_len=destination.prefixlen, table=table,
                      proto=protocol, oif=_route_oif(msg), scope=msg["scope"], type=msg["type"])
    _quiet(call)

