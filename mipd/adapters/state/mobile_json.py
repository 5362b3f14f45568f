"""The stored form of a mobile node's state: the JSON object in the state file's ``mobile`` table.

The engine hands the state adapter a frozen :class:`~mipd.core.mobile_state.MobileState` (in
:class:`~mipd.core.actions.PersistMobile`) and takes one back at start; only this module knows how
it is written: addresses as dotted quads, Identifications as 16 hex digits (SQLite and JSON readers
alike lose precision on 64-bit integers), a link-layer address as hex, wall-clock times as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network

from mipd.core.mobile_state import MobileState, StoredRegistration
from mipd.core.names import Location
from mipd.core.wire.registration import RequestFlags


def to_json(state: MobileState) -> dict[str, object]:
    """The stored form: Identifications as 16 hex digits, a link-layer address as hex."""
    stored: dict[str, object] = {
        "home_agent": str(state.home_agent), "last_identification": f"{state.last_identification:016x}",
        "ha_nonce": state.ha_nonce, "clock_offset": state.clock_offset, "location": state.location,
    }
    reg = state.registration
    if reg is not None:
        stored["registration"] = {
            "care_of_address": str(reg.care_of_address), "lifetime": reg.lifetime,
            "identification": f"{reg.identification:016x}", "flags": int(reg.flags),
            "expires_wall": reg.expires_wall,
            "agent": None if reg.agent is None else str(reg.agent),
            "agent_link_address": None if reg.agent_link_address is None else reg.agent_link_address.hex(),
        }
        if reg.udp_keepalive is not None:  # RFC 3519: written only when UDP-tunnelled (read back as absent: not)
            stored["registration"]["udp_keepalive"] = reg.udp_keepalive  # type: ignore[index]
        if reg.mobile_networks:  # RFC 5177: written only for a mobile router the home agent serves
            stored["registration"]["mobile_networks"] = [str(n) for n in reg.mobile_networks]  # type: ignore[index]
    return stored


def from_json(stored: Mapping[str, object], home_agent: IPv4Address) -> MobileState:
    """Read back what :func:`to_json` wrote; ``home_agent`` where none was stored."""
    nonce = stored.get("ha_nonce")
    offset = stored.get("clock_offset")
    reg = stored.get("registration")
    registration = None
    if isinstance(reg, dict):
        ends = reg.get("expires_wall")
        agent = IPv4Address(str(reg["agent"])) if reg.get("agent") else None
        networks = reg.get("mobile_networks")
        registration = StoredRegistration(
            IPv4Address(str(reg["care_of_address"])), int(reg["lifetime"]), int(str(reg["identification"]), 16),
            RequestFlags(int(reg["flags"])), None if ends is None else float(ends), agent,
            None if agent is None else bytes.fromhex(str(reg["agent_link_address"])),
            int(reg["udp_keepalive"]) if isinstance(reg.get("udp_keepalive"), int) else None,
            tuple(IPv4Network(str(n)) for n in networks) if isinstance(networks, list) else ())
    return MobileState(
        home_agent=IPv4Address(str(stored.get("home_agent", home_agent))),
        last_identification=int(str(stored.get("last_identification", "0")), 16),
        ha_nonce=nonce if isinstance(nonce, int) else None,
        clock_offset=float(offset) if isinstance(offset, int | float) else 0.0,
        location=Location(str(stored.get("location", Location.UNKNOWN))),
        registration=registration,
    )
