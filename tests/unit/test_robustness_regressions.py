"""Regressions found by the fuzz harnesses and the engine state machines (docs/robustness.md).

Each test names the machine or harness that found it and the invariant it broke.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

from mipd.core.actions import Datagram, Emit, PersistVisitor, SendToNode
from mipd.core.foreign_agent import ForeignAgent, ForeignAgentSettings, NodeRequest
from mipd.core.planes import VisitorPlane
from mipd.core.security import SecurityAssociation
from mipd.core.wire.auth import Algorithm, append_authentication
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags, decode_registration
from tests.support.scenario import HA as SCENARIO_HA
from tests.support.scenario import MN as SCENARIO_MN
from tests.support.scenario import Network, advertisement, build

HA, COA, MN = IPv4Address("10.1.0.1"), IPv4Address("10.2.0.2"), IPv4Address("10.1.0.10")
HA_FA_KEY, MN_HA_KEY = bytes(range(40, 56)), bytes(range(16))
MAC = bytes.fromhex("02000000000a")


def test_a_deregistration_answered_with_a_lifetime_makes_no_visitor() -> None:
    """tests/property/test_foreign_agent_machine.py, "nothing outlives its lifetime": a node asks
    for Lifetime 0 (deregistration), its home agent accepts with a non-zero Lifetime. The foreign
    agent granted min(reply, maximum, requested) = 0 and made an active visitor with no lifetime:
    delivery installed and persisted for an entry already expired. It must end the visit instead."""
    clock = [1_790_000_000.0]
    fa = ForeignAgent(ForeignAgentSettings(COA, frozenset({COA}),
                                           home_agents={HA: {500: SecurityAssociation(500, HA_FA_KEY, HA)}}),
                      wall_clock=lambda: clock[0])
    identification = 0xE000_0000_0000_0001
    request = RegistrationRequest(RequestFlags(0), 0, MN, HA, COA, identification)
    request = append_authentication(request, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, MN_HA_KEY,
                                    Algorithm.HMAC_MD5)
    fa.from_node(NodeRequest(request.encode(), MN, 5000, COA, MAC, 255), 50.0)
    reply = RegistrationReply(0, 10, MN, HA, identification)
    reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, MN_HA_KEY,
                                  Algorithm.HMAC_MD5)
    reply = append_authentication(reply, ExtensionType.FOREIGN_HOME_AUTHENTICATION, 500, HA_FA_KEY,
                                  Algorithm.HMAC_MD5)
    actions = fa.from_home_agent(Datagram(reply.encode(), HA, 434, COA, 40000), 50.0)
    assert fa.visitors.active(MN) is None
    assert not [a for a in actions if isinstance(a, PersistVisitor | VisitorPlane) and
                getattr(a, "visitor", getattr(a, "delivery", None)) is not None]
    assert not [a for a in actions if isinstance(a, Emit) and a.event == "visitor.added"]
    relayed = [a for a in actions if isinstance(a, SendToNode)]
    assert len(relayed) == 1  # the node still gets its reply
    answer = decode_registration(relayed[0].payload)
    assert isinstance(answer, RegistrationReply) and answer.code == 0


def test_a_renewal_that_cannot_be_sent_does_not_keep_the_timer_due() -> None:
    """tests/property/test_mobile_node_machine.py, the daemon's timer loop: a node registered with a
    co-located address loses that address before its renewal time and hears no agent. At renew_at
    it has nowhere to renew from, sent nothing, and ``next_timer()`` stayed at renew_at: the daemon's
    one timer fired again and again at once, a busy loop until the registration expired (20% of
    the lifetime: six minutes at the default 1800 s). It must look again a second later instead."""
    world, node, fas, ha = build(lifetime=40)
    net = Network(world, node, fas, ha)
    net.deliver(node.start(0.0), node)
    net.deliver(node.addresses([IPv4Interface("10.7.0.20/24")], 0.0), node)
    registration = node.registration
    assert registration is not None and registration.care_of_address == IPv4Address("10.7.0.20")
    net.deliver(node.addresses([], 0.0), node)
    world.now = registration.renew_at
    firings = 0
    while (deadline := node.next_timer()) is not None and deadline <= world.now and firings < 10:
        net.deliver(node.on_timer(world.now), node)
        firings += 1
    assert firings == 1, f"the timer stayed due at {world.now} after {firings} firings"
    later = node.next_timer()
    assert later is not None and world.now < later <= world.now + 1.0
    world.now = registration.expires
    net.deliver(node.on_timer(world.now), node)
    assert node.registration is None  # it still expires on time


def test_a_deregistration_answered_after_leaving_home_again_is_followed_by_a_registration() -> None:
    """tests/property/test_mobile_node_machine.py, "a registered node has its binding": the node
    goes home (its home agent advertises), its deregistration goes unanswered, and it leaves again
    (the advertisement runs out; its co-located address is still there). When the deregistration
    is then accepted, the binding is gone: the node must register again from where it is, not
    stay "colocated" with no registration and no binding until some later timer."""
    world, node, fas, ha = build(lifetime=40)
    net = Network(world, node, fas, ha)
    colocated = IPv4Interface("10.7.0.20/24")
    net.deliver(node.start(0.0), node)
    net.deliver(node.addresses([colocated], 0.0), node)
    assert node.registration is not None and ha.bindings.of(SCENARIO_MN)
    world.now = 0.5
    world.dropped_to.add(SCENARIO_HA)  # the deregistration goes unanswered
    net.hear(SCENARIO_HA, advertisement(SCENARIO_HA, home=True, lifetime=3))
    assert node.location == "home"
    net.run_until(4.0)  # the advertisement runs out: away again, co-located
    assert node.location == "colocated"
    world.dropped_to.discard(SCENARIO_HA)
    deadline = node.next_timer()
    assert deadline is not None
    world.now = deadline  # the deregistration's retransmission, now answered
    net.deliver(node.on_timer(world.now), node)
    assert node.registration is None  # deregistered: the binding is gone ...
    # ... so a new registration is under way at once (sent, or deferred by the once-a-second rule)
    pending = node.attempt.request.care_of_address if node.attempt is not None else \
        node._deferred[2] if node._deferred is not None else None
    assert pending == colocated.ip
    net.run_until(world.now + 1.5)  # at most once a second (2.4.2): the new registration goes out
    assert node.location == "colocated"
    assert node.registration is not None and node.registration.care_of_address == colocated.ip
    assert [b.care_of_address for b in ha.bindings.of(SCENARIO_MN)] == [colocated.ip]
