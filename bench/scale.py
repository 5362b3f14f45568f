"""Binding scale at engine level: the home agent engine (mipd.core.home_agent) driven directly.

One process per size N (``python -m bench.scale N`` prints one JSON object), so that the resident
set measured is this size's alone. N mobile nodes, each with its own security association, send
one authenticated Registration Request each through :meth:`HomeAgent.receive` -- decode, HMAC-MD5
check, replay check, binding, events, reply, as the daemon does minus the sockets. Then the clock
is advanced past the lifetime and one :meth:`HomeAgent.on_timer` expires all N.

- memory per binding: resident set growth (VmRSS) from before the first request to after the
  last, over N. The requests are encoded before the baseline and freed after the measurement, so
  what grows is the engine's state: bindings, the expiry heap, replay state, data-plane record.
- time to register / to expire: wall time over N.

Requests are encoded here with struct and hmac, not with mipd's codec.
"""

from __future__ import annotations

import gc
import hmac
import json
import struct
import sys
import time
from ipaddress import IPv4Address, IPv4Network

from mipd.core.actions import Datagram, SendDatagram
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.core.security import SecurityAssociation

HOME_AGENT = IPv4Address("10.0.0.1")
HOME_NETWORK = IPv4Network("10.0.0.0/8")
CARE_OF = IPv4Address("192.0.2.50")
FIRST_HOST = int(HOME_AGENT) + 255  # 10.0.1.0 on
LIFETIME = 600
WALL0 = 1_790_000_000.0
NTP_UNIX_OFFSET = 2_208_988_800
_REQUEST = struct.Struct("!BBHIIIQ")
_AUTH_HEADER = struct.Struct("!BBI")
D_FLAG = 0x20


def rss_bytes() -> int:
    """This process's resident set (VmRSS) in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def key_of(index: int) -> bytes:
    return struct.pack("!IIII", index, index ^ 0x5A5A5A5A, index * 2654435761 & 0xFFFFFFFF, 0x6D697064)


def request(index: int, identification: int) -> bytes:
    """Node ``index``'s Registration Request with its Mobile-Home Authentication Extension."""
    spi = 256 + index
    covered = _REQUEST.pack(1, D_FLAG, LIFETIME, FIRST_HOST + index, int(HOME_AGENT), int(CARE_OF),
                            identification) + _AUTH_HEADER.pack(32, 20, spi)
    return covered + hmac.digest(key_of(index), covered, "md5")


def measure(count: int) -> dict[str, float | int]:
    nodes = {256 + i: SecurityAssociation(256 + i, key_of(i), IPv4Address(FIRST_HOST + i)) for i in range(count)}
    settings = HomeAgentSettings(address=HOME_AGENT, home_network=HOME_NETWORK, mobile_nodes=nodes,
                                 max_lifetime=1800)
    now = 0.0
    engine = HomeAgent(settings, wall_clock=lambda: WALL0 + now, random32=lambda: 0x12345678)
    seconds = int(WALL0) + NTP_UNIX_OFFSET
    payloads = [request(i, (seconds << 32) | (i & 0xFFFF_FFFF)) for i in range(count)]
    gc.collect()
    before = rss_bytes()

    replies = 0
    started = time.perf_counter()
    for payload in payloads:
        for action in engine.receive(Datagram(payload, CARE_OF, 40000, HOME_AGENT), now):
            if isinstance(action, SendDatagram):
                replies += 1
    register_s = time.perf_counter() - started
    gc.collect()
    grown = rss_bytes() - before
    accepted = engine.counters.accepted
    if accepted != count or len(engine.bindings) != count or replies != count:
        raise RuntimeError(f"{count} requests: {accepted} accepted, {len(engine.bindings)} bindings")
    del payloads

    now = LIFETIME + 1.0
    started = time.perf_counter()
    actions = engine.on_timer(now)
    expire_s = time.perf_counter() - started
    if len(engine.bindings) or engine.next_timer() is not None:
        raise RuntimeError(f"{len(engine.bindings)} bindings left after expiry")
    expired = sum(1 for a in actions if getattr(a, "event", "") == "binding.expired")
    if expired != count:
        raise RuntimeError(f"{expired} of {count} bindings expired")
    return {"bindings": count, "bytes_per_binding": grown / count, "register_s": register_s,
            "register_us_per_binding": register_s / count * 1e6, "expire_s": expire_s,
            "expire_us_per_binding": expire_s / count * 1e6}


def main() -> None:
    print(json.dumps(measure(int(sys.argv[1]))))


if __name__ == "__main__":
    main()
