"""``mipd run``: one instance's event loop, shared by every role.

The engine is driven as aioquic drives a connection: datagrams and timer expiries go in, actions
come out, and one ``loop.call_at`` timer is re-armed to the earliest ``next_timer()`` of the role's
timed components (its engine, its advertisements). Actions of one loop turn are executed together
at its end: every state change is committed to the state file in one transaction (group commit),
then the role applies its data-plane changes and sends its datagrams (docs/interfaces.md, "Durability").
Which action is which is the role's action table (mipd.runtime.host); the daemon is the roles' Host,
and the registry (mipd.runtime.registry) picks the role's runtime for a profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mipd.adapters.state.store import CommitError, StateChange, StateError, StateStore
from mipd.adapters.tunnel.backend import BackendKind
from mipd.config import AnyProfile, ProfileError, load_profile
from mipd.control.handler import ControlError
from mipd.control.protocol import JSONObject
from mipd.control.server import ControlServer, ControlSocketError
from mipd.core.actions import Action, Emit, PersistMobile, PersistNode, PersistVisitor, Priority
from mipd.core.counters import DropReport
from mipd.core.names import EventName
from mipd.obs import EventLog, configure, metrics, notify
from mipd.runtime.clock import TimeOfDay
from mipd.runtime.host import ActionTable, On, Phase, StartError, on
from mipd.runtime.registry import runtime_for
from mipd.runtime.role import Role

# The data plane's drops go to the journal as packet.dropped, each reason at most this often (seconds).
DROP_REPORT_INTERVAL = 10.0


SWITCH_INTERVAL = 0.0005  # seconds (sys.setswitchinterval)


def _fsync(fd: int | None) -> None:
    """The group commit's flush, in the daemon's sync thread (CommitError if the disk refuses)."""
    if fd is None:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        raise CommitError(f"state file: {exc.strerror or exc}") from exc


class Daemon:
    """One running instance (the roles' Host, mipd.runtime.host). :meth:`run` returns the
    process exit status."""

    def __init__(self, profile_path: Path, instance: str | None = None) -> None:
        self.profile_path = profile_path
        self.instance = instance or profile_path.name.removesuffix(".yaml")
        self.events: EventLog = configure(self.instance, "unknown")
        self.profile: AnyProfile | None = None
        self.role: Role | None = None
        self.store: StateStore | None = None
        self.control: ControlServer | None = None
        self._table: ActionTable = {}
        self._started = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._persist: list[StateChange] = []
        self._pending: list[Action] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flushed: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._stop = asyncio.Event()
        self.time_of_day = TimeOfDay()  # the engines' wall clock (Identification timestamps, stored expiry)
        self._watchdog: asyncio.TimerHandle | None = None
        self._drop_report: asyncio.TimerHandle | None = None
        self._drops = DropReport(DROP_REPORT_INTERVAL)
        self._shed = DropReport(DROP_REPORT_INTERVAL)  # registration requests shed under overload
        self._status = ""
        self.commit_failures = 0
        self._syncing: asyncio.Future[None] | None = None  # the group's flush to the disk, in _syncer
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mipd-sync")
        # The sync thread, its fsync done, needs the GIL back to report it; a busy loop hands the GIL
        # over only every switch interval (5 ms by default), which every reply of the group would wait.
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.commits = 0  # group commits that wrote something, and the time they took (mipctl stats: state)
        self.commit_seconds = 0.0
        self.commit_seconds_max = 0.0
        self.metrics: metrics.Metrics | None = None  # the Prometheus endpoint (mipd/obs/metrics.py)

    @property
    def backend(self) -> BackendKind:
        return self.role.backend if self.role is not None else BackendKind.NONE

    # --- clocks ---

    def now(self) -> float:
        """The engines' clock: the event loop's monotonic time."""
        assert self._loop is not None
        return self._loop.time()

    def uptime(self) -> float:
        return time.monotonic() - self._started

    # --- life cycle ---

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        try:
            profile = self.load()
        except ProfileError as error:
            for problem in error.problems:
                print(problem, file=sys.stderr)
            self.emit(EventName.CONFIG_REJECTED, f"profile {self.profile_path} is invalid", Priority.ERR,
                      reason="; ".join(str(p) for p in error.problems[:5]))
            return 1
        self.profile = profile
        self.events = configure(self.instance, profile.role, profile.log_level)
        try:
            await self._start(profile)
        except StartError as error:
            print(f"mipd: {error}", file=sys.stderr)
            self.events.logger().error(EventName.DAEMON_FAILED, message=f"{self.instance} cannot start: {error}")
            await self._shutdown()
            return 1
        await self._stop.wait()
        self.emit(EventName.DAEMON_STOPPING, f"{self.instance} stopping")
        notify.stopping()
        if self.role is not None:
            await self.role.stop()  # e.g. a mobile node's deregistration, answered or timed out
        await self._shutdown()
        return 0

    def load(self) -> AnyProfile:
        return load_profile(self.profile_path, self.instance)

    def _actions(self, role: Role) -> ActionTable:
        """The role's table, with what every role does alike: journal events at once, state in the commit."""
        common = dict([on(Emit, Phase.NOW, self._emit), on(PersistNode, Phase.COMMIT, self._stage),
                       on(PersistVisitor, Phase.COMMIT, self._stage), on(PersistMobile, Phase.COMMIT, self._stage)])
        return {**common, **role.actions}

    async def _start(self, profile: AnyProfile) -> None:
        assert self._loop is not None
        try:
            store = self.store = StateStore(profile.state_directory / f"{self.instance}.db", profile.durability)
        except (StateError, OSError) as exc:
            raise StartError(f"state file: {exc}") from exc
        role = self.role = runtime_for(self, profile)
        self._table = self._actions(role)
        await role.start(store)
        socket_path = profile.control_socket or Path(f"/run/mip/{self.instance}.sock")
        self.control = ControlServer(socket_path, role.control)
        try:
            await self.control.start()
        except (ControlSocketError, OSError) as exc:
            raise StartError(f"control socket {socket_path}: {exc}") from exc
        try:
            self.metrics = metrics.serve(profile.metrics, self.role.control, self._loop, profile.role)
        except metrics.MetricsError as exc:
            raise StartError(str(exc)) from exc
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._stop.set)
        self._loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._flush_at_once()
        message, reason, fields = self.role.started()
        self.events.emit(Emit(EventName.DAEMON_STARTED, f"{self.instance} {message}", Priority.INFO,
                              {"reason": reason, **fields}))
        self._status = self.role.status_line()
        notify.ready(self._status)
        interval = notify.watchdog_interval()
        if interval is not None:
            self._watchdog_ping(interval / 2)
        self._report_drops()

    def _report_drops(self) -> None:
        """Once a second: ``packet.dropped`` for the data plane's drops and for the requests shed
        under overload, per reason at most once per DROP_REPORT_INTERVAL (mipd.core.counters.DropReport)."""
        assert self._loop is not None and self.role is not None
        for reason, count in self._drops.due(self.role.data_plane_counters(), self.now()):
            self.emit(EventName.PACKET_DROPPED, f"the data plane dropped {count} packet(s): {reason}", Priority.NOTICE,
                      reason=reason, count=count)
        for reason, count in self._shed.due(self.role.overload_counters(), self.now()):
            self.emit(EventName.PACKET_DROPPED, f"overload: {count} registration request(s) shed since the last "
                      f"summary: {reason}", Priority.NOTICE, reason=reason, count=count)
        self._drop_report = self._loop.call_later(1.0, self._report_drops)

    def _watchdog_ping(self, every: float) -> None:
        """WATCHDOG=1 from the event loop itself: a loop that hangs stops the pings and systemd restarts us."""
        assert self._loop is not None
        notify.watchdog()
        self._watchdog = self._loop.call_later(every, self._watchdog_ping, every)

    def _update_status(self) -> None:
        """STATUS= for ``systemctl status``, sent only when the one-line summary changed."""
        if self.role is None:
            return
        line = self.role.status_line()
        if line != self._status:
            self._status = line
            notify.status(line)

    async def _shutdown(self) -> None:
        if self._drop_report is not None:
            self._drop_report.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self.metrics is not None:
            await self.metrics.close()
        if self.control is not None:
            await self.control.close()
        if self.store is not None:
            await self._flushes_done()
            self._flush_at_once()
            self.store.close()
        self._syncer.shutdown(wait=True)
        if self.role is not None:
            self.role.close()

    # --- reload ---

    def _on_sighup(self) -> None:
        task = asyncio.ensure_future(self._reload_quietly())
        task.add_done_callback(lambda t: t.exception())

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ControlError):
            await self.reload()

    async def reload(self) -> JSONObject:
        """Re-read the profile and hand it to the role; an invalid profile is rejected
        (``config.rejected``) and the running one stays."""
        assert self.role is not None
        notify.reloading()
        try:
            profile = await asyncio.to_thread(self.load)
            summary, restart_needed = self.role.reload(profile)
        except ProfileError as error:
            reason = "; ".join(str(p) for p in error.problems[:5])
            self.emit(EventName.CONFIG_REJECTED,
                      f"reload of {self.profile_path} rejected; the old profile keeps running",
                      Priority.WARNING, reason=reason)
            raise ControlError(f"reload failed, the old profile keeps running: {reason}") from error
        except ControlError as error:
            self.emit(EventName.CONFIG_REJECTED, error.message, Priority.WARNING, reason=error.message)
            raise
        finally:
            notify.ready(self.role.status_line())
        self.events.set_level(profile.log_level)
        if self.store is not None and profile.durability != self.store.durability:
            self.store.set_durability(profile.durability)  # the next commit on
        if (profile.metrics and profile.metrics.listen) != (self.metrics and self.metrics.listen):  # what runs
            restart_needed = [*restart_needed, "metrics"]
        self.profile = profile
        note = f" (changes to {', '.join(restart_needed)} take effect at restart)" if restart_needed else ""
        self.emit(EventName.DAEMON_RELOADED, f"{self.instance} reloaded {self.profile_path}{note}")
        return {"reloaded": str(self.profile_path), **summary, "restart_needed": restart_needed}

    # --- executing actions (the role's table, mipd.runtime.host) ---

    def execute(self, actions: Iterable[Action]) -> None:
        """NOW actions at once; COMMIT, APPLY and ANNOUNCE ones at the end of this loop turn."""
        for action in actions:
            row = self._row(action)
            if row.phase in (Phase.NOW, Phase.COMMIT):
                self._carry_out(row, action)
            else:
                self._pending.append(action)
        if (self._persist or self._pending) and self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self._flush)
        self._rearm()

    def _emit(self, action: Emit) -> None:
        self.events.emit(action)  # the event log as it is now (configure() replaces it at start)
        if self.metrics is not None:
            self.metrics.observe(action)

    def _stage(self, change: StateChange) -> None:
        self._persist.append(change)

    def _row(self, action: Action) -> On:
        row = self._table.get(type(action))
        if row is None:
            raise TypeError(f"the {self.profile.role if self.profile else 'unknown'} role has no handler for "
                            f"{type(action).__name__}")
        return row

    def _carry_out(self, row: On, action: Action) -> list[Action]:
        if row.handler is None:
            return []
        return list(row.handler(action) or ())

    def _flush(self, at_once: bool = False) -> None:
        """End of a turn: write its state changes as one group, flush them to the disk, then carry
        out its APPLY and ANNOUNCE actions. The flush (an fsync, durability power-loss) runs in
        another thread while the loop goes on reading and deciding (docs/interfaces.md
        "Durability"): what later turns decide waits, with its replies, for the next group, which
        starts as soon as this one is on the disk. So the loop never waits for the disk, and the
        busier the agent, the larger each group. ``at_once`` (start, shutdown): all in this thread."""
        self._flush_handle = None
        if self._syncing is not None:
            return  # the flush in flight flushes again when it is done: these join the next group
        persist, pending, waiters = self._persist, self._pending, self._flushed
        self._persist, self._pending, self._flushed = [], [], []
        store = self.store
        if not persist or store is None:
            self._carry_out_turn(pending, waiters, committed=True)
            return
        started = time.perf_counter()
        try:
            written = store.write(persist)
            if not written or not store.syncs or at_once or self._loop is None:
                store.sync()
            else:
                # One system call in the other thread (the GIL released while the disk works).
                self._syncing = self._loop.run_in_executor(self._syncer, _fsync, store.prepare_sync())
                self._syncing.add_done_callback(functools.partial(self._synced, pending, waiters, started))
                return
        except CommitError as exc:
            self._commit_failed(exc)
            self._count_commit(started)
            self._carry_out_turn(pending, waiters, committed=False)
            return
        self._count_commit(started)
        self._carry_out_turn(pending, waiters, committed=True)

    def _synced(self, pending: list[Action], waiters: list[asyncio.Future[None]], started: float,
                done: asyncio.Future[None]) -> None:
        """The flush in the other thread ended: carry out its turns, start the next group."""
        self._syncing = None
        self._count_commit(started)
        error = CommitError("the flush was cancelled") if done.cancelled() else done.exception()
        if error is not None:
            self._commit_failed(error)
        self._carry_out_turn(pending, waiters, committed=error is None)
        if (self._persist or self._pending or self._flushed) and self._flush_handle is None and self._loop:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _commit_failed(self, exc: BaseException) -> None:
        # A reply must not announce what a crash could lose: hold them back; nodes retransmit.
        self.commit_failures += 1
        self.events.logger().error(EventName.STATE_COMMIT_FAILED, message=f"state commit failed: {exc}",
                                   reason=str(exc))

    def _count_commit(self, started: float) -> None:
        took = time.perf_counter() - started
        self.commits += 1
        self.commit_seconds += took
        self.commit_seconds_max = max(self.commit_seconds_max, took)

    def _carry_out_turn(self, pending: list[Action], waiters: list[asyncio.Future[None]], committed: bool) -> None:
        follow_ups: list[Action] = []
        if pending and self.role is not None:
            # Data plane first (a node told it is registered finds its tunnel in place), then datagrams.
            phases = (Phase.APPLY, Phase.ANNOUNCE) if committed else (Phase.APPLY,)
            for phase in phases:
                gathered: dict[On, list[Action]] = {}  # rows that take a turn's actions at once
                for action in pending:
                    row = self._row(action)
                    if row.phase is not phase:
                        continue
                    if row.many is not None:
                        gathered.setdefault(row, []).append(action)
                    else:
                        follow_ups += self._carry_out(row, action)
                for row, actions in gathered.items():
                    assert row.many is not None
                    follow_ups += list(row.many(actions) or ())
            self.role.settled()
        self._update_status()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if follow_ups:
            self.execute(follow_ups)

    def _flush_at_once(self) -> None:
        """Everything staged, committed and carried out now (start; shutdown, once no flush is in flight)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush(at_once=True)

    async def _flushes_done(self) -> None:
        """Wait until no flush is in flight (shutdown)."""
        while self._syncing is not None:
            await asyncio.wait([self._syncing])
            await asyncio.sleep(0)  # its done callback (which may start the next group) runs first

    async def commit(self, actions: Iterable[Action] = ()) -> None:
        """Execute actions from outside a datagram (mipctl flush, a stopping node) and wait until
        they are committed and carried out."""
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._flushed.append(waiter)
        self.execute(actions)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        await waiter

    def state_counters(self) -> dict[str, int | float | str]:
        """``mipctl stats``' ``state``: the group commits so far and the time they took (mipctl(8))."""
        return {"durability": self.store.durability if self.store is not None else "",
                "commits": self.commits, "commit_ms_total": round(self.commit_seconds * 1000, 3),
                "commit_ms_max": round(self.commit_seconds_max * 1000, 3), "failures": self.commit_failures}

    # --- the one timer ---

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        if self.role is None:
            return
        now = self.now()
        actions: list[Action] = []
        for component in self.role.timed:
            deadline = component.next_timer()
            if deadline is not None and deadline <= now:
                actions += component.on_timer(now)
        self.execute(actions)

    def _rearm(self) -> None:
        timed = self.role.timed if self.role is not None else []
        deadline = min((d for component in timed if (d := component.next_timer()) is not None), default=None)
        if deadline == self._deadline or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._deadline = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def emit(self, event: EventName, message: str, priority: Priority = Priority.INFO, **fields: Any) -> None:
        self.events.emit(Emit(event, message, priority, {k: v for k, v in fields.items() if v is not None}))


def run(profile_path: Path, instance: str | None = None) -> int:
    """Run an instance in the foreground until SIGTERM; the process exit status."""
    return asyncio.run(Daemon(profile_path, instance).run())
