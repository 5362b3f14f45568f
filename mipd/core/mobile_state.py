"""What of a mobile node survives a restart (docs/interfaces.md, "Durability"): its registration (times as
wall-clock values), the Identification state (the last timestamp sent, the home agent's nonce,
the clock offset learnt from a 133) and the home agent address in use."""

from __future__ import annotations

import math
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from mipd.core.discovery import Agent
from mipd.core.mobile_types import MIN_RETRANSMISSION, Registration
from mipd.core.wire.icmp import AdvertisementFlags, AgentAdvertisement, MobilityAgentExtension
from mipd.core.wire.registration import RequestFlags

if TYPE_CHECKING:
    from mipd.core.mobile_node import MobileNode


def save(node: MobileNode, now: float) -> dict[str, object]:
    """What survives a restart; times as wall-clock values."""
    wall = node._wall_clock()
    reg = node.registration
    stored: dict[str, object] = {
        "home_agent": str(node.home_agent), "last_identification": f"{node._last_identification:016x}",
        "ha_nonce": node._ha_nonce, "clock_offset": node._clock_offset, "location": node.location,
    }
    if reg is not None:
        stored["registration"] = {
            "care_of_address": str(reg.care_of_address), "lifetime": reg.lifetime,
            "identification": f"{reg.identification:016x}", "flags": int(reg.flags),
            "expires_wall": None if math.isinf(reg.expires) else wall + (reg.expires - now),
            "agent": str(reg.agent.address) if reg.agent else None,
            "agent_link_address": reg.agent.link_address.hex() if reg.agent else None,
        }
    return stored


def restore(node: MobileNode, stored: Mapping[str, object] | None, now: float) -> None:
    """Take back what :meth:`state` wrote: Identification state always, the registration if
    it has not ended (its agent as it was; it is checked again when heard)."""
    if not stored:
        return
    wall = node._wall_clock()
    node.home_agent = IPv4Address(str(stored.get("home_agent", node.home_agent)))
    node._last_identification = int(str(stored.get("last_identification", "0")), 16)
    nonce = stored.get("ha_nonce")
    node._ha_nonce = nonce if isinstance(nonce, int) else None
    offset = stored.get("clock_offset")
    node._clock_offset = float(offset) if isinstance(offset, int | float) else 0.0
    reg = stored.get("registration")
    if not isinstance(reg, dict):
        return
    ends = reg.get("expires_wall")
    remaining = math.inf if ends is None else float(ends) - wall
    if remaining <= 0:
        return
    lifetime = int(reg["lifetime"])
    agent = None
    if reg.get("agent"):
        care_of = IPv4Address(str(reg["care_of_address"]))
        agent = Agent(IPv4Address(str(reg["agent"])), bytes.fromhex(str(reg["agent_link_address"])),
                      AgentAdvertisement(0), MobilityAgentExtension(0, lifetime, AdvertisementFlags.F,
                                                                    (care_of,)), now)
    expires = now + remaining
    margin = min(max(MIN_RETRANSMISSION, 0.2 * lifetime), 0.5 * lifetime)
    node.registration = Registration(IPv4Address(str(reg["care_of_address"])), agent, lifetime, expires,
                                     expires - margin, int(str(reg["identification"]), 16),
                                     RequestFlags(int(reg["flags"])))
    node.location = str(stored.get("location", "unknown"))
