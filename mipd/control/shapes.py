"""Build the JSON results of ``mipctl --json`` (mipctl(8) JSON OUTPUT) from core objects, so no caller
hand-rolls them.

Their rules: times are whole seconds, flags are RFC letters in RFC order (a subset of
``"SBDMGT"``), addresses are strings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from ipaddress import IPv4Address

from mipd.control.protocol import JSONObject
from mipd.core.bindings import Binding
from mipd.core.home_agent import Counters
from mipd.core.names import VisitorState
from mipd.core.wire.registration import RequestFlags

# Drop reasons stats always shows, even at 0 (docs/interfaces.md, "stats"), in this order.
ALWAYS_DROPPED = ("malformed", "no_sa", "unknown_extension")


def binding_json(binding: Binding, now: float) -> JSONObject:
    """One entry of ``{"bindings": [...]}``; ``now`` is on the engine's clock (``Binding.expires``)."""
    return {
        "home_address": str(binding.home_address),
        "care_of_address": str(binding.care_of_address),
        "lifetime_granted": binding.lifetime_granted,
        "lifetime_remaining": binding.remaining(now),
        "flags": binding.flags.letters(),
        "spi": binding.spi,
        "identification": f"{binding.identification:016x}",
        "foreign_agent": None if binding.foreign_agent is None else str(binding.foreign_agent),
        "udp_tunnel": binding.outer is not None,
        **({} if binding.outer is None else {"outer_address": str(binding.outer.address),
                                             "outer_port": binding.outer.port}),
        # RFC 5177: a mobile router's accepted prefixes; absent when none
        **({"mobile_networks": [str(p) for p in binding.prefixes]} if binding.prefixes else {}),
    }


def bindings_json(bindings: Iterable[Binding], now: float) -> JSONObject:
    """The ``bindings`` result, ordered by home address, then care-of address."""
    ordered = sorted(bindings, key=lambda b: (b.home_address, b.care_of_address))
    return {"bindings": [binding_json(b, now) for b in ordered]}


def visitor_json(
    *,
    home_address: IPv4Address,
    home_agent: IPv4Address,
    care_of_address: IPv4Address,
    link_address: str,
    state: VisitorState,
    lifetime_granted: int,
    lifetime_remaining: int,
    flags: RequestFlags,
    udp_tunnel: bool = False,
) -> JSONObject:
    """One entry of ``{"visitors": [...]}``; ``link_address`` like ``"02:00:00:00:00:0a"``;
    ``udp_tunnel``: the home agent tunnels to us inside UDP (RFC 3519)."""
    if state not in set(VisitorState):
        raise ValueError(f"visitor state must be pending or active, not {state!r}")
    return {
        "home_address": str(home_address),
        "home_agent": str(home_agent),
        "care_of_address": str(care_of_address),
        "link_address": link_address.lower(),
        "state": state,
        "lifetime_granted": lifetime_granted,
        "lifetime_remaining": lifetime_remaining,
        "flags": flags.letters(),
        "udp_tunnel": udp_tunnel,
    }


def visitors_json(visitors: Iterable[JSONObject]) -> JSONObject:
    """The ``visitors`` result from :func:`visitor_json` entries, ordered by home address."""
    return {"visitors": sorted(visitors, key=lambda v: IPv4Address(v["home_address"]))}


def stats_json(counters: Counters, relayed: int = 0) -> JSONObject:
    """The ``stats`` result: denied per reply code (keys are code strings, in code order); dropped
    per reason, with ``-`` in reason names written ``_`` and :data:`ALWAYS_DROPPED` always present."""
    denied = {str(code): count for code, count in sorted(counters.denied.items()) if count}
    dropped = dict.fromkeys(ALWAYS_DROPPED, 0)
    others: dict[str, int] = {}
    for reason, count in counters.dropped.items():
        key = reason.replace("-", "_")
        if key in dropped:
            dropped[key] += count
        elif count:
            others[key] = others.get(key, 0) + count
    dropped.update(sorted(others.items()))
    return {
        "counters": {
            "requests_received": counters.requests_received,
            "accepted": counters.accepted,
            "denied": denied,
            "dropped": dropped,
            "relayed": relayed,
            "renewals": counters.renewals,
        }
    }


def status_json(
    *,
    role: str,
    instance: str,
    uptime: float,
    backend: str,
    **details: str | int | bool | IPv4Address | None,
) -> JSONObject:
    """The ``status`` result: the common keys, then the role's (``bindings=1`` for a home agent;
    ``location``, ``agent``, ``care_of_address``, ``lifetime_remaining``, ``registered`` for a
    mobile node). Addresses become strings; ``uptime`` whole seconds."""
    result: JSONObject = {"role": role, "instance": instance, "uptime": math.floor(uptime), "backend": backend}
    for key, value in details.items():
        result[key] = str(value) if isinstance(value, IPv4Address) else value
    return result


def flush_json(home_address: IPv4Address, removed: int) -> JSONObject:
    """The ``flush`` result: how many bindings or visitor entries of the node were removed."""
    return {"home_address": str(home_address), "removed": removed}
