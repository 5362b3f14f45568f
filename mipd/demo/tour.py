"""The tour: moves the node at link level and measures each move.

- handoff time: from the link change to the first echo reply to an echo sent after it (the new path);
- packets lost: echoes sent from this move's link change to the next one (or the end) never answered;
- registration round trip: the node's ``registration.sent`` to the ``registration.accepted`` that followed,
  both after the link change (from the node's events; a move home counts its deregistration).

With a mobile router (``mipd demo --mobile-router``) a second pinger, beyond the home agent, pings the host
on the vehicle LAN: a move then settles only once that host answers over the new path too, and each move
also has the LAN host's handoff time and pings sent and lost.

Leases (what a DHCP client would get, :meth:`Topology.dhcp`): on the co-located link as soon as the link
is up (the node needs it to register); with ``late_leases`` also on other visited links once the node has
registered there (DHCP is slower than agent discovery), where a node that prefers co-location keeps its
foreign agent only because the agent sets R. ``on_move``, if given, is called once per move after it
settled (registered at the new place, pings answered over the new path) and before the dwell.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mipd.core.names import EventName
from mipd.demo.processes import Child, mipctl
from mipd.demo.topology import COLOCATED, FA1, FA2, NAT_BRIDGE, NAT_LEASE, Topology
from mipd.demo.traffic import Pings, Tcp

# stop -> (bridge, label, the care-of address the node should register, None for home)
STOPS: dict[str, tuple[str, str, str | None]] = {
    "home": ("br-home", "home", None),
    "v1": ("br-v1", "visited 1", FA1),
    "v2": ("br-v2", "visited 2", FA2),
    "colocated": ("br-v3", "co-located", COLOCATED),
    "nat": (NAT_BRIDGE, "behind NAT", NAT_LEASE),
}
TOUR = ("v1", "v2", "home", "colocated")
NAT_TOUR = (*TOUR, "nat")  # mipd demo --nat: then on to the visited network behind the NAT
# mipd demo --mobile-router: home -> a foreign agent -> co-located -> behind the NAT -> home
MOBILE_ROUTER_TOUR = ("v1", "colocated", "nat", "home")
LEASED = ("colocated", "nat")  # the stops where the node gets an address as soon as the link is up


class TourError(RuntimeError):
    """A move did not complete in time."""


def plan(moves: int, nat: bool = False, mobile_router: bool = False) -> list[str]:
    """The tour's stops in order (with the NAT's at the end if ``nat``; the mobile router's tour if
    ``mobile_router``), repeated until ``moves`` moves are made."""
    stops = MOBILE_ROUTER_TOUR if mobile_router else NAT_TOUR if nat else TOUR
    return list(itertools.islice(itertools.cycle(stops), moves))


@dataclass
class Move:
    number: int
    origin: str
    stop: str
    at: float  # the link change: the node's carrier went down (wall clock)
    settled: float | None = None  # the node's status showed the new place
    first_answer: float | None = None
    sent: int = 0
    answered: int = 0
    registration_ms: float | None = None
    up: float | None = None  # the carrier was up again on the new link (wall clock)
    # ``mipctl stats`` of each daemon before the move and once it settled (mipd/demo/breakdown.py)
    stats: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # the vehicle LAN's host (mobile router): its first answer over the new path, pings sent and answered
    lan_first_answer: float | None = None
    lan_sent: int = 0
    lan_answered: int = 0

    @property
    def handoff_ms(self) -> float | None:
        return None if self.first_answer is None else (self.first_answer - self.at) * 1000

    @property
    def lan_handoff_ms(self) -> float | None:
        return None if self.lan_first_answer is None else (self.lan_first_answer - self.at) * 1000

    @property
    def lan_lost(self) -> int:
        return self.lan_sent - self.lan_answered

    @property
    def lost(self) -> int:
        return self.sent - self.answered


def _settled(status: Any, stop: str) -> bool:
    if not isinstance(status, dict):
        return False
    coa = STOPS[stop][2]
    if coa is None:
        return status.get("location") == "home" and not status.get("registered")
    return bool(status.get("registered")) and status.get("care_of_address") == coa


def registration_ms(events: list[dict[str, Any]], start: float, end: float) -> float | None:
    """From the last ``registration.sent`` before the first ``registration.accepted`` in ``[start, end)``."""
    sent: float | None = None
    for event in sorted((e for e in events if "time" in e), key=lambda e: float(e["time"])):
        when = float(event["time"])
        if not start <= when < end:
            continue
        if event.get("MIP_EVENT") == EventName.REGISTRATION_SENT:
            sent = when
        elif event.get("MIP_EVENT") == EventName.REGISTRATION_ACCEPTED and sent is not None:
            return (when - sent) * 1000
    return None


@dataclass
class Tour:
    topology: Topology
    node_socket: Path
    node: Child
    pinger: Child
    progress: Callable[[str], None]
    dwell: float = 1.5
    timeout: float = 20.0
    late_leases: tuple[str, ...] = ()
    on_move: Callable[[Move], None] | None = None
    stats_sockets: dict[str, Path] = field(default_factory=dict)  # daemons whose stats frame each move
    lan_pinger: Child | None = None  # pings the vehicle LAN's host (mobile router)

    def _leased(self, stop: str) -> bool:
        return stop in LEASED or stop in self.late_leases

    def wait_home(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not _settled(mipctl(self.node_socket, "status"), "home"):
            if time.monotonic() > deadline:
                raise TourError("the mobile node did not report itself at home")
            time.sleep(0.1)

    def make(self, number: int, origin: str, stop: str, tcp_check: Callable[[float], bool]) -> Move:
        bridge, label, _ = STOPS[stop]
        before = {name: mipctl(sock, "stats") for name, sock in self.stats_sockets.items()}
        move = Move(number, origin, stop, self.topology.move(bridge))
        move.up = self.topology.up_at
        if self._leased(origin):
            self.topology.dhcp_release(STOPS[origin][0])
        if stop in LEASED:
            self.topology.dhcp(bridge)
        deadline = time.monotonic() + self.timeout
        while move.settled is None or move.first_answer is None or (
                self.lan_pinger is not None and move.lan_first_answer is None):
            if not self.node.running():
                raise TourError("the mobile node's mipd exited")
            if time.monotonic() > deadline:
                where = "registered" if move.settled else "not registered"
                lan = "" if self.lan_pinger is None else (
                    ", the LAN host " + ("answered" if move.lan_first_answer else "did not answer"))
                raise TourError(f"move {number} to {label}: no answer over the new path within "
                                f"{self.timeout:.0f} s (node {where}{lan})")
            if move.settled is None and _settled(mipctl(self.node_socket, "status"), stop):
                move.settled = time.time()
            move.first_answer = Pings.parse(self.pinger).first_answer_after(move.at)
            if self.lan_pinger is not None:
                move.lan_first_answer = Pings.parse(self.lan_pinger).first_answer_after(move.at)
            answered = move.first_answer and (self.lan_pinger is None or move.lan_first_answer)
            self.progress(f"move {number}: {STOPS[origin][1]} -> {label}: "
                          f"{'registered' if move.settled else 'registering'}, "
                          f"{'pings answered' if answered else 'waiting for pings'}")
            time.sleep(0.05)
        lan = "" if move.lan_handoff_ms is None else f", LAN host {move.lan_handoff_ms:.1f} ms"
        self.progress(f"move {number}: {STOPS[origin][1]} -> {label}: handoff {move.handoff_ms:.1f} ms{lan}")
        move.stats = {name: (before[name], mipctl(sock, "stats")) for name, sock in self.stats_sockets.items()}
        if stop in self.late_leases and stop not in LEASED:
            self.topology.dhcp(bridge)
        if self.on_move is not None:
            self.on_move(move)
        # Stay a while, until the TCP stream has delivered data over the new path too (or give up on it).
        stay_until, give_up = time.monotonic() + self.dwell, time.monotonic() + self.timeout
        while time.monotonic() < stay_until or (not tcp_check(move.at) and time.monotonic() < give_up):
            time.sleep(0.05)
        return move

    def run(self, moves: int, tcp: Callable[[], Tcp], lan_tcp: Callable[[], Tcp] | None = None) -> list[Move]:
        """``lan_tcp``: the vehicle LAN host's connection, which must deliver after each move as well."""
        made: list[Move] = []
        origin = "home"

        def delivered(at: float) -> bool:
            return tcp().delivered_after(at) and (lan_tcp is None or lan_tcp().delivered_after(at))

        for number, stop in enumerate(plan(moves, self.topology.nat, self.topology.mobile_router), start=1):
            made.append(self.make(number, origin, stop, delivered))
            origin = stop
        return made


def measure(made: list[Move], pings: Pings, events: list[dict[str, Any]], end: float,
            lan_pings: Pings | None = None) -> None:
    """Fill each move's loss and registration round trip, now that all replies are in."""
    for move, after in zip(made, [m.at for m in made[1:]] + [end], strict=True):
        move.sent, move.answered = pings.between(move.at, after)
        move.registration_ms = registration_ms(events, move.at, after)
        if lan_pings is not None:
            move.lan_sent, move.lan_answered = lan_pings.between(move.at, after)
