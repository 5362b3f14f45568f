"""Real mobile-node, foreign-agent and home-agent engines wired together in memory, one clock.

The ``World`` carries each engine's datagrams to the engine they are addressed to, the way the
network would (in the manner of aioquic's client_and_server tests), and advances time through every
engine's timer. Agent advertisements are made by the test (``advertise``), as the agents'
advertisers would send them.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from mipd.core.actions import Action, Datagram, Emit, SendDatagram, SendIcmp, SendToNode
from mipd.core.foreign_agent import ForeignAgent, ForeignAgentSettings, NodeRequest
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.core.mobile_node import MobileNode, MobileNodeSettings
from mipd.core.planes import AnnounceHome, MobilePlane
from mipd.core.security import ReplayProtection, SecurityAssociation
from mipd.core.wire.icmp import (
    AdvertisementFlags,
    AgentAdvertisement,
    MobilityAgentExtension,
    PrefixLengthsExtension,
    RouterAddress,
)

HA = IPv4Address("10.1.0.1")
HOME_NET = IPv4Network("10.1.0.0/24")
MN = IPv4Address("10.1.0.10")
FA1, FA2 = IPv4Address("10.2.0.1"), IPv4Address("10.3.0.1")
MN_MAC = bytes.fromhex("02000000000a")
FA_MACS = {FA1: bytes.fromhex("0200000000f1"), FA2: bytes.fromhex("0200000000f2")}
KEY = bytes(range(16))
FA_HA_KEY = bytes(range(50, 66))
WALL0 = 1_790_000_000.0


@dataclass
class World:
    now: float = 0.0
    mn_skew: float = 0.0  # seconds the node's wall clock is ahead
    log: list[Action] = field(default_factory=list)
    origins: list[object] = field(default_factory=list)  # the engine each logged action came from
    dropped_to: set[IPv4Address] = field(default_factory=set)  # destinations that swallow everything

    def wall(self) -> float:
        return WALL0 + self.now

    def mn_wall(self) -> float:
        return WALL0 + self.now + self.mn_skew


Engines = tuple[World, MobileNode, dict[IPv4Address, ForeignAgent], HomeAgent]


def build(*, replay: ReplayProtection = ReplayProtection.TIMESTAMP, care_of: str = "auto", lifetime: int = 300,
          colocated: IPv4Interface | None = None, **mn: Any) -> Engines:
    world = World()
    rng = random.Random(5944)
    counter = itertools.count(1)
    sa = SecurityAssociation(256, KEY, MN, replay=replay)
    ha = HomeAgent(HomeAgentSettings(HA, HOME_NET, {256: sa},
                                     foreign_agents={fa: {500: SecurityAssociation(500, FA_HA_KEY, fa)}
                                                     for fa in (FA1, FA2)}, max_lifetime=600),
                   wall_clock=world.wall, random32=lambda: next(counter))
    fas = {fa: ForeignAgent(ForeignAgentSettings(fa, frozenset({fa}),
                                                 home_agents={HA: {500: SecurityAssociation(500, FA_HA_KEY, HA)}},
                                                 max_lifetime=600), wall_clock=world.wall)
           for fa in (FA1, FA2)}
    node = MobileNode(MobileNodeSettings(MN, HOME_NET, HA, sa, lifetime=lifetime, care_of=care_of,
                                         colocated_address=colocated, **mn),
                      wall_clock=world.mn_wall, random32=lambda: rng.getrandbits(32), random=rng.random)
    return world, node, fas, ha


def advertisement(agent: IPv4Address, *, sequence: int = 1, home: bool = False, lifetime: int = 3,
                  registration_lifetime: int = 600, prefix: int | None = 24, flags: AdvertisementFlags | None = None
                  ) -> AgentAdvertisement:
    """An agent's advertisement; ``prefix`` None leaves out the Prefix-Lengths Extension."""
    if flags is None:
        flags = AdvertisementFlags.H if home else AdvertisementFlags.F | AdvertisementFlags.T
    coas = () if home else (agent,)
    mobility = MobilityAgentExtension(sequence, registration_lifetime, flags, coas)
    prefixes = () if prefix is None else (PrefixLengthsExtension((prefix,)),)
    return AgentAdvertisement(lifetime, 16, (RouterAddress(agent, 0),), (mobility, *prefixes))


class Network:
    """Carries actions between the engines until nothing is left in flight."""

    def __init__(self, world: World, node: MobileNode, fas: dict[IPv4Address, ForeignAgent], ha: HomeAgent) -> None:
        self.world, self.node, self.fas, self.ha = world, node, fas, ha
        self.relay_ports = {fa: 40000 + i for i, fa in enumerate(fas)}
        self.mn_port = 5000
        self.solicitations = 0
        self.planes: list[MobilePlane] = []
        self.announced: list[AnnounceHome] = []

    def deliver(self, actions: list[Action], sender: object) -> None:
        queue = [(a, sender) for a in actions]
        while queue:
            action, origin = queue.pop(0)
            self.world.log.append(action)
            self.world.origins.append(origin)
            queue += [(a, target) for target, a in self._route(action, origin)]

    def _route(self, action: Action, origin: object) -> list[tuple[object, Action]]:
        now = self.world.now
        if isinstance(action, MobilePlane):
            self.planes.append(action)
        elif isinstance(action, AnnounceHome):
            self.announced.append(action)
        elif isinstance(action, SendIcmp):
            self.solicitations += 1
        elif isinstance(action, SendDatagram) and action.destination not in self.world.dropped_to:
            if origin is self.node and action.destination in self.fas:
                fa = self.fas[action.destination]
                request = NodeRequest(action.payload, action.source, self.mn_port, action.destination, MN_MAC,
                                      action.ttl or 64)
                return [(fa, a) for a in fa.from_node(request, now)]
            if action.destination == self.ha.settings.address:
                source_port = self.relay_ports.get(action.source, self.mn_port)
                dgram = Datagram(action.payload, action.source, source_port, action.destination)
                return [(self.ha, a) for a in self.ha.receive(dgram, now)]
            if action.destination in self.fas and origin is self.ha:
                fa = self.fas[action.destination]
                dgram = Datagram(action.payload, action.source, 434, action.destination, action.destination_port)
                return [(fa, a) for a in fa.from_home_agent(dgram, now)]
            if origin is self.ha:  # a reply to a co-located or home node
                return [(self.node, a) for a in self.node.reply(Datagram(action.payload, action.source, 434,
                                                                          action.destination), now)]
        elif isinstance(action, SendToNode) and action.link_address == MN_MAC:
            return [(self.node, a) for a in self.node.reply(Datagram(action.payload, action.source, 434,
                                                                      action.destination), now)]
        return []

    def hear(self, agent: IPv4Address, adv: AgentAdvertisement) -> None:
        link = FA_MACS.get(agent, b"\x02\x00\x00\x00\x00\x01")
        self.deliver(self.node.advertisement(adv, agent, link, self.world.now), self.node)

    def run_until(self, until: float, *, advertisers: dict[IPv4Address, AgentAdvertisement] | None = None,
                  every: float = 1.0) -> None:
        """Advance time to ``until`` through every engine's timer, agents advertising every
        ``every`` seconds (their sequence numbers counting up)."""
        advertisers = dict(advertisers or {})
        next_advert = self.world.now
        while True:
            engines: list[Any] = [self.node, self.ha, *self.fas.values()]
            deadlines = [t for e in engines if (t := e.next_timer()) is not None]
            if advertisers:
                deadlines.append(next_advert)
            step = min([d for d in deadlines if d > self.world.now - 1e-9] + [until])
            if step > until:
                break
            self.world.now = max(self.world.now, step)
            if advertisers and self.world.now >= next_advert:
                for agent, adv in list(advertisers.items()):
                    mobility = adv.mobility
                    assert mobility is not None
                    self.hear(agent, adv)
                    bumped = MobilityAgentExtension(mobility.sequence + 1, mobility.registration_lifetime,
                                                    mobility.flags, mobility.care_of_addresses)
                    advertisers[agent] = AgentAdvertisement(adv.lifetime, adv.code, adv.addresses,
                                                            (bumped, *adv.extensions[1:]))
                next_advert = self.world.now + every
            for engine in engines:
                deadline = engine.next_timer()
                if deadline is not None and deadline <= self.world.now:
                    self.deliver(engine.on_timer(self.world.now), engine)
            if self.world.now >= until:
                break

    def events(self, name: str, of: object | None = None) -> list[Emit]:
        """Events named ``name`` (of one engine only, if ``of`` is given)."""
        return [a for a, origin in zip(self.world.log, self.world.origins, strict=True)
                if isinstance(a, Emit) and a.event == name and (of is None or origin is of)]
