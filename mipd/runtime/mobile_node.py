"""The mobile node's runtime: agent discovery on its link, link events, its registration socket,
its routing (away, home, co-located), and the control answers (RFC 5944 2.4, 3.6, 4.6)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import socket
import struct
from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING

from mipd.adapters.link.mobile import HeardAdvertisement, MobileLink
from mipd.adapters.link.mobile_routing import MobileRouting
from mipd.adapters.netlink.monitor import LinkMonitor
from mipd.config import AnyProfile, MobileNodeProfile, mobile_node_settings
from mipd.control.handler import ControlError, ControlHandler
from mipd.control.protocol import JSONObject
from mipd.control.shapes import stats_json, status_json
from mipd.core.actions import Action, Datagram, SendDatagram, SendIcmp
from mipd.core.mobile_node import MobileNode
from mipd.core.mobile_types import MIN_REGISTRATION_GAP
from mipd.core.planes import AnnounceHome, MobilePlane
from mipd.runtime.role import DaemonControl, StartError, Timed

if TYPE_CHECKING:
    from mipd.runtime.daemon import Daemon

RESTART_KEYS = ("interface", "home_address", "home_network", "state_directory", "control_socket")
DEREGISTRATION_WAIT = 3.0  # seconds a stopping node waits for its deregistration to be answered, once sent
MAX_DATAGRAM = 65535
IP_PKTINFO = 8  # <linux/in.h>; the socket module has the name only from Python 3.12


class RegistrationSocket:
    """The node's UDP socket: any local address, bound to its interface; each request leaves
    from the source the engine chose (home or co-located address, IP_PKTINFO) with its TTL."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.sock: socket.socket | None = None
        self.send_errors = 0

    def start(self, deliver: object) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.bind(("0.0.0.0", 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain, deliver)

    def _drain(self, deliver: object) -> None:
        assert self.sock is not None
        batch: list[Datagram] = []
        for _ in range(64):
            try:
                data, (host, port) = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            batch.append(Datagram(data, IPv4Address(host), port, IPv4Address(0)))
        if batch:
            deliver(batch)  # type: ignore[operator]

    def send(self, action: SendDatagram) -> None:
        if self.sock is None:
            return
        try:
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, action.ttl or 64)
            info = struct.pack("I4s4s", 0, action.source.packed, b"\0" * 4)  # ipi_spec_dst: the source
            self.sock.sendmsg([action.payload], [(socket.IPPROTO_IP, IP_PKTINFO, info)],
                               0, (str(action.destination), action.destination_port))
        except OSError:
            self.send_errors += 1  # e.g. no route yet: the engine retransmits

    def close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


class MobileNodeRuntime:
    """The mobile node role (mipd.runtime.role.Role)."""

    def __init__(self, daemon: Daemon, profile: AnyProfile) -> None:
        if not isinstance(profile, MobileNodeProfile):
            raise StartError(f"no runtime for the {profile.role} role")
        self.daemon = daemon
        self.profile = profile
        self.link = MobileLink(profile.interface, profile.home_address)
        self.monitor = LinkMonitor(profile.interface)
        self.routing = MobileRouting(profile.interface, profile.home_address, profile.home_network)
        self.udp = RegistrationSocket(profile.interface)
        self.engine: MobileNode | None = None
        self._replied = asyncio.Event()

    @property
    def backend(self) -> str:
        return "userspace"  # the co-located node decapsulates with a TUN device and raw sockets

    async def start(self) -> None:
        profile, daemon = self.profile, self.daemon
        engine = self.engine = MobileNode(mobile_node_settings(profile), wall_clock=daemon.time_of_day,
                                          random32=lambda: secrets.randbits(32), random=random.random)
        engine.restore(daemon.store.load_mobile(), daemon.now())
        try:
            self.routing.start()
            self.routing.apply(engine.plane())
            self.udp.start(self._on_replies)
            self.link.start(self._on_advertisements)
            self.monitor.start(self._on_link, self._on_addresses)
        except OSError as exc:
            raise StartError(f"interface {profile.interface}: {exc.strerror or exc}") from exc
        _up, addresses = self.monitor.snapshot()
        now = daemon.now()
        daemon.execute([*engine.addresses(addresses, now), *engine.start(now)])

    # --- inputs ---

    def _on_advertisements(self, batch: list[HeardAdvertisement]) -> None:
        assert self.engine is not None
        now = self.daemon.now()
        actions: list[Action] = []
        for heard in batch:
            actions += self.engine.advertisement(heard.advertisement, heard.source, heard.link_address, now)
        self.daemon.execute(actions)

    def _on_replies(self, batch: list[Datagram]) -> None:
        assert self.engine is not None
        now = self.daemon.now()
        actions: list[Action] = []
        for datagram in batch:
            actions += self.engine.reply(datagram, now)
        self._replied.set()
        self.daemon.execute(actions)

    def _on_link(self, up: bool) -> None:
        assert self.engine is not None
        self.daemon.execute(self.engine.link(up, self.daemon.now()))

    def _on_addresses(self, addresses: list[IPv4Interface]) -> None:
        assert self.engine is not None
        self.daemon.execute(self.engine.addresses(addresses, self.daemon.now()))

    # --- the Role protocol ---

    def timed(self) -> list[Timed]:
        return [self.engine] if self.engine is not None else []

    def send_now(self, action: Action) -> None:
        if isinstance(action, SendIcmp):
            self.link.solicit(action)

    def after_commit(self, actions: list[Action], replies: bool) -> None:
        """In the engine's order: routing first (4.6: ARP on, then the gratuitous ARP), then the
        requests, so a deregistration from home leaves after the announcement."""
        for action in actions:
            if isinstance(action, MobilePlane):
                try:
                    self.routing.apply(action)
                except OSError as exc:
                    self.daemon.events.logger().error("dataplane.failed", message=f"routing failed: {exc}",
                                                      reason=str(exc))
            elif isinstance(action, AnnounceHome):
                self.routing.announce_home(action)
            elif isinstance(action, SendDatagram) and replies:
                self.udp.send(action)

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
        self.profile = profile
        return {}, restart_needed

    @property
    def control(self) -> ControlHandler:
        return MobileNodeControl(self.daemon, self)

    async def stop(self) -> None:
        """deregister_on_stop: deregister when away, waiting a little for the answer.

        Within a second of the last request the engine defers the deregistration (the
        once-a-second rule): the event loop, and with it the daemon's timer, keeps running here
        until it has been sent and answered, at most MIN_REGISTRATION_GAP + DEREGISTRATION_WAIT
        seconds, well inside the unit's TimeoutStopSec."""
        engine = self.engine
        if engine is None:
            return
        self.daemon.execute(engine.stop(self.daemon.now()))
        await self.daemon.flush_now()
        if not engine.stop_pending:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._deregistered(engine), MIN_REGISTRATION_GAP + DEREGISTRATION_WAIT)
        await self.daemon.flush_now()

    async def _deregistered(self, engine: MobileNode) -> None:
        """Until the engine no longer waits for its deregistration (sent, then answered)."""
        while True:
            self._replied.clear()
            if not engine.stop_pending:
                return
            await self._replied.wait()

    def data_plane_counters(self) -> dict[str, int]:
        return self.routing.counters()

    def close(self) -> None:
        for part in (self.link, self.monitor, self.udp, self.routing):
            try:
                part.close()
            except OSError:
                continue


class MobileNodeControl(DaemonControl):
    """Answers mipctl for a mobile node (mipd.control.handler.ControlHandler)."""

    def __init__(self, daemon: Daemon, runtime: MobileNodeRuntime) -> None:
        super().__init__(daemon)
        self.runtime = runtime

    async def status(self) -> JSONObject:
        """mipctl(8) JSON OUTPUT: location home | away, agent, care_of_address, lifetime_remaining, registered."""
        engine = self.runtime.engine
        assert engine is not None
        reg = engine.registration
        now = self.daemon.now()
        remaining = 0
        if reg is not None:
            remaining = 0xFFFF if math.isinf(reg.expires) else max(0, math.ceil(reg.expires - now))
        agent = reg.agent.address if reg is not None and reg.agent is not None else None
        return status_json(role="mobile-node", instance=self.daemon.instance, uptime=self.daemon.uptime(),
                           backend=self.runtime.backend, location="home" if engine.location == "home" else "away",
                           agent=agent, care_of_address=reg.care_of_address if reg is not None else None,
                           lifetime_remaining=remaining, registered=reg is not None,
                           home_agent=engine.home_agent)

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
        return result

    async def flush(self, home_address: IPv4Address) -> JSONObject:
        raise ControlError("a mobile node has nothing to flush; stop it to deregister")
