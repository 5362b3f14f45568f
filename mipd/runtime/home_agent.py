"""The home agent's part of the runtime: its engine settings, sockets and control answers."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING

from mipd.adapters.udp import Listen
from mipd.config import HomeAgentProfile
from mipd.control.handler import ControlError
from mipd.control.protocol import JSONObject
from mipd.control.shapes import bindings_json, flush_json, stats_json, status_json
from mipd.core.advertiser import INFINITE_REGISTRATION_LIFETIME, AdvertiserConfig
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.core.icmp import ALL_SYSTEMS, AdvertisementCode, AdvertisementFlags
from mipd.core.security import Encapsulation, ReverseTunneling

if TYPE_CHECKING:
    from mipd.runtime.daemon import Daemon


def listens(profile: HomeAgentProfile) -> list[Listen]:
    """UDP 434 on our address, the home subnet broadcast and 255.255.255.255 on the home link
    (requests sent to either broadcast are answered with 136, RFC 5944 3.8.2.1 e)."""
    return [
        Listen(profile.address),
        Listen(profile.home_network.broadcast_address, profile.interface),
        Listen(IPv4Address("255.255.255.255"), profile.interface),
    ]


def advertiser_config(profile: HomeAgentProfile, settings: HomeAgentSettings) -> AdvertiserConfig:
    """What a home agent advertises on its home link (RFC 5944 2.1, 2.3): H, so that a node can tell
    it is home; T unless reverse tunneling is off (RFC 3024); M and G for the encapsulations the
    engine offers (2.1.1: what "this agent implements receiving"), i.e. the ones the running
    backend can carry. Code 0: the home agent turns IP forwarding on and routes common traffic.
    A home-agent profile has no advertisement_address: 224.0.0.1."""
    flags = AdvertisementFlags.H
    if settings.reverse_tunneling is not ReverseTunneling.OFF:
        flags |= AdvertisementFlags.T
    if Encapsulation.MINIMAL in settings.encapsulations:
        flags |= AdvertisementFlags.M
    if Encapsulation.GRE in settings.encapsulations:
        flags |= AdvertisementFlags.G
    return AdvertiserConfig(
        routers=(IPv4Interface(f"{profile.address}/{profile.home_network.prefixlen}"),),
        flags=flags,
        registration_lifetime=min(settings.max_lifetime, INFINITE_REGISTRATION_LIFETIME),
        lifetime=profile.advertisement_lifetime,
        code=AdvertisementCode.ROUTES_COMMON_TRAFFIC,
        destination=ALL_SYSTEMS,
        interval=profile.advertisement_interval,
    )


class HomeAgentControl:
    """Answers mipctl for a home agent (mipd.control.handler.ControlHandler)."""

    def __init__(self, daemon: Daemon, engine: HomeAgent) -> None:
        self.daemon = daemon
        self.engine = engine

    async def status(self) -> JSONObject:
        return status_json(role="home-agent", instance=self.daemon.instance, uptime=self.daemon.uptime(),
                           backend=self.daemon.backend, bindings=len(self.engine.bindings))

    async def bindings(self) -> JSONObject:
        return bindings_json(self.engine.bindings, self.daemon.now())

    async def visitors(self) -> JSONObject:
        raise ControlError("a home agent has no visitor list; ask its foreign agents")

    async def stats(self) -> JSONObject:
        """CONTRACT 4's counters, plus the data plane's under ``data_plane`` (packets tunnelled,
        decapsulated, dropped by reason; ARP frames sent) and, when advertising, the agent
        advertisements' under ``advertisements``."""
        result = stats_json(self.engine.counters)
        result["counters"]["data_plane"] = self.daemon.dataplane.counters()
        if self.daemon.advertising is not None:
            result["counters"]["advertisements"] = self.daemon.advertising.counters()
        return result

    async def flush(self, home_address: IPv4Address) -> JSONObject:
        removed = len(self.engine.bindings.of(home_address))
        if not removed:
            raise ControlError(f"no binding for {home_address}")
        await self.daemon.run_actions(self.engine.flush(home_address, self.daemon.now()))
        return flush_json(home_address, removed)

    async def reload(self) -> JSONObject:
        return await self.daemon.reload()

    async def log_level(self, level: str) -> JSONObject:
        self.daemon.events.set_level(level)
        return {"log_level": level}
