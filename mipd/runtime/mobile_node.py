"""The mobile node's runtime: agent discovery on its link, link events, its registration socket,
its routing (away, home, co-located), and the control answers (RFC 5944 2.4, 3.6, 4.6)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
from ipaddress import IPv4Address, IPv4Interface

from mipd.adapters.link.mobile import HeardAdvertisement, MobileLink
from mipd.adapters.link.mobile_routing import MobileRouting
from mipd.adapters.netlink.monitor import LinkMonitor
from mipd.adapters.state.store import StateStore
from mipd.adapters.tunnel.backend import BackendError, BackendKind
from mipd.adapters.udp import NodeSocket
from mipd.config import AnyProfile, MobileNodeProfile, mobile_node_settings
from mipd.control.handler import ControlError, ControlHandler
from mipd.control.protocol import JSONObject
from mipd.control.shapes import stats_json, status_json
from mipd.core.actions import Action, Datagram, SendDatagram, SendIcmp
from mipd.core.mobile_node import MobileNode
from mipd.core.mobile_types import MIN_REGISTRATION_GAP
from mipd.core.names import EventName, Location
from mipd.core.planes import AnnounceHome, MobilePlane
from mipd.runtime.host import ActionTable, Host, Phase, StartError, Timed, drive, on
from mipd.runtime.role import HostControl

RESTART_KEYS = ("interface", "home_address", "home_network", "state_directory", "control_socket")
DEREGISTRATION_WAIT = 3.0  # seconds a stopping node waits for its deregistration to be answered, once sent


class MobileNodeRuntime:
    """The mobile node role (mipd.runtime.role.Role)."""

    def __init__(self, host: Host, profile: MobileNodeProfile) -> None:
        self.host = host
        self.profile = profile
        self.link = MobileLink(profile.interface, profile.home_address)
        self.monitor = LinkMonitor(profile.interface)
        self.routing = MobileRouting(profile.interface, profile.home_address, profile.home_network,
                                     router=bool(profile.mobile_networks))
        self.udp = NodeSocket(profile.interface)
        self.engine: MobileNode | None = None
        self._replied = asyncio.Event()
        self.timed: list[Timed] = []
        # The routing first (4.6: ARP on, then the gratuitous ARP), then the requests, so that a
        # deregistration from home leaves after the announcement.
        self.actions: ActionTable = dict([
            on(SendIcmp, Phase.NOW, self.link.solicit),
            on(MobilePlane, Phase.APPLY, self._route),
            on(AnnounceHome, Phase.APPLY, self.routing.announce_home),
            on(SendDatagram, Phase.ANNOUNCE, self.udp.send),
        ])

    @property
    def backend(self) -> BackendKind:
        return BackendKind.USERSPACE  # the co-located node decapsulates with a TUN device and raw sockets

    async def start(self, store: StateStore) -> None:
        profile, host = self.profile, self.host
        engine = self.engine = MobileNode(mobile_node_settings(profile), wall_clock=host.time_of_day,
                                          random32=lambda: secrets.randbits(32), random=random.random)
        self.timed.append(engine)
        engine.restore(store.load_mobile(engine.home_agent), host.now())
        try:
            self.routing.start()
            self.routing.apply(engine.plane())
            # RFC 3519: the registration socket is also the UDP tunnel's end (mipd.adapters.tunnel.colocated).
            tunnel = self.routing.tunnel
            tunnel.udp_send = self.udp.send_payload
            tunnel.on_echo_reply = self._on_echo_reply
            self.udp.tunnel_data = tunnel.tunnel_data
            self.udp.start(self._on_replies)
            self.link.start(drive(host, self._heard))
            self.monitor.start(self._on_link, self._on_addresses)
        except OSError as exc:
            raise StartError(f"interface {profile.interface}: {exc.strerror or exc}") from exc
        _up, addresses = self.monitor.snapshot()
        now = host.now()
        host.execute([*engine.addresses(addresses, now), *engine.start(now)])

    # --- inputs ---

    def _heard(self, heard: HeardAdvertisement, now: float) -> list[Action]:
        assert self.engine is not None
        return self.engine.advertisement(heard.advertisement, heard.source, heard.link_address, now)

    def _on_replies(self, batch: list[Datagram]) -> None:
        assert self.engine is not None
        now = self.host.now()
        actions = [action for datagram in batch for action in self.engine.reply(datagram, now)]
        self._replied.set()
        self.host.execute(actions)

    def _on_echo_reply(self, identifier: int, sequence: int) -> None:
        assert self.engine is not None
        self.host.execute(self.engine.keepalive_reply(identifier, sequence, self.host.now()))

    def _on_link(self, up: bool) -> None:
        assert self.engine is not None
        self.host.execute(self.engine.link(up, self.host.now()))

    def _on_addresses(self, addresses: list[IPv4Interface]) -> None:
        assert self.engine is not None
        self.host.execute(self.engine.addresses(addresses, self.host.now()))

    # --- the action table ---

    def _route(self, action: MobilePlane) -> None:
        try:
            self.routing.apply(action)
        except (BackendError, OSError) as exc:
            self.host.events.logger().error(EventName.DATAPLANE_FAILED, message=f"routing failed: {exc}",
                                            reason=str(exc))

    def settled(self) -> None:
        """After a turn's datagrams: what the routing left for then (MobileRouting.settle)."""
        try:
            self.routing.settle()
        except (BackendError, OSError) as exc:
            self.host.events.logger().error(EventName.DATAPLANE_FAILED, message=f"routing failed: {exc}",
                                            reason=str(exc))

    def started(self) -> tuple[str, str, dict[str, str]]:
        assert self.engine is not None
        message = f"mobile node {self.profile.home_address} on {self.profile.interface}, care_of {self.profile.care_of}"
        reason = f"backend {self.backend}: a co-located care-of address is decapsulated by mipd itself"
        return message, reason, {"home_address": str(self.profile.home_address),
                                 "home_agent": str(self.profile.home_agent)}

    def status_line(self) -> str:
        engine = self.engine
        if engine is None:
            return "starting"
        registered = engine.registration is not None
        return f"{engine.location}, {'registered' if registered else 'not registered'}"

    def reload(self, profile: AnyProfile) -> tuple[dict[str, object], list[str]]:
        if not isinstance(profile, MobileNodeProfile):
            raise ControlError(f"reload refused: the role cannot change from mobile-node to {profile.role}")
        assert self.engine is not None
        self.engine.settings = mobile_node_settings(profile)  # applies to the next registration
        restart_needed = [k for k in RESTART_KEYS if getattr(profile, k) != getattr(self.profile, k)]
        if bool(profile.mobile_networks) != bool(self.profile.mobile_networks):
            restart_needed.append("mobile_networks")  # host <-> router: ip_forward is set at start
        self.profile = profile
        return {}, restart_needed

    @property
    def control(self) -> ControlHandler:
        return MobileNodeControl(self.host, self)

    async def stop(self) -> None:
        """deregister_on_stop: deregister when away, waiting a little for the answer.

        Within a second of the last request the engine defers the deregistration (the
        once-a-second rule): the event loop, and with it the daemon's timer, keeps running here
        until it has been sent and answered, at most MIN_REGISTRATION_GAP + DEREGISTRATION_WAIT
        seconds, well inside the unit's TimeoutStopSec."""
        engine = self.engine
        if engine is None:
            return
        await self.host.commit(engine.stop(self.host.now()))
        if not engine.stop_pending:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._deregistered(engine), MIN_REGISTRATION_GAP + DEREGISTRATION_WAIT)
        await self.host.commit()

    async def _deregistered(self, engine: MobileNode) -> None:
        """Until the engine no longer waits for its deregistration (sent, then answered)."""
        while True:
            self._replied.clear()
            if not engine.stop_pending:
                return
            await self._replied.wait()

    def overload_counters(self) -> dict[str, int]:
        return {}

    def data_plane_counters(self) -> dict[str, int]:
        return self.routing.counters()

    def close(self) -> None:
        for part in (self.link, self.monitor, self.udp, self.routing):
            try:
                part.close()
            except OSError:
                continue


class MobileNodeControl(HostControl):
    """Answers mipctl for a mobile node (mipd.control.handler.ControlHandler)."""

    def __init__(self, host: Host, runtime: MobileNodeRuntime) -> None:
        super().__init__(host)
        self.runtime = runtime

    async def status(self) -> JSONObject:
        """mipctl(8) JSON OUTPUT: location home | away, agent, care_of_address, lifetime_remaining, registered;
        ``mobile_networks`` for a mobile router."""
        engine = self.runtime.engine
        assert engine is not None
        reg = engine.registration
        now = self.host.now()
        remaining = 0
        if reg is not None:
            remaining = 0xFFFF if math.isinf(reg.expires) else max(0, math.ceil(reg.expires - now))
        agent = reg.agent.address if reg is not None and reg.agent is not None else None
        where = "home" if engine.location == Location.HOME else "away"
        result = status_json(role="mobile-node", instance=self.host.instance, uptime=self.host.uptime(),
                             backend=self.runtime.backend, location=where,
                             agent=agent, care_of_address=reg.care_of_address if reg is not None else None,
                             lifetime_remaining=remaining, registered=reg is not None,
                             home_agent=engine.home_agent, udp_tunnel=engine.udp_tunnel)
        if engine.mobile_router:  # RFC 5177: the prefixes the home agent serves now; absent for a host
            result["mobile_networks"] = [str(n) for n in engine.mobile_networks]
        return result

    async def bindings(self) -> JSONObject:
        raise ControlError("a mobile node has no binding list; ask its home agent (mipctl status shows its own)")

    async def visitors(self) -> JSONObject:
        raise ControlError("a mobile node has no visitor list; ask the foreign agent")

    async def stats(self) -> JSONObject:
        engine = self.runtime.engine
        assert engine is not None
        result = stats_json(engine.counters)
        result["counters"]["routing"] = self.runtime.routing.counters()
        result["counters"]["link"] = self.runtime.link.counters()
        result["counters"]["state"] = self.host.state_counters()
        return result

    async def flush(self, home_address: IPv4Address) -> JSONObject:
        raise ControlError("a mobile node has nothing to flush; stop it to deregister")
