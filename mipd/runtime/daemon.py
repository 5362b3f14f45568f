"""``mipd run``: one instance's event loop, wiring profile, engine and adapters.

The engine is driven as aioquic drives a connection: datagrams and timer expiries go in, actions
come out, and one ``loop.call_at`` timer is re-armed to the earliest ``next_timer()`` of the timed
components: the engine and, when the profile advertises, the agent advertisements. Actions
of one loop turn are executed together at its end: every node change is committed to the state
file in one transaction (group commit), and only then are the replies sent (CONTRACT section 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from mipd.adapters.dataplane import BackendError
from mipd.adapters.state import StateError, StateStore
from mipd.adapters.udp import RegistrationEndpoints
from mipd.config import AnyProfile, HomeAgentProfile, ProfileError, home_agent_settings, load_profile
from mipd.control.handler import ControlError
from mipd.control.protocol import JSONObject
from mipd.control.server import ControlServer, ControlSocketError
from mipd.core.actions import Action, Datagram, Emit, PersistNode, Priority, SendDatagram, SendIcmp
from mipd.core.dataplane import DataPlane
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.obs import EventLog, configure, notify
from mipd.runtime import home_agent as ha_runtime
from mipd.runtime.advertising import Advertising
from mipd.runtime.dataplane import HomeAgentDataPlane


class Timed(Protocol):
    """A component driven by the daemon's one timer: the engine, the advertisements."""

    def next_timer(self) -> float | None: ...

    def on_timer(self, now: float) -> Sequence[Action]: ...


class StartError(Exception):
    """The instance cannot start; the message says why, for stderr and the journal."""


class Daemon:
    """One running instance. :meth:`run` returns the process exit status."""

    def __init__(self, profile_path: Path, instance: str | None = None) -> None:
        self.profile_path = profile_path
        self.instance = instance or profile_path.name.removesuffix(".yaml")
        self.backend = "none"
        self.events: EventLog = configure(self.instance, "unknown")
        self._started = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._persist: list[PersistNode] = []
        self._send: list[SendDatagram] = []
        self._planes: list[DataPlane] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flushed: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._stop = asyncio.Event()
        self.advertising: Advertising | None = None
        self.commit_failures = 0

    # --- clocks ---

    def now(self) -> float:
        """The engine's clock: the event loop's monotonic time."""
        assert self._loop is not None
        return self._loop.time()

    def uptime(self) -> float:
        return time.monotonic() - self._started

    # --- life cycle ---

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        try:
            profile = self._load()
        except ProfileError as error:
            for problem in error.problems:
                print(problem, file=sys.stderr)
            self._emit("config.rejected", f"profile {self.profile_path} is invalid", Priority.ERR,
                       reason="; ".join(str(p) for p in error.problems[:5]))
            return 1
        if not isinstance(profile, HomeAgentProfile):
            print(f"mipd: the {profile.role} role cannot run yet: only the home agent engine is built",
                  file=sys.stderr)
            return 1
        self.profile = profile
        self.events = configure(self.instance, profile.role, profile.log_level)
        try:
            await self._start(profile)
        except StartError as error:
            print(f"mipd: {error}", file=sys.stderr)
            self.events.logger().error("daemon.failed", message=f"{self.instance} cannot start: {error}")
            await self._shutdown()
            return 1
        await self._stop.wait()
        self._emit("daemon.stopping", f"{self.instance} stopping")
        notify.stopping()
        await self._shutdown()
        return 0

    def _load(self) -> AnyProfile:
        return load_profile(self.profile_path, self.instance)

    async def _start(self, profile: HomeAgentProfile) -> None:
        assert self._loop is not None
        try:
            self.store = StateStore(profile.state_directory / f"{self.instance}.db")
        except (StateError, OSError) as exc:
            raise StartError(f"state file: {exc}") from exc
        self.dataplane = HomeAgentDataPlane(profile.tunnel.backend, profile.interface, profile.home_network)
        try:
            self.dataplane.start(profile.address)
        except (BackendError, OSError) as exc:
            raise StartError(f"data plane: {exc}") from exc
        self.backend = self.dataplane.name
        self.engine: HomeAgent = HomeAgent(self._settings(profile), wall_clock=time.time,
                                           random32=lambda: secrets.randbits(32))
        records = self.store.load()
        self._execute(self.engine.restore(records, self.now()))
        try:
            self.dataplane.reconcile(self.engine.data_plane())
        except (BackendError, OSError) as exc:
            raise StartError(f"data plane: cannot reinstall the restored bindings: {exc}") from exc
        self.udp = RegistrationEndpoints()
        try:
            self.udp.open(ha_runtime.listens(profile), self._on_datagrams)
        except OSError as exc:
            raise StartError(f"cannot serve UDP 434 on {profile.address}: {exc.strerror or exc}") from exc
        if profile.advertise:  # RFC 5944 2.3: agent advertisements with H on the home link
            self.advertising = Advertising(ha_runtime.advertiser_config(profile, self.engine.settings),
                                           profile.interface, profile.address, self.now, self._execute)
            try:
                self.advertising.start()
            except OSError as exc:
                raise StartError(f"cannot advertise on {profile.interface}: {exc.strerror or exc}") from exc
        socket_path = profile.control_socket or Path(f"/run/mip/{self.instance}.sock")
        self.control = ControlServer(socket_path, ha_runtime.HomeAgentControl(self, self.engine))
        try:
            await self.control.start()
        except (ControlSocketError, OSError) as exc:
            raise StartError(f"control socket {socket_path}: {exc}") from exc
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._stop.set)
        self._loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        await self._flush_now()
        offered = ",".join(sorted(self.engine.settings.encapsulations))
        self._emit("daemon.started", f"{self.instance} serving {profile.address} with "
                   f"{len(self.engine.bindings)} restored bindings; tunnel backend {self.backend} ({offered})",
                   reason=f"backend {self.backend}: {self.dataplane.reason}; host: {self.dataplane.host_report}",
                   home_agent=str(profile.address))
        notify.ready(self._status_line())

    async def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with contextlib.suppress(AttributeError):
            self.udp.close()
        if self.advertising is not None:
            self.advertising.close()
        with contextlib.suppress(AttributeError):
            await self.control.close()
        with contextlib.suppress(AttributeError):
            await self._flush_now()
            self.store.close()
        with contextlib.suppress(AttributeError):
            self.dataplane.close()

    def _status_line(self) -> str:
        return f"{len(self.engine.bindings)} bindings, backend {self.backend}"

    # --- reload ---

    def _on_sighup(self) -> None:
        task = asyncio.ensure_future(self._reload_quietly())
        task.add_done_callback(lambda t: t.exception())

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ControlError):
            await self.reload()

    async def reload(self) -> JSONObject:
        """Re-read the profile; SAs apply to the next request, live bindings stay. An invalid
        profile is rejected (``config.rejected``) and the running one stays."""
        notify.reloading()
        try:
            profile = await asyncio.to_thread(self._load)
            if not isinstance(profile, HomeAgentProfile):
                raise ControlError(f"reload refused: the role cannot change from home-agent to {profile.role}")
            settings = self._settings(profile)
        except ProfileError as error:
            reason = "; ".join(str(p) for p in error.problems[:5])
            self._emit("config.rejected", f"reload of {self.profile_path} rejected; the old profile keeps running",
                       Priority.WARNING, reason=reason)
            raise ControlError(f"reload failed, the old profile keeps running: {reason}") from error
        except ControlError as error:
            self._emit("config.rejected", error.message, Priority.WARNING, reason=error.message)
            raise
        finally:
            notify.ready(self._status_line())
        self.engine.reconfigure(settings)
        if self.advertising is not None:
            self.advertising.reconfigure(ha_runtime.advertiser_config(profile, settings))
        self.events.set_level(profile.log_level)
        restart_needed = [key for key in ("address", "interface", "home_network", "state_directory", "control_socket",
                                       "advertise")
                          if getattr(profile, key) != getattr(self.profile, key)]
        self.profile = profile
        note = f" (changes to {', '.join(restart_needed)} take effect at restart)" if restart_needed else ""
        self._emit("daemon.reloaded", f"{self.instance} reloaded {self.profile_path}{note}")
        return {"reloaded": str(self.profile_path), "mobile_nodes": len(settings.mobile_nodes),
                "restart_needed": restart_needed}

    # --- driving the engine ---

    def _on_datagrams(self, batch: list[Datagram]) -> None:
        now = self.now()
        actions: list[Action] = []
        for datagram in batch:
            actions += self.engine.receive(datagram, now)
        self._execute(actions)

    def _timed(self) -> list[Timed]:
        """What the one timer drives: the engine (once made) and the advertisements (if any)."""
        timed: list[Timed] = [self.engine] if hasattr(self, "engine") else []
        return timed + ([self.advertising] if self.advertising is not None else [])

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        now = self.now()
        actions: list[Action] = []
        for component in self._timed():
            deadline = component.next_timer()
            if deadline is not None and deadline <= now:
                actions += component.on_timer(now)
        self._execute(actions)

    def _execute(self, actions: Iterable[Action]) -> None:
        """Journal events now; state and replies at the end of this loop turn (group commit)."""
        for action in actions:
            if isinstance(action, Emit):
                self.events.emit(action)
            elif isinstance(action, PersistNode):
                self._persist.append(action)
            elif isinstance(action, DataPlane):
                self._planes.append(action)
            elif isinstance(action, SendDatagram):
                self._send.append(action)
            elif isinstance(action, SendIcmp) and self.advertising is not None:
                self.advertising.send(action)  # announces no state: not held back for the commit
            else:
                raise TypeError(f"the home agent runtime cannot execute {type(action).__name__}")
        if (self._persist or self._send or self._planes) and self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self._flush)
        self._rearm()

    def _flush(self) -> None:
        self._flush_handle = None
        persist, planes, send, waiters = self._persist, self._planes, self._send, self._flushed
        self._persist, self._planes, self._send, self._flushed = [], [], [], []
        committed = True
        if persist:
            try:
                self.store.commit(persist)
            except (sqlite3.Error, OSError) as exc:
                # A reply must not announce what a crash could lose: hold them back; nodes retransmit.
                committed = False
                self.commit_failures += 1
                self.events.logger().error("state.commit-failed", message=f"state commit failed: {exc}",
                                           reason=str(exc))
        if committed:
            self._apply_planes(planes)
            for action in send:
                self.udp.send(action)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _settings(self, profile: HomeAgentProfile) -> HomeAgentSettings:
        """The engine's settings: what the running backend cannot carry is not offered (139)."""
        settings = home_agent_settings(profile)
        return replace(settings, encapsulations=self.dataplane.encapsulations(settings.encapsulations))

    def _apply_planes(self, planes: list[DataPlane]) -> None:
        """Data plane changes, after the commit and before the replies."""
        if not planes:
            return
        for error in self.dataplane.apply(planes):
            self.events.logger().error("dataplane.failed", message=f"data plane change failed: {error}",
                                       reason=error)

    async def _flush_now(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()

    async def run_actions(self, actions: Iterable[Action]) -> None:
        """Execute actions from outside a datagram (mipctl flush) and wait until committed."""
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._flushed.append(waiter)
        self._execute(actions)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        await waiter

    def _rearm(self) -> None:
        deadlines = [d for component in self._timed() if (d := component.next_timer()) is not None]
        deadline = min(deadlines, default=None)
        if deadline == self._deadline or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._deadline = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _emit(self, event: str, message: str, priority: Priority = Priority.INFO, **fields: Any) -> None:
        self.events.emit(Emit(event, message, priority, {k: v for k, v in fields.items() if v is not None}))


def run(profile_path: Path, instance: str | None = None) -> int:
    """Run an instance in the foreground until SIGTERM; the process exit status."""
    return asyncio.run(Daemon(profile_path, instance).run())
