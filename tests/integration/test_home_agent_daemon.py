"""A real ``mipd run`` home agent in network namespaces, spoken to by an independent encoder.

Requests are built with scapy's Mobile IP layers plus hand-assembled extensions, authenticated
with Python's hmac module, and sent over real sockets from other namespaces; replies are parsed
with scapy and their authenticators checked the same way. Nothing of mipd's codec is used on the
test side. Bindings are read with ``mipctl --json``, events with ``journalctl -o json`` from the
test's own journald, state survives ``kill -9``.
"""

from __future__ import annotations

import hashlib
import hmac
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ

from tests.support import journal as journal_support
from tests.support.daemon import (
    COLOCATED,
    FA,
    FA_SA,
    HA,
    HOME_PEER,
    NODES,
    NONCE_NODE,
    NONCE_SA,
    HomeAgentDaemon,
    Peer,
    build_topology,
    profile_text,
)
from tests.support.journal import Journald
from tests.support.netns import Topology, sysctl, topology

journald = journal_support.journald
NTP_OFFSET = 2_208_988_800
MN1, MN2, MN3, MN4, MN5, MN6, MN7, MN8 = NODES


def ntp_now(skew: float = 0.0) -> int:
    t = time.time() + skew + NTP_OFFSET
    return (int(t) << 32) | int((t % 1) * 2**32)


def auth_ext(ext_type: int, spi: int, key: bytes, covered: bytes) -> bytes:
    header = bytes([ext_type, 20]) + spi.to_bytes(4, "big")
    return header + hmac.new(key, covered + header, hashlib.md5).digest()


D = 0x20  # the node decapsulates itself: a co-located care-of address


def rrq(home: str, *, coa: str = COLOCATED, lifetime: int = 600, flags: int = D, ident: int | None = None,
        ha: str = HA, key: bytes | None = None, spi: int | None = None, before: bytes = b"",
        fa_ha: bool = False, sign: bool = True) -> tuple[bytes, int]:
    """A scapy-built Registration Request with MN-HA (and FA-HA); returns (bytes, identification)."""
    ident = ntp_now() if ident is None else ident
    node_spi, node_key = NODES.get(home, NONCE_SA)
    fixed = bytes(MobileIP(type=1) / MobileIPRRQ(flags=flags, lifetime=lifetime, homeaddr=home, haaddr=ha,
                                                  coaddr=coa, id=ident))
    message = fixed + before
    if sign:
        message += auth_ext(32, node_spi if spi is None else spi, node_key if key is None else key, message)
    if fa_ha:
        message += auth_ext(34, FA_SA[0], FA_SA[1], message)
    return message, ident


def parse_reply(data: bytes, key: bytes) -> dict[str, Any]:
    """scapy's reading of a reply, plus its extensions and whether each authenticator verifies."""
    reply = MobileIP(data)
    rrp = reply[MobileIPRRP]
    fixed_len = 20
    exts, offset = [], fixed_len
    while offset < len(data):
        ext_type, length = data[offset], data[offset + 1]
        exts.append((ext_type, data[offset + 2: offset + 2 + length], offset))
        offset += 2 + length
    checks = {}
    for ext_type, body, at in exts:
        if ext_type in (32, 34):
            secret = key if ext_type == 32 else FA_SA[1]
            expected = hmac.new(secret, data[:at + 6], hashlib.md5).digest()
            checks[ext_type] = hmac.compare_digest(expected, body[4:])
    return {"type": reply.type, "code": rrp.code, "lifetime": rrp.lifetime, "home": rrp.homeaddr,
            "ha": rrp.haaddr, "ident": rrp.id, "ext_types": [e[0] for e in exts], "auth_ok": checks}


# --- fixtures ---

@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    with topology() as t:
        build_topology(t)
        yield t


@pytest.fixture(scope="module")
def home_agent(journald: Journald, topo: Topology, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[HomeAgentDaemon]:
    daemon = HomeAgentDaemon(journald, topo, tmp_path_factory.mktemp("ha"), "ha-main")
    daemon.start()
    yield daemon
    daemon.close()


@pytest.fixture
def mn(topo: Topology) -> Iterator[Peer]:
    peer = Peer(topo.ns("visited"), COLOCATED)
    yield peer
    peer.close()


@pytest.fixture
def fa(topo: Topology) -> Iterator[Peer]:
    peer = Peer(topo.ns("visited"), FA)
    yield peer
    peer.close()


def ask(peer: Peer, home: str, **kwargs: Any) -> dict[str, Any]:
    message, _ = rrq(home, **kwargs)
    answer = peer.ask(message)
    assert answer is not None, "no reply"
    return parse_reply(answer[0], NODES.get(home, NONCE_SA)[1])


# --- tests against one running home agent ---

def test_accepted_registration(home_agent: HomeAgentDaemon, mn: Peer, journald: Journald) -> None:
    message, ident = rrq(MN1, lifetime=1800, flags=D | 0x02)  # T: reverse tunneling requested
    answer = mn.ask(message)
    assert answer is not None
    data, (source, port) = answer
    reply = parse_reply(data, NODES[MN1][1])
    assert (source, port) == (HA, 434)
    assert (reply["type"], reply["code"], reply["lifetime"]) == (3, 0, 900)  # capped at max_lifetime
    assert (reply["home"], reply["ha"], reply["ident"]) == (MN1, HA, ident)
    assert reply["ext_types"] == [32] and reply["auth_ok"] == {32: True}
    bindings = {b["home_address"]: b for b in home_agent.json("bindings")["bindings"]}
    entry = bindings[MN1]
    assert (entry["care_of_address"], entry["lifetime_granted"], entry["flags"], entry["spi"]) == \
        (COLOCATED, 900, "DT", NODES[MN1][0])
    assert entry["identification"] == f"{ident:016x}" and entry["foreign_agent"] is None
    assert 895 <= entry["lifetime_remaining"] <= 900
    added = journald.entries(MIP_EVENT="binding.added", MIP_INSTANCE="ha-main", MIP_HOME_ADDRESS=MN1)[0]
    assert (added["SYSLOG_IDENTIFIER"], added["MIP_ROLE"], added["MIP_CARE_OF_ADDRESS"]) == \
        ("mipd", "home-agent", COLOCATED)
    assert (added["MIP_LIFETIME"], added["MIP_SPI"], added["MIP_HOME_AGENT"]) == ("900", str(NODES[MN1][0]), HA)
    accepted = journald.entries(MIP_EVENT="registration.accepted", MIP_HOME_ADDRESS=MN1)[0]
    assert accepted["MIP_CODE"] == "0" and accepted["PRIORITY"] == "6"


@pytest.mark.parametrize(
    ("name", "home", "kwargs", "code"),
    [
        ("bad authenticator", MN2, {"key": bytes(16)}, 131),
        ("reserved x bit", MN2, {"flags": D | 0x01}, 134),
        ("home agent field not ours", MN2, {"ha": "10.1.0.99"}, 136),
        ("home address of another node's SA", MN2, {"spi": NODES[MN3][0], "key": NODES[MN3][1]}, 129),
        ("GRE not offered", MN2, {"flags": D | 0x08}, 139),
    ],
)
def test_denials(home_agent: HomeAgentDaemon, mn: Peer, journald: Journald, name: str, home: str,
                 kwargs: dict[str, Any], code: int) -> None:
    reply = parse_reply(mn.ask(rrq(home, **kwargs)[0])[0], kwargs.get("key", NODES[home][1]))  # type: ignore[index]
    assert reply["code"] == code, name
    if code == 131:  # the reply is signed with the SA the SPI selects, not the forged key
        reply = parse_reply(mn.ask(rrq(home, **kwargs)[0])[0], NODES[home][1])  # type: ignore[index]
    assert reply["auth_ok"][32] is True
    if code == 136:
        assert reply["ha"] == HA
    assert journald.entries(MIP_EVENT="registration.denied", MIP_CODE=str(code), MIP_INSTANCE="ha-main")


def test_stale_timestamp_gets_133_with_our_clock(home_agent: HomeAgentDaemon, mn: Peer) -> None:
    message, ident = rrq(MN2, ident=ntp_now(skew=-3600))
    reply = parse_reply(mn.ask(message)[0], NODES[MN2][1])  # type: ignore[index]
    assert reply["code"] == 133
    assert reply["ident"] & 0xFFFFFFFF == ident & 0xFFFFFFFF
    assert abs((reply["ident"] >> 32) - (ntp_now() >> 32)) <= 5


def test_request_to_the_subnet_broadcast_gets_136_from_our_address(home_agent: HomeAgentDaemon,
                                                                   topo: Topology) -> None:
    peer = Peer(topo.ns("home"), HOME_PEER)
    try:
        answer = peer.ask(rrq(MN2, coa=HOME_PEER, ha="10.1.0.255")[0], to="10.1.0.255")
    finally:
        peer.close()
    assert answer is not None
    data, (source, _) = answer
    reply = parse_reply(data, NODES[MN2][1])
    assert (reply["code"], reply["ha"], source) == (136, HA, HA)


def test_nonce_replay_protection(home_agent: HomeAgentDaemon, mn: Peer) -> None:
    first = ask(mn, NONCE_NODE, ident=0x1111)
    assert first["code"] == 133 and first["ident"] & 0xFFFFFFFF == 0x1111
    nonce = first["ident"] >> 32
    second = ask(mn, NONCE_NODE, ident=(nonce << 32) | 0x2222)
    assert second["code"] == 0 and second["ident"] >> 32 != nonce


def test_silent_discards_are_counted(home_agent: HomeAgentDaemon, mn: Peer, journald: Journald) -> None:
    before = home_agent.json("stats")["counters"]["dropped"]
    fixed, _ = rrq(MN4, sign=False)
    cases = {
        "no_sa": rrq(MN4, spi=9999)[0],
        "no_auth": fixed,
        "malformed": fixed[:10],
        "unknown_extension": rrq(MN4, before=bytes([50, 2, 0, 0]))[0],
    }
    for payload in cases.values():
        assert mn.ask(payload, timeout=0.5) is None
    after = home_agent.json("stats")["counters"]["dropped"]
    for reason in cases:
        assert after.get(reason, 0) == before.get(reason, 0) + 1, reason
    dropped = journald.entries(count=1, MIP_EVENT="packet.dropped", MIP_REASON="no-sa")
    assert dropped[0]["PRIORITY"] == "5"


def test_skippable_unknown_extension_is_skipped(home_agent: HomeAgentDaemon, mn: Peer) -> None:
    assert ask(mn, MN4, before=bytes([200, 3, 1, 2, 3]))["code"] == 0


def test_relayed_by_a_foreign_agent(home_agent: HomeAgentDaemon, fa: Peer) -> None:
    assert ask(fa, MN5, coa=FA, flags=0)["code"] == 132  # the FA has an SA: FA-HA is required
    reply = ask(fa, MN5, coa=FA, flags=0, fa_ha=True)
    assert reply["code"] == 0 and reply["ext_types"] == [32, 34]
    assert reply["auth_ok"] == {32: True, 34: True}
    entry = next(b for b in home_agent.json("bindings")["bindings"] if b["home_address"] == MN5)
    assert entry["foreign_agent"] == FA and entry["care_of_address"] == FA


def test_deregistration_and_flush(home_agent: HomeAgentDaemon, mn: Peer, journald: Journald) -> None:
    assert ask(mn, MN6)["code"] == 0
    dereg = ask(mn, MN6, lifetime=0)
    assert (dereg["code"], dereg["lifetime"]) == (0, 0)
    assert MN6 not in [b["home_address"] for b in home_agent.json("bindings")["bindings"]]
    assert journald.entries(MIP_EVENT="binding.removed", MIP_HOME_ADDRESS=MN6, MIP_REASON="deregistered")
    assert ask(mn, MN6)["code"] == 0
    assert home_agent.json("flush", MN6) == {"home_address": MN6, "removed": 1}
    assert journald.entries(MIP_EVENT="binding.removed", MIP_HOME_ADDRESS=MN6, MIP_REASON="flushed")
    again = home_agent.mipctl("flush", MN6)
    assert again.returncode == 1 and "no binding" in again.stderr


def test_binding_expires_without_a_reply(home_agent: HomeAgentDaemon, mn: Peer, journald: Journald) -> None:
    assert ask(mn, MN7, lifetime=1)["lifetime"] == 1
    assert mn.ask(b"", timeout=0.01) is None  # (an empty datagram: dropped as malformed)
    expired = journald.entries(MIP_EVENT="binding.expired", MIP_HOME_ADDRESS=MN7, timeout=5)
    assert expired[0]["MIP_CARE_OF_ADDRESS"] == COLOCATED
    assert MN7 not in [b["home_address"] for b in home_agent.json("bindings")["bindings"]]
    mn.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        mn.sock.recvfrom(2048)  # 3.8: no reply merely because a binding expired


def test_status_and_log_level(home_agent: HomeAgentDaemon) -> None:
    status = home_agent.json("status")
    assert (status["role"], status["instance"], status["backend"]) == ("home-agent", "ha-main", "userspace")
    assert status["bindings"] == len(home_agent.json("bindings")["bindings"])
    assert home_agent.json("log-level", "debug") == {"log_level": "debug"}
    assert home_agent.json("log-level", "info") == {"log_level": "info"}


# --- tests that start their own daemon ---

@pytest.fixture
def own_daemon(journald: Journald, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HomeAgentDaemon]:
    """A home agent of the test's own, in namespaces of its own (two agents cannot share an address)."""
    with topology() as topo:
        build_topology(topo)
        daemon = HomeAgentDaemon(journald, topo, tmp_path, f"ha-{request.node.name[5:25]}".replace("_", "-"))
        try:
            yield daemon
        finally:
            daemon.close()


@pytest.fixture
def own_mn(own_daemon: HomeAgentDaemon) -> Iterator[Peer]:
    peer = Peer(own_daemon.topo.ns("visited"), COLOCATED)
    yield peer
    peer.close()


@pytest.fixture
def own_fa(own_daemon: HomeAgentDaemon) -> Iterator[Peer]:
    peer = Peer(own_daemon.topo.ns("visited"), FA)
    yield peer
    peer.close()


def test_a_second_agent_on_the_same_address_refuses_to_start(home_agent: HomeAgentDaemon, journald: Journald,
                                                             topo: Topology, tmp_path: Path) -> None:
    second = HomeAgentDaemon(journald, topo, tmp_path, "ha-second")
    try:
        second.start(wait=False)
        assert second.wait() == 1
        assert "in use" in second.stderr.read_text() or "busy" in second.stderr.read_text()
    finally:
        second.close()
    assert home_agent.mipctl("status").returncode == 0  # the first one is unharmed


def test_kill_9_and_restart_keep_bindings_and_refuse_replays(own_daemon: HomeAgentDaemon, own_fa: Peer,
                                                             own_mn: Peer, journald: Journald) -> None:
    home_agent, fa, mn = own_daemon, own_fa, own_mn
    home_agent.start()
    first, _ = rrq(MN8, coa=COLOCATED, lifetime=600)
    assert parse_reply(mn.ask(first)[0], NODES[MN8][1])["code"] == 0  # type: ignore[index]
    assert ask(fa, MN8, coa=FA, flags=0, lifetime=600, fa_ha=True)["code"] == 0  # replaces the first binding
    assert ask(mn, MN1, lifetime=300)["code"] == 0
    before = {b["home_address"]: b for b in home_agent.json("bindings")["bindings"]}
    home_agent.kill9()
    home_agent.start()
    after = {b["home_address"]: b for b in home_agent.json("bindings")["bindings"]}
    assert set(after) == set(before) == {MN8, MN1}
    for home, entry in after.items():
        assert {k: v for k, v in entry.items() if k != "lifetime_remaining"} == \
            {k: v for k, v in before[home].items() if k != "lifetime_remaining"}
        assert 0 < entry["lifetime_remaining"] <= before[home]["lifetime_remaining"]
    # The first request, replayed: older than the last accepted Identification, refused.
    assert parse_reply(mn.ask(first)[0], NODES[MN8][1])["code"] == 133  # type: ignore[index]
    started = journald.entries(count=2, MIP_EVENT="daemon.started", MIP_INSTANCE=home_agent.instance)
    assert "restored" in started[-1]["MESSAGE"] and started[-1]["MIP_REASON"].startswith("backend userspace: auto: ")


def test_reload_applies_new_sas_and_rejects_a_bad_profile(own_daemon: HomeAgentDaemon, own_mn: Peer,
                                                          journald: Journald) -> None:
    home_agent, mn = own_daemon, own_mn
    home_agent.start()
    new_home, new_key = "10.1.0.40", bytes(range(50, 66))
    assert mn.ask(rrq(new_home, spi=500, key=new_key)[0], timeout=0.5) is None  # unknown SPI: discarded
    home_agent.write_profile(profile_text(home_agent.state, home_agent.socket,
                                          extra_nodes=f"  - {{home_address: {new_home}, spi: 500, "
                                                      f"key: \"{new_key.hex()}\"}}\n"))
    home_agent.signal(signal.SIGHUP)
    journald.entries(MIP_EVENT="daemon.reloaded", MIP_INSTANCE=home_agent.instance)
    reply = parse_reply(mn.ask(rrq(new_home, spi=500, key=new_key)[0])[0], new_key)  # type: ignore[index]
    assert reply["code"] == 0 and reply["auth_ok"] == {32: True}
    home_agent.write_profile("role: home-agent\naddress: [not, an, address]\n")
    out = home_agent.mipctl("reload")
    assert out.returncode == 1 and "old profile keeps running" in out.stderr
    assert journald.entries(MIP_EVENT="config.rejected", MIP_INSTANCE=home_agent.instance)
    assert ask(mn, MN3)["code"] == 0  # still serving with the old profile
    assert new_home in [b["home_address"] for b in home_agent.json("bindings")["bindings"]]


def test_sigterm_stops_cleanly(own_daemon: HomeAgentDaemon, journald: Journald) -> None:
    ha = own_daemon.topo.ns("ha")
    found = {name: sysctl(ha, name) for name in ("ip_forward", "conf/home0/send_redirects", "conf/all/rp_filter")}
    own_daemon.start()
    assert own_daemon.socket.exists()
    assert (sysctl(ha, "ip_forward"), sysctl(ha, "conf/home0/send_redirects")) == ("1", "0")
    own_daemon.signal(signal.SIGTERM)
    assert own_daemon.wait() == 0
    assert not own_daemon.socket.exists()
    assert {name: sysctl(ha, name) for name in found} == found  # host settings restored at stop
    assert journald.entries(MIP_EVENT="daemon.stopping", MIP_INSTANCE=own_daemon.instance)


def test_invalid_profile_refuses_to_start(own_daemon: HomeAgentDaemon, journald: Journald) -> None:
    own_daemon.write_profile("role: home-agent\ninterface: home0\naddress: 10.1.0.1\n")
    own_daemon.start(wait=False)
    assert own_daemon.wait() == 1
    assert "home_network" in own_daemon.stderr.read_text()
    assert journald.entries(MIP_EVENT="config.rejected", MIP_INSTANCE=own_daemon.instance)


def test_reply_ports_are_copied(home_agent: HomeAgentDaemon, mn: Peer) -> None:
    """3.8.3.1: the reply goes to the request's source port, from 434."""
    answer = mn.ask(rrq(MN3)[0])
    assert answer is not None and answer[1] == (HA, 434)
    assert struct.unpack("!B", answer[0][:1])[0] == 3
