"""The rate limit on 131 and 133 replies per node and per source (mipd/core/reply_limit.py), in the
home agent engine: a forger or a replaying attacker cannot make it answer, commit and re-nonce at
will, and the node itself is answered again once the flood stops (mipd(8) "Overload protection")."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mipd.core.actions import Emit, PersistNode
from mipd.core.reply_limit import BURST, MAX_KEYS, REFILL_PER_S, ReplyLimit
from mipd.core.security import ReplayProtection
from tests.support.registration import COA, KEY, KEY2, MN, MN2, Clock, datagram, engine, replies, request

SOURCES = [IPv4Address(f"198.18.{i // 250}.{i % 250 + 1}") for i in range(400)]  # spoofed, one each


@pytest.fixture
def clock() -> Clock:
    return Clock(now=100.0)


def forged(clock: Clock) -> bytes:
    return request(clock, key=KEY2).encode()  # the configured SPI 256, the wrong key: 131


def test_a_node_gets_a_burst_of_131_then_none_whatever_the_sources(clock: Clock) -> None:
    ha = engine(clock)
    answered = [bool(replies(ha.receive(datagram(forged(clock), source), clock.now))) for source in SOURCES[:50]]
    assert answered == [True] * BURST + [False] * 40  # each source fails once: only the node's budget limits
    assert ha.counters.denied[131] == BURST and ha.counters.dropped["reply-rate-limited"] == 40


def test_an_unanswered_denial_changes_nothing_and_emits_nothing(clock: Clock) -> None:
    ha = engine(clock)
    for source in SOURCES[:BURST]:
        ha.receive(datagram(forged(clock), source), clock.now)
    actions = ha.receive(datagram(forged(clock), SOURCES[BURST]), clock.now)
    assert actions == []  # no reply, no commit, no event: the periodic summary tells (mipd(8))


def test_the_node_is_answered_again_within_the_refill_interval_and_accepted_throughout(clock: Clock) -> None:
    ha = engine(clock)
    for source in SOURCES[:BURST + 20]:
        ha.receive(datagram(forged(clock), source), clock.now)
    [(_, reply)] = replies(ha.receive(datagram(request(clock), COA), clock.now))
    assert reply.code == 0  # an accepted registration never spends the limit
    assert not replies(ha.receive(datagram(forged(clock), SOURCES[-1]), clock.now))
    clock.now += 1.01 / REFILL_PER_S
    [(_, reply)] = replies(ha.receive(datagram(forged(clock), SOURCES[-1]), clock.now))
    assert reply.code == 131


def test_a_replayed_request_gets_a_burst_of_133_per_source(clock: Clock) -> None:
    ha = engine(clock)
    old = request(clock).encode()
    assert replies(ha.receive(datagram(old, COA), clock.now))[0][1].code == 0
    clock.now += 1.0
    assert replies(ha.receive(datagram(request(clock).encode(), COA), clock.now))[0][1].code == 0
    codes = [[r.code for _, r in replies(ha.receive(datagram(old, COA), clock.now))] for _ in range(BURST + 5)]
    assert codes == [[133]] * BURST + [[]] * 5  # the earlier request replayed


def test_a_limited_denial_to_a_nonce_node_keeps_its_nonce(clock: Clock) -> None:
    ha = engine(clock)
    assert ha.settings.mobile_nodes[257].replay is ReplayProtection.NONCE
    wrong = request(clock, home=MN2, spi=257, key=KEY).encode()  # MN2's SPI, the wrong key
    for source in SOURCES[:BURST]:
        ha.receive(datagram(wrong, source), clock.now)
    before = dict(ha._replay)
    actions = ha.receive(datagram(wrong, SOURCES[BURST]), clock.now)
    assert not [a for a in actions if isinstance(a, (PersistNode, Emit))] and ha._replay == before


def test_the_limit_takes_both_buckets_and_bounds_memory() -> None:
    limit = ReplyLimit(burst=2, refill_per_s=1.0, max_keys=3)
    assert limit.take(MN, "a", 0.0) and limit.take(MN, "b", 0.0)
    assert not limit.take(MN, "c", 0.0)  # the node's bucket is empty
    assert limit.take(IPv4Address("10.1.0.99"), "a", 0.0)
    assert not limit.take(IPv4Address("10.1.0.98"), "a", 0.0)  # the source's bucket is empty
    assert limit.take(MN, "c", 1.0)  # one token back per second
    for i in range(10):
        limit.take(IPv4Address(0x0A000000 + i), f"s{i}", 2.0)
    assert len(limit._nodes) <= 3 and len(limit._sources) <= 3
    with pytest.raises(ValueError, match="burst"):
        ReplyLimit(burst=0)


def test_mipd_8_states_the_limit_as_the_code_has_it() -> None:
    text = Path(__file__).resolve().parents[2].joinpath("man", "mipd.8").read_text()
    section = text[text.index('.SS "Overload protection"'):]
    section = section[:section.index("\n.S")]
    assert f"{BURST} replies back to back" in section
    assert f"{REFILL_PER_S:g} a second" in section
    assert f"{MAX_KEYS} nodes and sources" in section
    assert "reply\\-rate\\-limited" in section and "socket\\-queue" in section
