"""The home agent engine as a hypothesis state machine: requests, replays, timers, reloads, restarts.

Random steps drive one real HomeAgent engine with an explicit clock, the way mipd.runtime drives it:
each step is one turn of the event loop whose PersistNode actions are committed to a real StateStore
(an SQLite file in a temporary directory) before its DataPlane actions are applied and its replies
sent (mipd.runtime.daemon.Daemon._flush). The data-plane model folds the DataPlane actions, as
HomeAgentDataPlane.apply does. A restart builds a new engine from ``store.load()`` through
``HomeAgent.restore`` and reconciles the data plane with ``data_plane()``, as HomeAgentRuntime.start
does; a crash restart first throws away the turn in flight (never committed, so never answered).
A reload hands new settings to ``reconfigure`` (HomeAgentRuntime.reload).

Invariants, after every step:

- every authenticated request whose SPI has an SA gets exactly one reply, and the reply says
  "accepted" exactly when the engine emitted registration.accepted;
- no binding outlives its lifetime: once the timer has run, every binding's deadline is ahead, and
  a restart keeps each binding's wall-clock deadline;
- the data plane (DataPlane actions folded, reconciled at restart) is the binding table's;
- a replayed request whose Identification was spent never makes or extends a binding (only the
  duplicate of the current binding is answered as accepted, lifetime not extended: 3.8.2.2), also
  after any number of restarts;
- the state file holds what the engine holds (a restart loses nothing but the expired).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mipd.adapters.state.store import StateStore
from mipd.core.actions import Action, Datagram, DataPlane, Emit, PersistNode, SendDatagram
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.core.planes import Endpoint
from mipd.core.reply_limit import ReplyLimit
from mipd.core.security import ReplayProtection, ReverseTunneling, SecurityAssociation
from mipd.core.wire import identification as ident
from mipd.core.wire.auth import Algorithm, append_authentication
from mipd.core.wire.codes import is_accepted
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags, decode_registration
from mipd.core.wire.tunnel import Encapsulation

HA = IPv4Address("10.1.0.1")
FA = IPv4Address("10.2.0.1")
COAS = (IPv4Address("10.5.0.5"), IPv4Address("10.6.0.6"), FA)
MN_T, MN_N = IPv4Address("10.1.0.10"), IPv4Address("10.1.0.11")  # timestamp and nonce replay
SPI = {MN_T: 256, MN_N: 257}
FA_SPI, FA_KEY = 300, bytes(range(32, 48))
KEYS = (bytes(range(16)), bytes(range(16, 32)), bytes(range(64, 80)))
WALL0 = 1_790_000_000.0
FLAG_CHOICES = (RequestFlags(0), RequestFlags.T, RequestFlags.S, RequestFlags.G | RequestFlags.T,
                RequestFlags.M, RequestFlags.B | RequestFlags.S, RequestFlags.S | RequestFlags.G)


def ha_settings(keys: dict[IPv4Address, bytes], *, known: frozenset[IPv4Address], max_lifetime: int,
                max_bindings: int, reverse: ReverseTunneling) -> HomeAgentSettings:
    nodes = {SPI[n]: SecurityAssociation(SPI[n], keys[n], n, replay=ReplayProtection.TIMESTAMP if n == MN_T
                                         else ReplayProtection.NONCE) for n in (MN_T, MN_N) if n in known}
    return HomeAgentSettings(
        HA, IPv4Network("10.1.0.0/24"),
        nodes, foreign_agents={FA: {FA_SPI: SecurityAssociation(FA_SPI, FA_KEY, FA)}},
        max_lifetime=max_lifetime, max_bindings_per_node=max_bindings, reverse_tunneling=reverse,
        encapsulations=frozenset(Encapsulation))


@dataclass
class Clock:
    now: float = 50.0
    wall_offset: float = WALL0

    def wall(self) -> float:
        return self.now + self.wall_offset


@dataclass
class Sent:
    """A request as sent (kept for replays) and what its reply said."""

    node: IPv4Address
    payload: bytes
    source: IPv4Address
    identification: int
    code: int | None = None


@dataclass
class NodeSide:
    """What a mobile node knows: its key, the home agent's last nonce."""

    key: bytes
    ha_nonce: int = 0
    spent: list[Sent] = field(default_factory=list)  # requests whose Identification the HA recorded


class HomeAgentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        base = "/dev/shm" if Path("/dev/shm").is_dir() else None
        self.tmp = Path(tempfile.mkdtemp(prefix="mipd-ha-machine-", dir=base))
        self.store = StateStore(self.tmp / "home-agent.db")
        self.clock = Clock()
        self.nodes = {MN_T: NodeSide(KEYS[0]), MN_N: NodeSide(KEYS[1])}
        self.known = frozenset({MN_T, MN_N})
        self.max_lifetime, self.max_bindings, self.reverse = 600, 2, ReverseTunneling.ALLOWED
        self.nonces = iter(range(0x1000, 1 << 32))
        self.engine = self._new_engine()
        self.installed: dict[IPv4Address, tuple[Endpoint, ...]] = {}
        self.deadlines: dict[tuple[IPv4Address, IPv4Address], float] = {}  # wall-clock, per binding
        self.restarts = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the runtime's side ---

    def _settings(self) -> HomeAgentSettings:
        return ha_settings({n: s.key for n, s in self.nodes.items()}, known=self.known,
                           max_lifetime=self.max_lifetime, max_bindings=self.max_bindings, reverse=self.reverse)

    def _new_engine(self) -> HomeAgent:
        engine = HomeAgent(self._settings(), wall_clock=self.clock.wall, random32=lambda: next(self.nonces))
        # This machine models RFC 5944's answers, one per request with an SA; the rate limit on 131
        # and 133 (an overload policy on top) has its own tests: tests/unit/test_reply_limit.py and
        # the differential tests/property/test_home_agent_fast_path.py.
        engine.replies = ReplyLimit(burst=1 << 30)
        return engine

    def _turn(self, actions: list[Action]) -> list[Action]:
        """One loop turn: commit, then the data plane, then the replies (Daemon._flush)."""
        self.store.commit([a for a in actions if isinstance(a, PersistNode)])
        for plane in (a for a in actions if isinstance(a, DataPlane)):
            if plane.endpoints:
                self.installed[plane.home_address] = plane.endpoints
            else:
                self.installed.pop(plane.home_address, None)
        return actions

    def _run_timers(self) -> None:
        """The daemon's one timer, fired at every deadline up to now, each firing one turn."""
        while (deadline := self.engine.next_timer()) is not None and deadline <= self.clock.now:
            self._turn(self.engine.on_timer(self.clock.now))
            after = self.engine.next_timer()
            assert after is None or after > deadline, f"the timer ran at {self.clock.now}, still due at {after}"

    def _record_deadlines(self) -> None:
        self.deadlines = {(b.home_address, b.care_of_address): b.expires + self.clock.wall_offset
                          for b in self.engine.bindings}

    # --- a node's side ---

    def _request(self, node: IPv4Address, coa: IPv4Address, lifetime: int, flags: RequestFlags,
                 wrong_key: bool) -> tuple[bytes, IPv4Address, int]:
        side = self.nodes[node]
        if node == MN_T:
            identification = ident.timestamp(self.clock.wall(), next(self.nonces) & 0xFFF)
        else:
            identification = ident.nonce_request(side.ha_nonce, next(self.nonces))
        colocated = coa != FA
        if colocated:
            flags |= RequestFlags.D
        msg = RegistrationRequest(flags, lifetime, node, HA, node if lifetime == 0 and coa == node else coa,
                                  identification)
        key = KEYS[2] if wrong_key else side.key
        msg = append_authentication(msg, ExtensionType.MOBILE_HOME_AUTHENTICATION, SPI[node], key, Algorithm.HMAC_MD5)
        if not colocated and lifetime != 0:
            msg = append_authentication(msg, ExtensionType.FOREIGN_HOME_AUTHENTICATION, FA_SPI, FA_KEY,
                                        Algorithm.HMAC_MD5)
        return msg.encode(), (coa if colocated else FA), identification

    def _deliver(self, node: IPv4Address, payload: bytes, source: IPv4Address) -> tuple[list[Action],
                                                                                         RegistrationReply | None]:
        self._run_timers()
        actions = self._turn(self.engine.receive(Datagram(payload, source, 40000, HA), self.clock.now))
        sends = [a for a in actions if isinstance(a, SendDatagram)]
        has_sa = node in self.known
        assert len(sends) == (1 if has_sa else 0), f"{len(sends)} replies to one request: {actions}"
        if not sends:
            return actions, None
        reply = decode_registration(sends[0].payload)
        assert isinstance(reply, RegistrationReply)
        accepted_events = [a for a in actions if isinstance(a, Emit) and a.event == "registration.accepted"]
        assert len(accepted_events) <= 1
        if accepted_events:
            assert is_accepted(reply.code), reply
        if node == MN_N:  # every reply carries a new nonce (5.7.2), a 131 too
            self.nodes[node].ha_nonce = ident.high32(reply.identification)
        return actions, reply

    # --- rules ---

    @rule(node=st.sampled_from((MN_T, MN_N)), coa=st.sampled_from(COAS),
          lifetime=st.sampled_from((1, 5, 30, 300, 0xFFFF, 0)), flags=st.sampled_from(FLAG_CHOICES),
          wrong_key=st.sampled_from((False, False, False, True)))
    def register(self, node: IPv4Address, coa: IPv4Address, lifetime: int, flags: RequestFlags,
                 wrong_key: bool) -> None:
        payload, source, identification = self._request(node, coa, lifetime, flags, wrong_key)
        before = {(b.home_address, b.care_of_address): b for b in self.engine.bindings}
        _, reply = self._deliver(node, payload, source)
        if reply is None:
            return
        event(f"register: reply {reply.code}")
        if wrong_key:
            assert reply.code == 131, reply
            assert {(b.home_address, b.care_of_address): b for b in self.engine.bindings} == before
        spent = node == MN_N or reply.code not in (131, 133)
        if spent:
            self.nodes[node].spent.append(Sent(node, payload, source, identification, reply.code))
        self._record_deadlines()

    @precondition(lambda self: any(s.spent for s in self.nodes.values()))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """An attacker (or the network) sends again a request whose Identification was spent."""
        spent = [s for side in self.nodes.values() for s in side.spent]
        self._replay(data.draw(st.sampled_from(spent)))

    def _replay(self, old: Sent) -> None:
        self._run_timers()
        before = {(b.home_address, b.care_of_address): b for b in self.engine.bindings}
        actions, reply = self._deliver(old.node, old.payload, old.source)
        assert not [a for a in actions if isinstance(a, Emit) and a.event == "registration.accepted"], actions
        assert {(b.home_address, b.care_of_address): b for b in self.engine.bindings} == before, "replay changed"
        event(f"replay: reply {None if reply is None else reply.code}, after {self.restarts} restarts")
        if reply is not None and is_accepted(reply.code):
            current = [b for b in before.values() if b.identification == old.identification]
            assert current, f"replayed Identification {old.identification:016x} accepted: {reply}"
        self._record_deadlines()

    @rule(seconds=st.sampled_from((0.5, 1.0, 3.0, 8.0, 29.0, 31.0, 299.0, 601.0)))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self._run_timers()

    @rule(node=st.sampled_from((MN_T, MN_N)))
    def flush(self, node: IPv4Address) -> None:
        self._run_timers()
        self._turn(self.engine.flush(node, self.clock.now))
        assert not self.engine.bindings.of(node)
        self._record_deadlines()

    @rule(node=st.sampled_from((MN_T, MN_N)), rekey=st.booleans(), drop=st.booleans(),
          max_lifetime=st.sampled_from((10, 600, 0xFFFF)), max_bindings=st.sampled_from((1, 2, 3)),
          reverse=st.sampled_from(tuple(ReverseTunneling)))
    def reload(self, node: IPv4Address, rekey: bool, drop: bool, max_lifetime: int, max_bindings: int,
               reverse: ReverseTunneling) -> None:
        """``mipctl reload`` with a changed profile: SAs re-keyed or removed, limits changed."""
        if rekey:
            side = self.nodes[node]
            side.key = KEYS[0] if side.key != KEYS[0] else KEYS[1]
        self.known = (self.known - {node}) if drop else (self.known | {node})
        self.max_lifetime, self.max_bindings, self.reverse = max_lifetime, max_bindings, reverse
        self.engine.reconfigure(self._settings())

    @rule(downtime=st.sampled_from((0.0, 0.5, 2.0, 6.0, 30.0, 700.0)), new_now=st.sampled_from((0.0, 10.0, 1e6)),
          crash=st.booleans(), node=st.sampled_from((MN_T, MN_N)))
    def restart(self, downtime: float, new_now: float, crash: bool, node: IPv4Address) -> None:
        """Stop (or kill -9 in the middle of a turn) and start again from the state file."""
        if crash:
            # A request is processed but the process dies before the turn's commit: nothing of it
            # is durable, no reply or data-plane change went out.
            payload, source, _ = self._request(node, COAS[0], 300, RequestFlags(0), False)
            self._run_timers()
            self.engine.receive(Datagram(payload, source, 40000, HA), self.clock.now)
        wall = self.clock.wall() + downtime
        self.clock.now, self.clock.wall_offset = new_now, wall - new_now
        self.engine = self._new_engine()
        self._turn(self.engine.restore(self.store.load(), self.clock.now))
        self.installed = {p.home_address: p.endpoints for p in self.engine.data_plane()}  # reconcile
        survivors = {k: d for k, d in self.deadlines.items() if d > wall}
        restored = {(b.home_address, b.care_of_address): b.expires + self.clock.wall_offset
                    for b in self.engine.bindings}
        assert restored.keys() == survivors.keys(), (restored, survivors)
        for key, deadline in survivors.items():
            assert math.isclose(restored[key], deadline, abs_tol=1e-6) or math.isinf(deadline), (key, deadline)
        self.restarts += 1
        self._run_timers()
        self._record_deadlines()
        for side in self.nodes.values():  # a replay storm just after the start, within the window
            for old in side.spent[-4:]:
                self._replay(old)

    # --- invariants ---

    @invariant()
    def no_binding_outlives_its_lifetime(self) -> None:
        # Every rule has run the timer up to now, as the daemon's timer would have.
        for binding in self.engine.bindings:
            assert binding.expires > self.clock.now, binding

    @invariant()
    def data_plane_matches_the_bindings(self) -> None:
        wanted = {}
        for home in {b.home_address for b in self.engine.bindings}:
            wanted[home] = tuple(Endpoint.for_request(b.care_of_address, HA, b.flags)
                                 for b in self.engine.bindings.of(home))
        assert self.installed == wanted

    @invariant()
    def the_state_file_holds_the_bindings(self) -> None:
        stored = {(b.home_address, b.care_of_address): replace(b, expires=0.0)
                  for record in self.store.load() for b in record.bindings}
        live = {(b.home_address, b.care_of_address): replace(b, expires=0.0) for b in self.engine.bindings}
        assert stored == live


HomeAgentMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])
test_home_agent_machine = HomeAgentMachine.TestCase
