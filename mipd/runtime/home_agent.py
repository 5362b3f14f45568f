"""The home agent's runtime: engine, UDP 434, data plane, advertisements and control answers."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address

from mipd.adapters.state.store import StateStore
from mipd.adapters.tunnel.backend import BackendError, BackendKind
from mipd.adapters.tunnel.udp_tunnel import is_tunnel_data
from mipd.adapters.udp import Listen, RegistrationEndpoints
from mipd.config import AnyProfile, HomeAgentProfile, home_agent_settings
from mipd.control.handler import ControlError, ControlHandler
from mipd.control.protocol import JSONObject
from mipd.control.shapes import bindings_json, flush_json, stats_json, status_json
from mipd.core.actions import AdmitSources, Datagram, DropSource, Priority, SendDatagram, SendIcmp
from mipd.core.advertiser import AdvertiserConfig, home_agent_advertisement
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.core.names import DiscardReason, EventName
from mipd.core.planes import DataPlane
from mipd.core.wire import identification as ident
from mipd.runtime.advertising import Advertising
from mipd.runtime.home_plane import HomeAgentDataPlane
from mipd.runtime.host import ActionTable, Host, Phase, StartError, Timed, drive, on
from mipd.runtime.role import HostControl

RESTART_KEYS = ("address", "interface", "home_network", "state_directory", "control_socket", "advertise")


def listens(profile: HomeAgentProfile) -> list[Listen]:
    """UDP 434 on our address, the home subnet broadcast and 255.255.255.255 on the home link
    (requests sent to either broadcast are answered with 136, RFC 5944 3.8.2.1 e)."""
    return [
        Listen(profile.address),
        Listen(profile.home_network.broadcast_address, profile.interface),
        Listen(IPv4Address("255.255.255.255"), profile.interface),
    ]


def advertisement(profile: HomeAgentProfile, settings: HomeAgentSettings) -> AdvertiserConfig:
    """The home link's advertisements (mipd.core.advertiser decides their contents)."""
    return home_agent_advertisement(settings, lifetime=profile.advertisement_lifetime,
                                    interval=profile.advertisement_interval)


class HomeAgentRuntime:
    """The home agent role (mipd.runtime.role.Role)."""

    def __init__(self, host: Host, profile: HomeAgentProfile) -> None:
        self.host = host
        self.profile = profile
        self.dataplane = HomeAgentDataPlane(profile.tunnel.backend, profile.interface, profile.home_network)
        self.udp = RegistrationEndpoints()
        self.advertising: Advertising | None = None
        self.engine: HomeAgent | None = None
        self.timed: list[Timed] = []
        self.actions: ActionTable = dict([
            on(SendIcmp, Phase.NOW, self._advertise),  # announces no state: not held back for the commit
            on(DropSource, Phase.NOW, self._drop_source),  # a repeat offender, dropped in the kernel
            on(AdmitSources, Phase.NOW, self._admit),  # under a flood from spoofed sources
            on(DataPlane, Phase.APPLY, self._apply, many=self._apply_many),  # a turn's changes: one batch
            on(SendDatagram, Phase.ANNOUNCE, self.udp.send),
        ])

    @property
    def backend(self) -> BackendKind:
        return self.dataplane.name

    async def start(self, store: StateStore) -> None:
        profile, host = self.profile, self.host
        try:
            self.dataplane.start(profile.address, self._send_tunnel_data)
        except (BackendError, OSError) as exc:
            raise StartError(f"data plane: {exc}") from exc
        records = store.load()
        # Our time of day is never behind a timestamp we accepted (mipd/runtime/clock.py).
        accepted = [ident.to_unix(r.replay.last_identification) for r in records
                    if r.replay.last_identification is not None]
        host.time_of_day.at_least(max(accepted, default=0.0))
        engine = self.engine = HomeAgent(self._settings(profile), wall_clock=host.time_of_day,
                                         random32=lambda: secrets.randbits(32),
                                         debug_events=lambda: host.events.enabled(Priority.DEBUG))
        self.timed.append(engine)
        host.execute(engine.restore(records, host.now()))
        try:
            self.dataplane.reconcile(engine.data_plane())
        except (BackendError, OSError) as exc:
            raise StartError(f"data plane: cannot reinstall the restored bindings: {exc}") from exc
        self.udp.shed, self.udp.on_shed = engine.budget.over, engine.count_shed  # overload: before any decoding
        try:
            self.udp.open(listens(profile), self._dispatch(drive(host, engine.receive)))
        except OSError as exc:
            raise StartError(f"cannot serve UDP 434 on {profile.address}: {exc.strerror or exc}") from exc
        if profile.advertise:  # RFC 5944 2.3: agent advertisements with H on the home link
            self.advertising = Advertising(advertisement(profile, engine.settings), profile.interface,
                                           profile.address, host)
            self.timed.append(self.advertising)
            try:
                self.advertising.start()
            except OSError as exc:
                raise StartError(f"cannot advertise on {profile.interface}: {exc.strerror or exc}") from exc

    def _send_tunnel_data(self, payload: bytes, destination: IPv4Address, port: int) -> bool:
        """The UDP tunnel plane's datagrams leave from our port-434 socket (RFC 3519 3.3)."""
        return self.udp.send_tunnel_data(payload, self.profile.address, destination, port)

    def _dispatch(self, registrations: Callable[[list[Datagram]], None]) -> Callable[[list[Datagram]], None]:
        """UDP port 434's batches: Tunnel Data messages (type 4) straight to the UDP tunnel plane,
        never through the engine; the rest to ``registrations``."""
        address, plane = self.profile.address, self.dataplane.udp

        def deliver(batch: list[Datagram]) -> None:
            messages = []
            for datagram in batch:
                if not is_tunnel_data(datagram.payload):
                    messages.append(datagram)
                elif datagram.destination == address:
                    plane.receive(datagram.payload, datagram.source, datagram.source_port)
                else:
                    plane.drop_other_destination()
            if messages:
                registrations(messages)

        return deliver

    def _settings(self, profile: HomeAgentProfile) -> HomeAgentSettings:
        """The engine's settings: what the running backend cannot carry is not offered (139), and
        without the UDP tunnel plane no UDP tunnelling is granted."""
        settings = home_agent_settings(profile)
        settings = replace(settings, encapsulations=self.dataplane.encapsulations(settings.encapsulations),
                           mobile_network_nesting=self.dataplane.mobile_network_nesting)
        if self.dataplane.udp_unavailable:  # no UDP tunnel plane: never assent to RFC 3519 tunnelling
            settings = replace(settings, nat_traversal="off")
        return settings

    # --- the action table ---

    def _drop_source(self, action: DropSource) -> None:
        self.udp.drop_until(action.source, action.until)

    def _admit(self, action: AdmitSources) -> None:
        self.udp.admit(action.known, action.fraction)

    def _advertise(self, action: SendIcmp) -> None:
        if self.advertising is not None:
            self.advertising.send(action)

    def _apply(self, plane: DataPlane) -> None:
        self._apply_many([plane])

    def _apply_many(self, planes: list[DataPlane]) -> None:
        """A turn's data plane changes, their netlink work batched. A failure is reported per binding,
        never raised (the next change, and the next start's reconciliation, run)."""
        for error in self.dataplane.apply(planes):
            self.host.events.logger().error(EventName.DATAPLANE_FAILED, message=f"data plane change failed: {error}",
                                            reason=error)

    def settled(self) -> None:
        """Nothing to re-check after a turn."""

    def started(self) -> tuple[str, str, dict[str, str]]:
        assert self.engine is not None
        offered = ",".join(sorted(self.engine.settings.encapsulations))
        message = (f"serving {self.profile.address} with {len(self.engine.bindings)} restored bindings; "
                   f"tunnel backend {self.backend} ({offered})")
        if self.profile.nat_traversal != "off" and not self.dataplane.udp_unavailable:
            message += "; UDP tunnels (RFC 3519) use the userspace data plane"
        elif self.profile.nat_traversal != "off":
            message += f"; no UDP tunnels (RFC 3519): {self.dataplane.udp_unavailable}"
        reason = f"backend {self.backend}: {self.dataplane.reason}; host: {self.dataplane.host_report}"
        return message, reason, {"home_agent": str(self.profile.address)}

    def status_line(self) -> str:
        bindings = len(self.engine.bindings) if self.engine is not None else 0
        return f"{bindings} bindings, backend {self.backend}"

    def reload(self, profile: AnyProfile) -> tuple[dict[str, object], list[str]]:
        """SAs added, removed or re-keyed apply to the next request; live bindings stay."""
        if not isinstance(profile, HomeAgentProfile):
            raise ControlError(f"reload refused: the role cannot change from home-agent to {profile.role}")
        assert self.engine is not None
        settings = self._settings(profile)
        self.engine.reconfigure(settings)
        if self.advertising is not None:
            self.advertising.reconfigure(advertisement(profile, settings))
        restart_needed = [k for k in RESTART_KEYS if getattr(profile, k) != getattr(self.profile, k)]
        self.profile = profile
        return {"mobile_nodes": len(settings.mobile_nodes)}, restart_needed

    @property
    def control(self) -> ControlHandler:
        assert self.engine is not None
        return HomeAgentControl(self.host, self, self.engine)

    async def stop(self) -> None:
        """Nothing to say before closing: bindings and visitors stay on record for the restart."""

    def data_plane_counters(self) -> dict[str, int]:
        return self.dataplane.counters()

    def overload_counters(self) -> dict[str, int]:
        """The requests shed under overload, as ``dropped_<reason>`` (mipd(8) "Overload protection")."""
        if self.engine is None:
            return {}
        dropped = self.engine.counters.dropped
        return {"dropped_source_over_budget": dropped[DiscardReason.SOURCE_OVER_BUDGET],
                "dropped_reply_rate_limited": dropped[DiscardReason.REPLY_RATE_LIMITED],
                "dropped_socket_queue": self.udp.kernel_drops()}

    def close(self) -> None:
        self.udp.close()
        if self.advertising is not None:
            self.advertising.close()
        self.dataplane.close()


class HomeAgentControl(HostControl):
    """Answers mipctl for a home agent (mipd.control.handler.ControlHandler)."""

    def __init__(self, host: Host, runtime: HomeAgentRuntime, engine: HomeAgent) -> None:
        super().__init__(host)
        self.runtime = runtime
        self.engine = engine

    async def status(self) -> JSONObject:
        return status_json(role="home-agent", instance=self.host.instance, uptime=self.host.uptime(),
                           backend=self.runtime.backend, bindings=len(self.engine.bindings))

    async def bindings(self) -> JSONObject:
        return bindings_json(self.engine.bindings, self.host.now())

    async def visitors(self) -> JSONObject:
        raise ControlError("a home agent has no visitor list; ask its foreign agents")

    async def stats(self) -> JSONObject:
        """The counters of ``mipctl stats`` (mipctl(8) JSON OUTPUT), plus the data plane's under
        ``data_plane`` (packets tunnelled, decapsulated, dropped by reason; ARP frames sent) and, when
        advertising, the agent advertisements' under ``advertisements``."""
        result = stats_json(self.engine.counters)
        if drops := self.runtime.udp.kernel_drops():  # before mipd read them: never "received"
            result["counters"]["dropped"]["socket_queue"] = drops
        result["counters"]["data_plane"] = self.runtime.dataplane.counters()
        if self.runtime.advertising is not None:
            result["counters"]["advertisements"] = self.runtime.advertising.counters()
        result["counters"]["state"] = self.host.state_counters()
        return result

    async def flush(self, home_address: IPv4Address) -> JSONObject:
        removed = len(self.engine.bindings.of(home_address))
        if not removed:
            raise ControlError(f"no binding for {home_address}")
        await self.host.commit(self.engine.flush(home_address, self.host.now()))
        return flush_json(home_address, removed)
