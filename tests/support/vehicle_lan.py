"""The mobile router's tour (``mipd demo --mobile-router``): what the vehicle LAN, the wire and the home
agent's routes show, decoded here independently of mipd.

- :class:`Capture`: a packet socket on one interface of one namespace, read by a thread, keeping every
  IPv4 packet with its direction (received or sent by that namespace);
- :func:`registration_replies`: the Registration Replies (UDP from port 434, type 3) in a capture, each with
  its code, lifetime and the Mobile Network Acknowledgements (RFC 5177 4.2: type 148, sub-type 1 or 2)
  it carries, walked byte by byte;
- :func:`lan_checks`: at one stop of the tour, a short capture on the correspondent beyond the home agent
  and on the LAN host at once: the LAN host's packets reach the correspondent from the LAN host's own
  address, and the correspondent's reach the LAN host from the correspondent's (nothing rewrites either
  address, in either direction); and the home agent's routes for the mobile prefix (mipd's own while the
  node is away, only the operator's metric-100 route at home) and for the refused prefix (none, ever).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from mipd.demo.topology import AT_HOME_METRIC, FAR, LAN_HOST, LAN_PREFIX, MN, REFUSED_PREFIX, ip
from tests.support.netns import entered

ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
PACKET_OUTGOING = 4
MOBILE_NETWORK = 148  # RFC 5177 section 11, Table 1
REGISTRATION_REPLY = 3  # RFC 5944 3.4
REPLY_FIXED = 20  # RFC 5944 3.4: type, code, lifetime, home address, home agent, identification
TCP_PORT = 5001  # mipd/demo/session.py TCP_PORT: the LAN host's server


@dataclass(frozen=True)
class Packet:
    at: float
    outgoing: bool
    data: bytes  # the IPv4 packet

    @property
    def source(self) -> str:
        return str(IPv4Address(self.data[12:16]))

    @property
    def destination(self) -> str:
        return str(IPv4Address(self.data[16:20]))

    @property
    def protocol(self) -> int:
        return self.data[9]

    @property
    def payload(self) -> bytes:
        return self.data[(self.data[0] & 0x0F) * 4:]

    def ports(self) -> tuple[int, int] | None:
        """(source, destination) port of a TCP or UDP packet."""
        if self.protocol not in (6, 17) or len(self.payload) < 4:
            return None
        source, destination = struct.unpack("!HH", self.payload[:4])
        return source, destination


@dataclass
class Capture:
    """Every IPv4 packet on ``interface`` in namespace ``namespace`` from :meth:`start` to :meth:`stop`."""

    namespace: str
    interface: str
    packets: list[Packet] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stopping: bool = False

    def start(self) -> Capture:
        with entered(self.namespace):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((self.interface, ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self._sock = sock
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._sock is not None
        while not self._stopping:
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            try:
                frame, address = self._sock.recvfrom(1 << 16)
            except OSError:
                return
            if len(frame) >= 34 and struct.unpack("!H", frame[12:14])[0] == ETH_P_IP:
                self.packets.append(Packet(time.time(), address[2] == PACKET_OUTGOING, frame[14:]))

    def stop(self) -> list[Packet]:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        return self.packets


# --- registration replies and their acknowledgements, decoded here ---

@dataclass(frozen=True)
class Reply:
    at: float
    code: int
    lifetime: int
    # (sub-type, code, prefix length, prefix) of each Mobile Network Acknowledgement, in order
    acknowledgements: tuple[tuple[int, int, int, str], ...]
    source: str = ""  # who sent it (the home agent, or the foreign agent that relayed it)
    extensions: tuple[int, ...] = ()  # every extension's type, in order

    def as_list(self) -> list[Any]:
        return [self.code, self.lifetime, [list(a) for a in self.acknowledgements], self.source,
                list(self.extensions)]


def _extensions(data: bytes) -> list[tuple[int, bytes]]:
    """The extensions after a registration message's fixed part (RFC 5944 1.9: type, length, data)."""
    found, offset = [], 0
    while offset + 2 <= len(data):
        kind, length = data[offset], data[offset + 1]
        found.append((kind, data[offset + 2:offset + 2 + length]))
        offset += 2 + length
    return found


def registration_replies(packets: list[Packet]) -> list[Reply]:
    """The Registration Replies received in ``packets`` (UDP from port 434 whose first byte is 3)."""
    replies = []
    for packet in packets:
        ports = packet.ports()
        if packet.outgoing or packet.protocol != 17 or ports is None or ports[0] != 434:
            continue
        message = packet.payload[8:]
        if len(message) < REPLY_FIXED or message[0] != REGISTRATION_REPLY:
            continue
        extensions = _extensions(message[REPLY_FIXED:])
        acks = tuple((body[0], body[1], body[2], str(IPv4Address(body[4:8])))
                     for kind, body in extensions if kind == MOBILE_NETWORK and len(body) == 8 and body[0] in (1, 2))
        replies.append(Reply(packet.at, message[1], struct.unpack("!H", message[2:4])[0], acks, packet.source,
                             tuple(kind for kind, _ in extensions)))
    return replies


def acknowledgement_checks(replies: list[Reply], refused: bool) -> list[str]:
    """RFC 5177 4.2 on the wire: every accepted registration (code 0 or 1, lifetime > 0) is answered with
    an explicit acknowledgement of the mobile prefix, code 0; with ``refused`` (the router asks for the
    refused prefix in every request: only a 147 makes it stop, 5.1), each also with code 2
    (MOBNET_UNAUTHORIZED) for the prefix the home agent does not serve, and none ever with success for
    it; deregistrations (lifetime 0) carry none."""
    problems = []
    lan, refused_prefix = LAN_PREFIX.split("/"), REFUSED_PREFIX.split("/")
    served = (1, 0, int(lan[1]), lan[0])
    denied = (1, 2, int(refused_prefix[1]), refused_prefix[0])
    accepted = [r for r in replies if r.code in (0, 1) and r.lifetime > 0]
    if not accepted:
        problems.append(f"no accepted registration reply captured on the node's link: {replies}")
    for reply in accepted:
        if served not in reply.acknowledgements:
            problems.append(f"an accepted reply without the explicit acknowledgement {served}: {reply}")
        if any(a[3] == refused_prefix[0] and a[1] == 0 for a in reply.acknowledgements):
            problems.append(f"the refused prefix acknowledged with success: {reply}")
        extra = [a for a in reply.acknowledgements if a not in (served, denied)]
        if extra:
            problems.append(f"unexpected acknowledgements {extra} in {reply}")
    if refused:
        problems += [f"an accepted reply does not refuse {REFUSED_PREFIX} with code 2: {reply}"
                     for reply in accepted if denied not in reply.acknowledgements]
    if not refused and any(denied in r.acknowledgements for r in accepted):
        problems.append("a refusal for a prefix the node did not ask for")
    for reply in replies:
        if reply.lifetime == 0 and reply.acknowledgements:
            problems.append(f"a deregistration reply with acknowledgements: {reply}")
    return problems


# --- at each stop ---

def routes(namespace: str, prefix: str) -> list[dict[str, Any]]:
    """``ip -j route show table all exact PREFIX`` in ``namespace``."""
    out = ip("-n", namespace, "-j", "route", "show", "table", "all", "exact", prefix)
    return list(json.loads(out or "[]"))


def _operator_route(route: dict[str, Any]) -> bool:
    return route.get("gateway") == MN and int(route.get("metric", 0)) == AT_HOME_METRIC


def route_checks(home_agent: str, away: bool, timeout: float = 3.0) -> tuple[dict[str, Any], list[str]]:
    """The home agent's routes for the mobile prefix: away, mipd's own (metric 0, not via the home
    address) beside the operator's; at home only the operator's. For the refused prefix: none.
    Polled up to ``timeout`` (the move settled on the node's side; the agent's change may lag a little)."""
    deadline = time.monotonic() + timeout
    while True:
        lan, refused = routes(home_agent, LAN_PREFIX), routes(home_agent, REFUSED_PREFIX)
        mipd = [r for r in lan if not _operator_route(r)]
        problems = []
        if not any(_operator_route(r) for r in lan):
            problems.append(f"the operator's route for {LAN_PREFIX} via {MN} metric {AT_HOME_METRIC} is gone: {lan}")
        if away and not (len(mipd) >= 1 and all(int(r.get("metric", 0)) == 0 for r in mipd)):
            problems.append(f"away, but no route of mipd's (metric 0) for {LAN_PREFIX}: {lan}")
        if not away and mipd:
            problems.append(f"at home, mipd's route for {LAN_PREFIX} is still there: {mipd}")
        if refused:
            problems.append(f"a route for the refused prefix {REFUSED_PREFIX}: {refused}")
        if not problems or time.monotonic() > deadline:
            return {"lan": lan, "refused": refused}, problems
        time.sleep(0.1)


def address_checks(far: list[Packet], lan: list[Packet]) -> tuple[dict[str, Any], list[str]]:
    """The LAN host's address end to end in both directions, from captures taken at the same time on the
    correspondent beyond the home agent (``far``) and on the LAN host (``lan``)."""
    problems = []
    # At the correspondent: what came in for its ping and its connection came from the LAN host itself.
    came = [p for p in far if not p.outgoing]
    replies = [p for p in came if p.protocol == 1 and p.payload[:1] == b"\0"]
    segments = [p for p in came if p.protocol == 6 and (p.ports() or (0, 0))[0] == TCP_PORT]
    seen = {"far_echo_replies": sorted({p.source for p in replies}),
            "far_tcp_from": sorted({p.source for p in segments}), "far_received": len(came)}
    if not [p for p in replies if p.source == LAN_HOST and p.destination == FAR]:
        problems.append(f"the correspondent received no echo reply from {LAN_HOST}: {seen}")
    if not [p for p in segments if p.source == LAN_HOST and p.destination == FAR]:
        problems.append(f"the correspondent received no TCP segment from {LAN_HOST}:{TCP_PORT}: {seen}")
    if {p.source for p in replies + segments} != {LAN_HOST}:
        problems.append(f"the LAN host's traffic reached the correspondent from another address: {seen}")
    # At the LAN host: the correspondent's echoes and segments came from the correspondent's address.
    came = [p for p in lan if not p.outgoing]
    requests = [p for p in came if p.protocol == 1 and p.payload[:1] == b"\x08"]
    segments = [p for p in came if p.protocol == 6 and (p.ports() or (0, 0))[1] == TCP_PORT]
    seen |= {"lan_echo_requests": sorted({p.source for p in requests}),
             "lan_tcp_from": sorted({p.source for p in segments}), "lan_received": len(came)}
    if not [p for p in requests if p.source == FAR and p.destination == LAN_HOST]:
        problems.append(f"the LAN host received no echo request from {FAR}: {seen}")
    if not [p for p in segments if p.source == FAR and p.destination == LAN_HOST]:
        problems.append(f"the LAN host received no TCP segment from {FAR}: {seen}")
    if {p.source for p in requests + segments} != {FAR}:
        problems.append(f"the correspondent's traffic reached the LAN host from another address: {seen}")
    # What the LAN host sent went out with its own address (nothing on the node's LAN changes it either).
    sent = {p.source for p in lan if p.outgoing and p.destination == FAR}
    if sent != {LAN_HOST}:
        problems.append(f"the LAN host sent to {FAR} from {sorted(sent)}")
    return seen, problems


def lan_checks(namespace: Callable[[str], str], away: bool, seconds: float = 0.6) -> tuple[dict[str, Any], list[str]]:
    """At one stop: captures on the correspondent beyond the home agent and the LAN host for ``seconds``,
    then the home agent's routes. ``namespace``: the topology's role -> namespace name."""
    far, lan = Capture(namespace("far"), "eth0"), Capture(namespace("lan"), "eth0")
    try:
        far.start()
        lan.start()
        time.sleep(seconds)
    finally:
        far_packets, lan_packets = far.stop(), lan.stop()
    seen, problems = address_checks(far_packets, lan_packets)
    seen["routes"], route_problems = route_checks(namespace("ha"), away)
    return seen, problems + route_problems


def journal_checks(ha: list[dict[str, Any]]) -> tuple[list[list[Any]], list[str]]:
    """The home agent's binding events for the node carry the accepted prefixes (``MIP_MOBILE_NETWORKS``),
    only the mobile prefix, never the refused one."""
    bound = [[e.get("MIP_EVENT"), e.get("MIP_CARE_OF_ADDRESS"), e.get("MIP_MOBILE_NETWORKS")] for e in ha
             if str(e.get("MIP_EVENT", "")).startswith("binding.") and e.get("MIP_HOME_ADDRESS") == MN]
    problems = [f"the home agent's {event} for {coa}: MIP_MOBILE_NETWORKS {networks!r}, expected {LAN_PREFIX}"
                for event, coa, networks in bound if networks != LAN_PREFIX]
    if not bound:
        problems.append("no binding event for the node in the home agent's journal")
    return bound, problems


def node_journal_checks(node: list[dict[str, Any]], refused: bool) -> tuple[list[list[Any]], list[str]]:
    """The router's own ``registration.accepted`` events away (lifetime > 0) carry the served prefix
    (``MIP_MOBILE_NETWORKS``) and, with ``refused``, a warning whose ``MIP_REASON`` names the refused
    prefix and its code 2."""
    accepted = [[e.get("MIP_CARE_OF_ADDRESS"), e.get("MIP_MOBILE_NETWORKS"), e.get("MIP_REASON"), e.get("PRIORITY")]
                for e in node
                if e.get("MIP_EVENT") == "registration.accepted" and str(e.get("MIP_LIFETIME", "0")) != "0"]
    problems = []
    if not accepted:
        problems.append("no registration.accepted event of the router's with a lifetime")
    for coa, networks, reason, priority in accepted:
        if networks != LAN_PREFIX:
            problems.append(f"the router's registration.accepted at {coa}: MIP_MOBILE_NETWORKS {networks!r}")
        if refused and not (REFUSED_PREFIX in str(reason) and "code 2" in str(reason) and str(priority) == "4"):
            problems.append(f"the router's registration.accepted at {coa} does not warn of {REFUSED_PREFIX} "
                            f"refused with code 2: reason {reason!r}, priority {priority}")
    return accepted, problems


@contextlib.contextmanager
def node_link_capture(namespace: str) -> Any:
    """The node's moving interface captured for the whole ``with`` (its registration replies)."""
    capture = Capture(namespace, "eth0").start()
    try:
        yield capture
    finally:
        capture.stop()
