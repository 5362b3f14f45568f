"""What of a mobile node survives a restart (docs/interfaces.md, "Durability"), as one frozen record: its
registration (times as wall-clock values), the Identification state (the last timestamp sent, the
home agent's nonce, the clock offset learnt from a 133) and the home agent address in use.

The engine makes the record of itself (``MobileNode.snapshot``) and takes one back
(``MobileNode.restore``); :meth:`MobileState.to_json` and :meth:`MobileState.from_json` are its
stored form, the JSON object that PersistMobile carries to the state file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from mipd.core.names import Location
from mipd.core.wire.registration import RequestFlags


@dataclass(frozen=True, slots=True)
class StoredRegistration:
    """The registration in force, as stored: its end as wall-clock time (None: infinite)."""

    care_of_address: IPv4Address
    lifetime: int
    identification: int
    flags: RequestFlags
    expires_wall: float | None
    agent: IPv4Address | None  # the foreign agent, None when co-located
    agent_link_address: bytes | None


@dataclass(frozen=True, slots=True)
class MobileState:
    """A mobile node's durable state."""

    home_agent: IPv4Address
    last_identification: int
    ha_nonce: int | None
    clock_offset: float
    location: Location
    registration: StoredRegistration | None = None

    def to_json(self) -> dict[str, object]:
        """The stored form: Identifications as 16 hex digits, a link-layer address as hex."""
        stored: dict[str, object] = {
            "home_agent": str(self.home_agent), "last_identification": f"{self.last_identification:016x}",
            "ha_nonce": self.ha_nonce, "clock_offset": self.clock_offset, "location": self.location,
        }
        reg = self.registration
        if reg is not None:
            stored["registration"] = {
                "care_of_address": str(reg.care_of_address), "lifetime": reg.lifetime,
                "identification": f"{reg.identification:016x}", "flags": int(reg.flags),
                "expires_wall": reg.expires_wall,
                "agent": None if reg.agent is None else str(reg.agent),
                "agent_link_address": None if reg.agent_link_address is None else reg.agent_link_address.hex(),
            }
        return stored

    @staticmethod
    def from_json(stored: Mapping[str, object], home_agent: IPv4Address) -> MobileState:
        """Read back what :meth:`to_json` wrote; ``home_agent`` where none was stored."""
        nonce = stored.get("ha_nonce")
        offset = stored.get("clock_offset")
        reg = stored.get("registration")
        registration = None
        if isinstance(reg, dict):
            ends = reg.get("expires_wall")
            agent = IPv4Address(str(reg["agent"])) if reg.get("agent") else None
            registration = StoredRegistration(
                IPv4Address(str(reg["care_of_address"])), int(reg["lifetime"]), int(str(reg["identification"]), 16),
                RequestFlags(int(reg["flags"])), None if ends is None else float(ends), agent,
                None if agent is None else bytes.fromhex(str(reg["agent_link_address"])))
        return MobileState(
            home_agent=IPv4Address(str(stored.get("home_agent", home_agent))),
            last_identification=int(str(stored.get("last_identification", "0")), 16),
            ha_nonce=nonce if isinstance(nonce, int) else None,
            clock_offset=float(offset) if isinstance(offset, int | float) else 0.0,
            location=Location(str(stored.get("location", Location.UNKNOWN))),
            registration=registration,
        )
