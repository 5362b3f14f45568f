"""One run of the demo: set up, tour, measure, clean up (on success, failure, Ctrl-C and SIGTERM)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from mipd.core.names import EventName
from mipd.demo import breakdown, processes, report
from mipd.demo.processes import Child, Journal
from mipd.demo.profiles import write_profiles
from mipd.demo.topology import CN, FAR, LAN_HOST, LAN_PREFIX, MN, Topology, TopologyError
from mipd.demo.tour import Move, Tour, TourError, measure
from mipd.demo.traffic import Pings, Tcp

TCP_PORT = 5001
START_TIMEOUT = 20.0


class DemoError(RuntimeError):
    """The demo could not run to the end."""


class Interrupted(Exception):
    """SIGINT or SIGTERM."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@dataclass
class Options:
    moves: int = 4
    interval_ms: float = 20.0
    reverse_tunneling: bool = False
    keep: bool = False
    registration_required: bool = False
    nat: bool = False  # mipd demo --nat: the tour ends on a visited network behind a NAT
    plot: Path | None = None  # mipd demo --plot FILE.png (mipd/demo/plot.py)
    breakdown: Path | None = None  # mipd demo --breakdown FILE.json (mipd/demo/breakdown.py)
    # mipd demo --mobile-router: the node routes a vehicle LAN (RFC 5177) on the mobile router's tour, which
    # ends behind the NAT, with reverse tunneling (a mobile router should set T, RFC 5177)
    mobile_router: bool = False
    # the node also asks for a prefix on its LAN that the home agent does not serve (the tests: refused)
    refused_network: bool = False

    def __post_init__(self) -> None:
        if self.mobile_router:
            self.nat = self.reverse_tunneling = True


@dataclass
class Lan:
    """What the vehicle LAN's host saw (mobile router): its pings from the correspondent beyond the home
    agent, and that correspondent's TCP connection to it."""

    pings: Pings
    tcp: Tcp
    tcp_survived: bool


@dataclass
class Session:
    options: Options
    progress: report.Progress = field(default_factory=report.Progress)
    topology: Topology = field(default_factory=Topology)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mipd-demo-")))
    daemons: dict[str, Child] = field(default_factory=dict)
    helpers: dict[str, Child] = field(default_factory=dict)
    journal: Journal | None = None  # daemons log to this journald (else their events come on stderr)
    on_move: Callable[[Move], None] | None = None  # called after each move settles (see Tour)
    start_timeout: float = START_TIMEOUT  # for each daemon to answer mipctl, and for the traffic to start
    move_timeout: float = 20.0  # for each move to settle (see Tour)
    dwell: float = 1.5  # how long the node stays at each place once it settled there (see Tour)
    ended: float = 0.0  # when the pinger stopped: the end of the last move's window
    lan: Lan | None = None  # the vehicle LAN's host, after a mobile router's tour

    def _wait(self, what: str, ready: object) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not (ready() if callable(ready) else ready):
            for child in (*self.daemons.values(), *self.helpers.values()):
                if not child.running():
                    raise DemoError(f"{child.name} exited while waiting for {what}: "
                                    + " | ".join(line for _, line in child.snapshot()[-5:]))
            if time.monotonic() > deadline:
                raise DemoError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def _line(self, child: Child, first: str) -> bool:
        return any(line.split()[:1] == [first] for _, line in child.snapshot())

    def start_roles(self) -> str:
        o = self.options
        networks = (LAN_PREFIX,) if o.mobile_router else ()
        profiles = write_profiles(self.directory, reverse_tunneling=o.reverse_tunneling,
                                  registration_required=o.registration_required,
                                  debug_agents=o.breakdown is not None, mobile_networks=networks,
                                  refused_network=o.refused_network)
        for group in (("ha", "fa1", "fa2"), ("mn",)):  # the agents together, then the node
            for name in group:
                self.progress(f"starting {name}: mipd run --profile {profiles[name]}")
                self.daemons[name] = processes.daemon(name, self.topology.ns(name), profiles[name],
                                                      self.directory / f"{name}.log", journal=self.journal)
            for name in group:
                sock = self.directory / f"{name}.sock"
                self._wait(f"{name} to answer mipctl", lambda s=sock: processes.mipctl(s, "status") is not None)
        return self.backend()

    def backend(self) -> str:
        """Which tunnel backend the agents use and why (their ``daemon.started`` reasons, briefly)."""
        reasons: dict[str, list[str]] = {}
        for name in ("ha", "fa1", "fa2"):
            started = [e for e in self.daemons[name].events() if e.get("MIP_EVENT") == EventName.DAEMON_STARTED]
            reason = str(started[-1].get("MIP_REASON", "unknown")) if started else "unknown"
            reasons.setdefault(reason.split(";")[0].removeprefix("backend "), []).append(name)
        return "; ".join(f"{reason} ({', '.join(names)})" for reason, names in reasons.items())

    def start_traffic(self) -> None:
        d, interval = self.directory, str(self.options.interval_ms)
        server = processes.helper("tcp server", self.topology.ns("mn"), ["serve", MN, str(TCP_PORT)], d / "serve.log")
        self.helpers["server"] = server
        self._wait("the TCP server", lambda: self._line(server, "L"))
        self.helpers["pinger"] = processes.helper("pinger", self.topology.ns("cn"), ["ping", MN, interval],
                                                  d / "ping.log")
        client = processes.helper("tcp client", self.topology.ns("cn"), ["send", MN, str(TCP_PORT), interval],
                                  d / "send.log")
        self.helpers["client"] = client
        self._wait("the TCP connection", lambda: self._line(client, "C") and self._line(server, "A"))
        if self.options.mobile_router:
            self.start_lan_traffic()

    def start_lan_traffic(self) -> None:
        """The correspondent beyond the home agent pings the vehicle LAN's host and keeps a TCP connection
        sending to it (mobile router)."""
        d, interval, far, lan = self.directory, str(self.options.interval_ms), self.topology.ns("far"), \
            self.topology.ns("lan")
        server = processes.helper("lan tcp server", lan, ["serve", LAN_HOST, str(TCP_PORT)], d / "lan-serve.log")
        self.helpers["lan server"] = server
        self._wait("the LAN host's TCP server", lambda: self._line(server, "L"))
        self.helpers["lan pinger"] = processes.helper("lan pinger", far, ["ping", LAN_HOST, interval],
                                                      d / "lan-ping.log")
        client = processes.helper("lan tcp client", far, ["send", LAN_HOST, str(TCP_PORT), interval],
                                  d / "lan-send.log")
        self.helpers["lan client"] = client
        self._wait("the TCP connection to the LAN host", lambda: self._line(client, "C") and self._line(server, "A"))

    def tcp(self) -> Tcp:
        return Tcp.parse(self.helpers["server"], self.helpers["client"])

    def lan_tcp(self) -> Tcp:
        return Tcp.parse(self.helpers["lan server"], self.helpers["lan client"])

    def tour(self) -> tuple[list[Move], Pings, bool]:
        node = self.daemons["mn"]
        lan_pinger = self.helpers.get("lan pinger")
        tour = Tour(self.topology, self.directory / "mn.sock", node, self.helpers["pinger"], self.progress,
                    late_leases=("v1", "v2") if self.options.registration_required else (),
                    timeout=self.move_timeout, dwell=self.dwell, on_move=self.on_move,
                    stats_sockets={name: self.directory / f"{name}.sock" for name in self.daemons}
                    if self.options.breakdown is not None else {}, lan_pinger=lan_pinger)
        tour.wait_home()
        time.sleep(1.0)  # a second of pings at home first
        moves = tour.run(self.options.moves, self.tcp, self.lan_tcp if lan_pinger is not None else None)
        pinger = self.helpers["pinger"]
        for child in (pinger, lan_pinger):
            if child is not None:
                child.process.send_signal(signal.SIGUSR1)  # stop sending; late replies still count
        end = self.ended = time.time()
        time.sleep(1.0)
        survived = self.tcp().survived([m.at for m in moves], end + 1)
        pings = Pings.parse(pinger)
        lan_pings = Pings.parse(lan_pinger) if lan_pinger is not None else None
        measure(moves, pings, node.events(), end, lan_pings)
        if lan_pings is not None:
            lan_tcp = self.lan_tcp()
            self.lan = Lan(lan_pings, lan_tcp, lan_tcp.survived([m.at for m in moves], end + 1))
        if self.options.breakdown is not None:
            self.write_breakdown(self.options.breakdown, moves, end)
        return moves, pings, survived

    def write_breakdown(self, path: Path, moves: list[Move], end: float) -> None:
        """Each move's stages and commit times, and their medians (mipd/demo/breakdown.py)."""
        events = {name: child.events() for name, child in self.daemons.items()}
        agents = {"v1": "fa1", "v2": "fa2"}
        entries = []
        for move, after in zip(moves, [m.at for m in moves[1:]] + [end], strict=True):
            agent = agents.get(move.stop)
            stages = breakdown.move_stages(down=move.at, up=move.up, end=after, first_answer=move.first_answer,
                                           node=events["mn"], home_agent=events["ha"],
                                           foreign_agent=events[agent] if agent is not None else None)
            commits = {name: breakdown.commit_ms(a, b) for name, (a, b) in move.stats.items()}
            entries.append({"move": move.number, "from": move.origin, "to": move.stop,
                            "handoff_ms": move.handoff_ms, "lost": move.lost, "stages": stages,
                            "commit_ms": {k: v for k, v in commits.items() if v is not None}})
        path.write_text(json.dumps({"moves": entries, "median_ms": breakdown.medians(entries)}, indent=2) + "\n")

    def keep_instructions(self) -> str:
        t, d = self.topology, self.directory
        mipctl = " ".join(processes.mipctl_command())
        names = " ".join(t.created)
        agents = " ".join(str(self.daemons[n].process.pid) for n in ("ha", "fa1", "fa2"))
        return (f"The topology stays up (namespaces {t.prefix}-*; files in {d}). Try:\n"
                f"  ip netns exec {t.ns('cn')} ping {MN}\n"
                + (f"  ip netns exec {t.ns('far')} ping {LAN_HOST}   (the vehicle LAN's host)\n"
                   if t.mobile_router else "")
                + f"  {mipctl} --socket {d / 'mn.sock'} status\n"
                f"  {mipctl} --socket {d / 'ha.sock'} bindings\n"
                f"  ip netns exec {t.ns('mn')} ip route; ip netns exec {t.ns('sw')} bridge link\n"
                f"  ip -n {t.ns('sw')} link set mnp down; ip -n {t.ns('sw')} link set mnp master br-v1; "
                f"ip -n {t.ns('sw')} link set mnp up   (move the node)\n"
                f"Remove it all with (the node first, so that it can deregister):\n"
                f"  kill {self.daemons['mn'].process.pid}; sleep 3; kill {agents}; sleep 2\n"
                f"  for ns in {names}; do ip netns del $ns; done; rm -rf {d}")

    def cleanup(self, keep: bool) -> None:
        for helper in self.helpers.values():
            helper.stop(timeout=3)
        if keep:
            return
        for name in ("mn", "fa2", "fa1", "ha"):
            if name in self.daemons:
                self.daemons[name].stop()
        for pid in self.topology.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.topology.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def run(options: Options) -> int:
    """The whole demo; returns the exit status."""
    if os.geteuid() != 0:
        print("mipd demo: must run as root (it creates network namespaces)", file=sys.stderr)
        return 1
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    session = Session(options, topology=Topology(nat=options.nat, mobile_router=options.mobile_router))
    result: tuple[list[Move], Pings, bool] | None = None
    status, keep = 1, False
    try:
        session.progress.note(f"building the topology (namespaces {session.topology.prefix}-*)")
        session.topology.build()
        backend = session.start_roles()
        session.progress.note(f"tunnel backend: {backend}")
        session.start_traffic()
        session.progress.note(f"roaming: {options.moves} moves; the correspondent pings {MN} every "
                              f"{options.interval_ms:g} ms from {CN} and keeps one TCP connection sending")
        if options.mobile_router:
            session.progress.note(f"mobile router: the node routes {LAN_PREFIX}; the correspondent beyond the "
                                  f"home agent ({FAR}) pings the LAN host {LAN_HOST} and keeps one TCP "
                                  "connection sending to it")
        result = session.tour()
        status, keep = 0, options.keep
    except (DemoError, TourError, TopologyError) as error:
        session.progress.note(f"mipd demo: {error}")
        for name, child in session.daemons.items():
            for _, line in child.snapshot()[-5:]:
                print(f"  {name}: {line}", file=sys.stderr)
    except Interrupted as signum:
        session.progress.note(f"mipd demo: interrupted ({signum}); cleaning up")
        status = 130
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # clean-up is not interrupted
        session.progress.note("cleaning up" if not keep else "stopping the traffic")
        session.cleanup(keep)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if keep:
        print(session.keep_instructions())
    if result is not None:
        moves, pings, survived = result
        if options.plot is not None:
            from mipd.demo import plot  # noqa: PLC0415 - matplotlib only when asked for

            drawn = plot.write(options.plot, moves, pings, session.ended)
            session.progress.note(f"plot: wrote {options.plot.resolve()} ({drawn.moves} moves, {drawn.lost} "
                                  f"pings lost, {drawn.answered} answered)")
        lan = session.lan
        if lan is not None:
            session.progress.note(lan_addresses(lan))
        print(report.table(moves, lan=lan is not None))
        print(report.summary(moves, len(pings.sent), len(pings.answered), survived,
                             None if lan is None else (len(lan.pings.sent), len(lan.pings.answered), lan.tcp_survived)))
    return status


def lan_addresses(lan: Lan) -> str:
    """Whether the LAN host's address and its correspondent's stayed what they are, end to end."""
    wrong = sorted(set(lan.pings.wrong_source.values()))
    return (f"vehicle LAN: the LAN host saw its TCP peer as {lan.tcp.peer or 'nobody'} (the correspondent is "
            f"{FAR}); {len(lan.pings.answered)} echo replies came from {LAN_HOST}"
            + (f", {len(lan.pings.wrong_source)} from other addresses ({', '.join(wrong)})" if wrong else
               ", none from another address"))
