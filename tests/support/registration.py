"""Building signed registration messages and a home agent engine for engine-level tests."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from mipd.core.actions import Action, Datagram, Emit, PersistNode, SendDatagram
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.core.security import ReplayProtection, SecurityAssociation
from mipd.core.wire import identification as ident
from mipd.core.wire.auth import Algorithm, append_authentication
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags, decode_registration

HA = IPv4Address("10.1.0.1")
HOME_NET = IPv4Network("10.1.0.0/24")
MN = IPv4Address("10.1.0.10")
MN2 = IPv4Address("10.1.0.11")
COA = IPv4Address("10.5.0.5")  # a co-located care-of address
COA2 = IPv4Address("10.6.0.6")
FA = IPv4Address("10.2.0.1")
KEY = bytes(range(16))
KEY2 = bytes(range(16, 32))
FA_KEY = bytes(range(32, 48))
WALL0 = 1_790_000_000.0  # wall clock at engine time 0
NO_FLAGS = RequestFlags(0)


@dataclass
class Clock:
    """The engine's monotonic ``now`` and the injected wall clock, moved together."""

    now: float = 0.0
    wall_offset: float = WALL0

    def wall(self) -> float:
        return self.now + self.wall_offset


@dataclass
class Nonces:
    values: list[int] = field(default_factory=lambda: [0x1000 + i for i in range(100000)])

    def __call__(self) -> int:
        return self.values.pop(0)


def settings(**overrides: object) -> HomeAgentSettings:
    base = HomeAgentSettings(
        address=HA,
        home_network=HOME_NET,
        mobile_nodes={
            256: SecurityAssociation(256, KEY, MN),
            257: SecurityAssociation(257, KEY2, MN2, replay=ReplayProtection.NONCE),
        },
        foreign_agents={FA: {300: SecurityAssociation(300, FA_KEY, FA)}},
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def engine(clock: Clock, **overrides: object) -> HomeAgent:
    return HomeAgent(settings(**overrides), wall_clock=clock.wall, random32=Nonces())


def request(
    clock: Clock,
    *,
    flags: RequestFlags = NO_FLAGS,
    lifetime: int = 600,
    home: IPv4Address = MN,
    home_agent: IPv4Address = HA,
    coa: IPv4Address = COA,
    identification: int | None = None,
    spi: int = 256,
    key: bytes = KEY,
    before: tuple[object, ...] = (),
    after: tuple[object, ...] = (),
    fa_ha: tuple[int, bytes] | None = None,
) -> RegistrationRequest:
    """A request signed MN-HA (and FA-HA when ``fa_ha`` = (spi, key)); timestamp from the clock."""
    ident_value = ident.timestamp(clock.wall(), 0x5A5) if identification is None else identification
    msg = RegistrationRequest(flags, lifetime, home, home_agent, coa, ident_value, before)  # type: ignore[arg-type]
    msg = append_authentication(msg, ExtensionType.MOBILE_HOME_AUTHENTICATION, spi, key, Algorithm.HMAC_MD5)
    if after:
        msg = replace(msg, extensions=(*msg.extensions, *after))  # type: ignore[arg-type]
    if fa_ha is not None:
        msg = append_authentication(msg, ExtensionType.FOREIGN_HOME_AUTHENTICATION, fa_ha[0], fa_ha[1],
                                    Algorithm.HMAC_MD5)
    return msg


def datagram(msg: RegistrationRequest | bytes, source: IPv4Address = COA, destination: IPv4Address = HA,
             port: int = 40000) -> Datagram:
    payload = msg if isinstance(msg, bytes) else msg.encode()
    return Datagram(payload, source, port, destination)


def replies(actions: list[Action]) -> list[tuple[SendDatagram, RegistrationReply]]:
    out = []
    for a in actions:
        if isinstance(a, SendDatagram):
            reply = decode_registration(a.payload)
            assert isinstance(reply, RegistrationReply)
            out.append((a, reply))
    return out


def only_reply(actions: list[Action]) -> tuple[SendDatagram, RegistrationReply]:
    found = replies(actions)
    assert len(found) == 1, f"expected one reply, got {len(found)}: {actions}"
    return found[0]


def events(actions: list[Action]) -> list[str]:
    return [a.event for a in actions if isinstance(a, Emit)]


def persisted(actions: list[Action]) -> list[PersistNode]:
    return [a for a in actions if isinstance(a, PersistNode)]
