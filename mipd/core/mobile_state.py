"""What of a mobile node survives a restart (docs/interfaces.md, "Durability"), as one frozen record: its
registration (times as wall-clock values), the Identification state (the last timestamp sent, the
home agent's nonce, the clock offset learnt from a 133) and the home agent address in use.

The engine makes the record of itself (``MobileNode.snapshot``), hands it to the state adapter in
PersistMobile, and takes one back (``MobileNode.restore``). The core knows nothing of how it is
stored: mipd.adapters.state.mobile_json writes and reads its JSON form.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

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
    udp_keepalive: int | None = None  # RFC 3519: UDP-tunnelled, with this keepalive interval (s)
    mobile_networks: tuple[IPv4Network, ...] = ()  # RFC 5177: the prefixes the home agent acknowledged


@dataclass(frozen=True, slots=True)
class MobileState:
    """A mobile node's durable state."""

    home_agent: IPv4Address
    last_identification: int
    ha_nonce: int | None
    clock_offset: float
    location: Location
    registration: StoredRegistration | None = None
