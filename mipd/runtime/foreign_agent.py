"""The foreign agent's runtime: the visited link, the relay socket, visitor delivery,
advertisements with F, and the control answers (RFC 5944 3.7, 2.1, 4.2.2)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface

from mipd.adapters.link.visited import VisitedLink
from mipd.adapters.netlink import calls as netlink
from mipd.adapters.relay import RelaySocket
from mipd.adapters.state.store import StateStore
from mipd.adapters.sysctl import HostSettings
from mipd.adapters.tunnel.backend import BackendError, BackendKind, VisitorBackend
from mipd.adapters.tunnel.choose import visitor_backend
from mipd.config import AnyProfile, ForeignAgentProfile, foreign_agent_settings
from mipd.control.handler import ControlError, ControlHandler
from mipd.control.protocol import JSONObject
from mipd.control.shapes import flush_json, stats_json, status_json, visitor_json, visitors_json
from mipd.core.actions import Action, SendDatagram, SendIcmp, SendToNode
from mipd.core.advertiser import AdvertiserConfig, foreign_agent_advertisement
from mipd.core.foreign_agent import ForeignAgent, ForeignAgentSettings
from mipd.core.names import EventName, VisitorState
from mipd.core.planes import VisitorPlane
from mipd.core.visitors import Visitor
from mipd.core.wire.arp import mac_text
from mipd.runtime.advertising import Advertising
from mipd.runtime.host import ActionTable, Host, Phase, StartError, Timed, drive, on
from mipd.runtime.role import HostControl

RESTART_KEYS = ("interface", "care_of_address", "state_directory", "control_socket")


def advertisement(profile: ForeignAgentProfile, engine: ForeignAgent,
                  routers: tuple[IPv4Interface, ...]) -> AdvertiserConfig:
    """The visited link's advertisements (mipd.core.advertiser decides their contents, the engine
    whether it is busy)."""
    return foreign_agent_advertisement(
        engine.settings, routers, registration_required=profile.registration_required, busy=engine.busy,
        destination=IPv4Address(profile.advertisement_address), lifetime=profile.advertisement_lifetime,
        interval=profile.advertisement_interval, udp_tunnelling=engine.advertises_udp_tunnelling)


class ForeignAgentRuntime:
    """The foreign agent role (mipd.runtime.role.Role)."""

    def __init__(self, host: Host, profile: ForeignAgentProfile) -> None:
        self.host = host
        self.profile = profile
        self.host_settings = HostSettings()
        self.relay = RelaySocket(profile.care_of_address)
        self.link: VisitedLink | None = None
        self.visitor_backend: VisitorBackend | None = None
        self.reason = ""
        self.host_report = ""
        self.advertising: Advertising | None = None
        self.engine: ForeignAgent | None = None
        self.routers: tuple[IPv4Interface, ...] = ()
        self.failures = 0
        self.timed: list[Timed] = []
        self.actions: ActionTable = dict([
            on(SendIcmp, Phase.NOW, self._advertise),  # announces no state: not held back for the commit
            on(VisitorPlane, Phase.APPLY, self._deliver),  # a visitor told it is registered can be reached
            on(SendDatagram, Phase.ANNOUNCE, self._relay),
            on(SendToNode, Phase.ANNOUNCE, self._to_node),
        ])

    @property
    def backend(self) -> BackendKind:
        return self.visitor_backend.name if self.visitor_backend is not None else BackendKind.NONE

    async def start(self, store: StateStore) -> None:
        profile, host = self.profile, self.host
        try:
            self.routers = tuple(netlink.interface_addresses(profile.interface))
        except OSError as exc:
            raise StartError(f"interface {profile.interface}: {exc}") from exc
        if profile.care_of_address not in {r.ip for r in self.routers}:
            raise StartError(f"care_of_address {profile.care_of_address} is not an address of {profile.interface}")
        try:
            self.host_report = self.host_settings.apply(profile.interface)
            self.visitor_backend, self.reason = visitor_backend(profile.tunnel.backend)
            self.visitor_backend.start(profile.care_of_address, profile.interface)
        except (BackendError, OSError) as exc:
            raise StartError(f"data plane: {exc}") from exc
        engine = self.engine = ForeignAgent(self._settings(profile), wall_clock=host.time_of_day)
        self.timed.append(engine)
        host.execute(engine.restore(store.load_visitors(), host.now()))
        try:
            self.visitor_backend.reconcile(engine.data_plane())
        except (BackendError, OSError) as exc:
            raise StartError(f"data plane: cannot reinstall the restored visitors: {exc}") from exc
        self.link = VisitedLink(profile.interface, accepted=frozenset(r.ip for r in self.routers))
        try:
            self.link.start(drive(host, engine.from_node))
            self.visitor_backend.set_udp_sender(self.relay.send_to)
            self.relay.start(drive(host, engine.from_home_agent), self._on_relay_error,
                             self.visitor_backend.from_udp_tunnel)
        except OSError as exc:
            raise StartError(f"cannot serve the visited link {profile.interface}: {exc.strerror or exc}") from exc
        self.advertising = Advertising(advertisement(profile, engine, self.routers), profile.interface,
                                       profile.care_of_address, host)
        self.timed.append(self.advertising)
        try:
            self.advertising.start()
        except OSError as exc:
            raise StartError(f"cannot advertise on {profile.interface}: {exc.strerror or exc}") from exc

    def _settings(self, profile: ForeignAgentProfile) -> ForeignAgentSettings:
        """What the running backend cannot receive is not offered (72)."""
        settings = foreign_agent_settings(profile, frozenset(r.ip for r in self.routers))
        can = self.visitor_backend.encapsulations if self.visitor_backend is not None else frozenset()
        udp = self.visitor_backend is not None and self.visitor_backend.udp_tunnelling
        return replace(settings, encapsulations=settings.encapsulations & can,
                       nat_traversal=settings.nat_traversal and udp)

    # --- inputs ---

    def _on_relay_error(self, payload: bytes, icmp_type: int, icmp_code: int) -> None:
        assert self.engine is not None
        self.host.execute(self.engine.relay_failed(payload, icmp_type, icmp_code, self.host.now()))

    # --- the action table ---

    def _advertise(self, action: SendIcmp) -> None:
        if self.advertising is not None:
            self.advertising.send(action)

    def _deliver(self, action: VisitorPlane) -> None:
        assert self.visitor_backend is not None
        try:
            self.visitor_backend.apply(action)
        except (BackendError, OSError) as exc:
            self.failures += 1
            self.host.events.logger().error(
                EventName.DATAPLANE_FAILED, message=f"delivery to {action.home_address} failed: {exc}",
                reason=str(exc), home_address=str(action.home_address))

    def _relay(self, action: SendDatagram) -> list[Action]:
        error = self.relay.send(action)
        if error is None or self.engine is None:
            return []
        return self.engine.relay_unreachable(action.payload, error.errno, self.host.now())

    def _to_node(self, action: SendToNode) -> None:
        assert self.link is not None
        self.link.send(action)

    def settled(self) -> None:
        self._readvertise()

    def _readvertise(self) -> None:
        """Advertise what the engine now says (B while it is busy: a busy agent keeps advertising, 2.1.1)."""
        if self.engine is None or self.advertising is None:
            return
        config = advertisement(self.profile, self.engine, self.routers)
        if config != self.advertising.config:
            self.advertising.reconfigure(config)

    def started(self) -> tuple[str, str, dict[str, str]]:
        assert self.engine is not None
        offered = ",".join(sorted(self.engine.settings.encapsulations))
        message = (f"serving care-of address {self.profile.care_of_address} on {self.profile.interface} with "
                   f"{len(self.engine.visitors)} restored visitors; tunnel backend {self.backend} ({offered})")
        udp = "UDP tunnelling offered to home agents (RFC 3519, through the relay socket)" \
            if self.engine.settings.nat_traversal else "no UDP tunnelling"
        reason = f"backend {self.backend}: {self.reason}; {udp}; host: {self.host_report}"
        return message, reason, {"foreign_agent": str(self.profile.care_of_address)}

    def status_line(self) -> str:
        visitors = len(self.engine.visitors) if self.engine is not None else 0
        return f"{visitors} visitors, backend {self.backend}"

    def reload(self, profile: AnyProfile) -> tuple[dict[str, object], list[str]]:
        """Associations and limits apply to the next request; current visitors stay."""
        if not isinstance(profile, ForeignAgentProfile):
            raise ControlError(f"reload refused: the role cannot change from foreign-agent to {profile.role}")
        assert self.engine is not None
        settings = self._settings(profile)
        self.engine.reconfigure(settings)
        if self.advertising is not None:
            self.advertising.reconfigure(advertisement(profile, self.engine, self.routers))
        restart_needed = [k for k in RESTART_KEYS if getattr(profile, k) != getattr(self.profile, k)]
        self.profile = profile
        return {"home_agents": len(settings.home_agents)}, restart_needed

    @property
    def control(self) -> ControlHandler:
        assert self.engine is not None
        return ForeignAgentControl(self.host, self, self.engine)

    async def stop(self) -> None:
        """Nothing to say before closing: bindings and visitors stay on record for the restart."""

    def overload_counters(self) -> dict[str, int]:
        return {}

    def data_plane_counters(self) -> dict[str, int]:
        return self.visitor_backend.counters() if self.visitor_backend is not None else {}

    def close(self) -> None:
        for part in (self.link, self.relay, self.advertising, self.visitor_backend):
            if part is not None:
                try:
                    part.close()
                except (OSError, BackendError):
                    self.failures += 1
        self.host_settings.restore()


def _visitor(visitor: Visitor, now: float) -> JSONObject:
    active = visitor.state == VisitorState.ACTIVE
    return visitor_json(home_address=visitor.home_address, home_agent=visitor.home_agent,
                        care_of_address=visitor.care_of_address, link_address=mac_text(visitor.link_address),
                        state=visitor.state,
                        lifetime_granted=visitor.lifetime_granted if active else 0,
                        lifetime_remaining=visitor.remaining(now) if active else 0, flags=visitor.flags,
                        udp_tunnel=visitor.udp_tunnel)


class ForeignAgentControl(HostControl):
    """Answers mipctl for a foreign agent (mipd.control.handler.ControlHandler)."""

    def __init__(self, host: Host, runtime: ForeignAgentRuntime, engine: ForeignAgent) -> None:
        super().__init__(host)
        self.runtime = runtime
        self.engine = engine

    async def status(self) -> JSONObject:
        return status_json(role="foreign-agent", instance=self.host.instance, uptime=self.host.uptime(),
                           backend=self.runtime.backend, visitors=len(self.engine.visitors),
                           care_of_address=self.runtime.profile.care_of_address)

    async def bindings(self) -> JSONObject:
        raise ControlError("a foreign agent has no mobility bindings; see mipctl visitors, or ask the home agent")

    async def visitors(self) -> JSONObject:
        now = self.host.now()
        entries = sorted(self.engine.visitors.all_active() + self.engine.visitors.all_pending(),
                         key=lambda v: (v.home_address, v.state != VisitorState.ACTIVE, v.expires))
        return visitors_json(_visitor(v, now) for v in entries)

    async def stats(self) -> JSONObject:
        """The counters of ``mipctl stats`` (mipctl(8) JSON OUTPUT; ``relayed`` counts requests relayed
        to home agents), plus the visited link's, the relay socket's, the data plane's and the
        advertisements'."""
        result = stats_json(self.engine.counters, relayed=self.engine.counters.relayed)
        counters = result["counters"]
        if self.runtime.visitor_backend is not None:
            counters["data_plane"] = self.runtime.visitor_backend.counters()
        if self.runtime.link is not None:
            counters["visited_link"] = self.runtime.link.counters()
        counters["relay"] = self.runtime.relay.counters()
        if self.runtime.advertising is not None:
            counters["advertisements"] = self.runtime.advertising.counters()
        counters["state"] = self.host.state_counters()
        return result

    async def flush(self, home_address: IPv4Address) -> JSONObject:
        current = self.engine.visitors.active(home_address)
        removed = (current is not None) + len(self.engine.visitors.pending(home_address))
        if not removed:
            raise ControlError(f"no visitor entry for {home_address}")
        await self.host.commit(self.engine.flush(home_address, self.host.now()))
        return flush_json(home_address, removed)
