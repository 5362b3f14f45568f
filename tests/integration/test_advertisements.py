"""A real ``mipd run`` home agent advertises on its home link (RFC 5944 2.1, 2.3), read by tshark.

tshark captures on the home peer's side of the home link (started before the daemon, so the first
advertisement after start is caught) and every assertion uses tshark's own field names
(as ``tshark -G fields`` lists them). Agent Solicitations are built with scapy and sent from the home
peer through a raw socket opened in its namespace.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP

from tests.support import journal as journal_support
from tests.support.daemon import HA, HOME_PEER, HomeAgentDaemon
from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket, topology
from tests.support.tools import tool

journald = journal_support.journald
FIELDS = ["frame.time_epoch", "ip.src", "ip.dst", "ip.ttl", "icmp.type", "icmp.code", "icmp.checksum.status",
          "icmp.num_addrs", "icmp.lifetime", "icmp.router_address", "icmp.mip.type", "icmp.mip.seq",
          "icmp.mip.life", "icmp.mip.h", "icmp.mip.f", "icmp.mip.r", "icmp.mip.b", "icmp.mip.rt",
          "icmp.mip.prefixlength"]


class Capture:
    """tshark on ``interface`` in namespace ``ns``, writing ICMP to a pcap file until :meth:`stop`."""

    def __init__(self, ns: str, interface: str, path: Path) -> None:
        self.path = path
        self.process = subprocess.Popen(
            [tool("ip"), "netns", "exec", ns, tool("tshark"), "-n", "-i", interface, "-f", "icmp",
             "-a", "duration:60", "-F", "pcap", "-w", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._wait_until_capturing()

    def _wait_until_capturing(self, timeout: float = 20.0) -> None:
        # WIRESHARK.md: in a namespace, packets sent before "Capturing on" can be missed.
        assert self.process.stderr is not None
        fd, seen, deadline = self.process.stderr.fileno(), b"", time.monotonic() + timeout
        while b"Capturing on" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"tshark did not start capturing: {seen.decode(errors='replace')}")
            if select.select([fd], [], [], left)[0]:
                seen += os.read(fd, 4096)

    def stop(self) -> list[dict[str, list[str]]]:
        """End the capture (SIGINT: tshark closes the file) and read it back, one dict per frame."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if self.process.stderr is not None:
            self.process.stderr.close()
        out = subprocess.run(
            [tool("tshark"), "-n", "-r", str(self.path), "-T", "json", "--no-duplicate-keys",
             *(arg for name in FIELDS for arg in ("-e", name))],
            check=True, capture_output=True, text=True, timeout=60,
        )
        frames: list[dict[str, Any]] = json.loads(out.stdout) if out.stdout.strip() else []
        return [frame["_source"]["layers"] for frame in frames]

    def malformed(self) -> str:
        """tshark's summary of any malformed frame (-Y builds the full tree), empty if none."""
        out = subprocess.run([tool("tshark"), "-n", "-r", str(self.path), "-Y", "_ws.malformed"],
                             check=True, capture_output=True, text=True, timeout=60)
        return out.stdout.strip()


def one(frame: dict[str, list[str]], name: str) -> str:
    values = frame.get(name, [])
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def advertisements(frames: list[dict[str, list[str]]]) -> list[dict[str, list[str]]]:
    return [f for f in frames if f.get("icmp.type") == ["9"]]


def solicit(topo: Topology, *destinations: str, pause: float = 0.0) -> None:
    """Agent Solicitations (scapy-built, TTL 1) from the home peer to each destination in turn."""
    sender = netns_socket(topo.ns("home"), socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
        for destination in destinations:
            sender.sendto(bytes(IP(src=HOME_PEER, dst=destination, ttl=1) / ICMP(type=10)), (destination, 0))
            time.sleep(pause)
    finally:
        sender.close()


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with topology() as t:
        t.link("ha", "home0", f"{HA}/24", "home", "eth0", f"{HOME_PEER}/24")
        yield t


@pytest.fixture
def daemon(journald: Journald, topo: Topology, tmp_path: Path) -> Iterator[HomeAgentDaemon]:
    ha = HomeAgentDaemon(journald, topo, tmp_path, "ha-adv")
    yield ha
    ha.close()


@pytest.fixture
def capture(topo: Topology, tmp_path: Path) -> Iterator[Capture]:
    cap = Capture(topo.ns("home"), "eth0", tmp_path / "home.pcap")
    yield cap
    if cap.process.poll() is None:
        cap.process.kill()
        cap.process.wait(timeout=15)


def test_periodic_advertisements_with_h(daemon: HomeAgentDaemon, capture: Capture) -> None:
    daemon.write_profile(advertise="true", advertisement_interval=0.3, advertisement_lifetime=3, max_lifetime=900,
                         reverse_tunneling='"off"')
    daemon.start()
    time.sleep(2.5)
    frames = advertisements(capture.stop())
    assert capture.malformed() == ""

    assert len(frames) >= 5, f"only {len(frames)} advertisements in 2.5 s at a 0.3 s interval"
    for frame in frames:
        assert one(frame, "ip.src") == HA and one(frame, "ip.dst") == "224.0.0.1"
        assert one(frame, "ip.ttl") == "1"
        assert one(frame, "icmp.code") == "0"  # the home agent routes common traffic
        assert one(frame, "icmp.checksum.status") == "1"
        assert one(frame, "icmp.num_addrs") == "1" and one(frame, "icmp.router_address") == HA
        assert one(frame, "icmp.lifetime") == "3"
        assert frame["icmp.mip.type"] == ["16", "19"]
        assert one(frame, "icmp.mip.life") == "900"
        assert one(frame, "icmp.mip.prefixlength") == "24"
        flags = {bit: one(frame, f"icmp.mip.{bit}") for bit in ("h", "f", "r", "b", "rt")}
        assert flags == {"h": "1", "f": "0", "r": "0", "b": "0", "rt": "0"}  # rt (T): reverse tunneling off

    assert [int(one(f, "icmp.mip.seq")) for f in frames] == list(range(len(frames)))  # from 0, +1 each
    times = [float(one(f, "frame.time_epoch")) for f in frames]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Sent every [0.225, 0.3] s (0.75 to 1 interval); generous bounds for a loaded machine.
    assert all(0.1 < gap < 0.7 for gap in gaps), gaps
    assert 0.2 < sum(gaps) / len(gaps) < 0.4, gaps


def test_solicitations_are_answered(daemon: HomeAgentDaemon, capture: Capture, topo: Topology) -> None:
    # A long interval: after the first advertisement at start, only solicitations cause more.
    daemon.write_profile(advertise="true", advertisement_interval=60, advertisement_lifetime=180)
    daemon.start()
    time.sleep(0.3)
    solicit(topo, "224.0.0.11", "255.255.255.255", pause=0.4)  # more than the rate limit's 0.1 s
    stats = daemon.json("stats")["counters"]["advertisements"]
    frames = capture.stop()

    solicitations = [f for f in frames if f.get("icmp.type") == ["10"]]
    answers = advertisements(frames)
    assert [one(f, "ip.dst") for f in solicitations] == ["224.0.0.11", "255.255.255.255"]
    assert [int(one(f, "icmp.mip.seq")) for f in answers] == [0, 1, 2], "one answer per solicitation"
    for solicitation, answer in zip(solicitations, answers[1:], strict=True):
        delay = float(one(answer, "frame.time_epoch")) - float(one(solicitation, "frame.time_epoch"))
        assert 0 <= delay < 0.3, f"answered after {delay:.3f} s"
        assert one(answer, "ip.dst") == "224.0.0.1" and one(answer, "ip.ttl") == "1"
        assert one(answer, "icmp.mip.h") == "1" and one(answer, "icmp.mip.rt") == "1"  # T: reverse tunneling allowed
    assert stats["solicitations"] == 2 and stats["solicited"] == 2 and stats["sent"] == 3


def test_no_advertisements_when_advertise_is_false(daemon: HomeAgentDaemon, capture: Capture,
                                                    topo: Topology) -> None:
    daemon.write_profile(advertise="false", advertisement_interval=0.3, advertisement_lifetime=3)
    daemon.start()
    solicit(topo, "224.0.0.11", pause=1.0)
    frames = capture.stop()
    assert [f.get("icmp.type") for f in frames] == [["10"]]
    assert "advertisements" not in daemon.json("stats")["counters"]
