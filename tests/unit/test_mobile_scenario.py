"""Mobile node, foreign agents and home agent engines together, in memory, with one clock."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Interface

from mipd.core.planes import MobilePlane
from mipd.core.security import ReplayProtection
from tests.support.scenario import FA1, FA2, HA, MN, MN_MAC, Network, World, advertisement, build


def setup(**kwargs: object) -> Network:
    world, node, fas, ha = build(**kwargs)  # type: ignore[arg-type]
    net = Network(world, node, fas, ha)
    net.deliver(node.start(world.now), node)
    return net


def binding_coa(net: Network) -> IPv4Address | None:
    bindings = net.ha.bindings.of(MN)
    return bindings[0].care_of_address if bindings else None


def test_registration_through_a_foreign_agent() -> None:
    net = setup()
    net.run_until(0.5)
    assert net.solicitations >= 1  # nothing heard yet: solicit (2.4)
    net.run_until(3.0, advertisers={FA1: advertisement(FA1)})
    reg = net.node.registration
    assert reg is not None and reg.care_of_address == FA1 and net.node.location == "foreign-agent"
    assert binding_coa(net) == FA1
    visitor = net.fas[FA1].visitors.active(MN)
    assert visitor is not None and visitor.link_address == MN_MAC
    assert net.planes[-1] == MobilePlane("foreign-agent", MN, HA, FA1, bytes.fromhex("0200000000f1"), FA1)
    names = [e.event for e in net.world.log if getattr(e, "event", "") in ("registration.sent", "registration.relayed",
                                                                           "registration.accepted")]
    assert names[:4] == ["registration.sent", "registration.relayed", "registration.accepted",
                         "registration.accepted"]  # the node sends, the FA relays, the HA then the node accept


def test_renewal_before_expiry_and_expiry_when_unreachable() -> None:
    net = setup(lifetime=20)
    net.run_until(2.0, advertisers={FA1: advertisement(FA1)})
    first = net.node.registration
    assert first is not None and first.lifetime == 20
    net.run_until(30.0, advertisers={FA1: advertisement(FA1)})
    renewed = net.node.registration
    assert renewed is not None and renewed.identification != first.identification  # renewed in time
    assert net.fas[FA1].visitors.active(MN) is not None and binding_coa(net) == FA1
    assert len(net.events("registration.accepted")) >= 2
    # The foreign agent goes silent and swallows everything: bindings and registration run out.
    net.world.dropped_to.add(FA1)
    net.run_until(80.0)
    assert net.node.registration is None and binding_coa(net) is None
    assert net.events("registration.expired") and net.events("agent.lost")


def test_movement_between_two_foreign_agents() -> None:
    net = setup()
    net.run_until(2.0, advertisers={FA1: advertisement(FA1)})
    assert binding_coa(net) == FA1
    net.run_until(10.0, advertisers={FA2: advertisement(FA2)})  # FA1 silent: lost after its lifetime
    assert binding_coa(net) == FA2 and net.node.location == "foreign-agent"
    assert net.events("movement.detected") and net.fas[FA2].visitors.active(MN) is not None


def test_prefix_change_moves_at_once_while_the_old_agent_still_advertises() -> None:
    net = setup()
    net.run_until(2.0, advertisers={FA1: advertisement(FA1)})
    net.run_until(4.0, advertisers={FA1: advertisement(FA1, sequence=3), FA2: advertisement(FA2)})
    assert binding_coa(net) == FA2  # 2.4.2 algorithm 2: both carry prefixes, and they differ


def test_colocated_registration_without_agents() -> None:
    net = setup(colocated=IPv4Interface("10.9.0.5/24"))
    net.run_until(2.0)
    reg = net.node.registration
    assert reg is not None and reg.care_of_address == IPv4Address("10.9.0.5") and reg.agent is None
    binding = net.ha.bindings.of(MN)[0]
    assert binding.flags & 0x20  # D
    assert net.node.location == "colocated"


def test_return_home_deregisters_after_arp_and_announcement() -> None:
    net = setup()
    net.run_until(2.0, advertisers={FA1: advertisement(FA1)})
    assert binding_coa(net) == FA1
    start = len(net.world.log)
    net.hear(HA, advertisement(HA, home=True))
    tail = net.world.log[start:]
    kinds = [type(a).__name__ for a in tail if type(a).__name__ in ("MobilePlane", "AnnounceHome", "SendDatagram")]
    assert kinds[:3] == ["MobilePlane", "AnnounceHome", "SendDatagram"]  # 4.6: ARP on, announce, deregister
    assert net.planes[-1].location == "home" and binding_coa(net) is None
    assert net.events("home.returned") and net.node.registration is None


def test_identification_resynchronises_after_133() -> None:
    world, node, fas, ha = build()
    world.mn_skew = 3600.0  # the node's clock is an hour ahead
    net = Network(world, node, fas, ha)
    net.deliver(node.start(world.now), node)
    net.run_until(4.0, advertisers={FA1: advertisement(FA1)})
    assert [e.fields["code"] for e in net.events("registration.denied", of=node)] == [133]
    assert node.registration is not None and binding_coa(net) == FA1


def test_nonces_resynchronise_too() -> None:
    net = setup(replay=ReplayProtection.NONCE)
    net.run_until(4.0, advertisers={FA1: advertisement(FA1)})
    assert [e.fields["code"] for e in net.events("registration.denied", of=net.node)] == [133]  # no nonce yet
    assert net.node.registration is not None and binding_coa(net) == FA1


def test_registrations_never_faster_than_one_per_second() -> None:
    """Even with two agents whose prefixes differ advertising every 0.2 s, and a 2 s lifetime."""
    net = setup(lifetime=2)
    sent_at: list[float] = []
    original = net.node._send

    def timed_send(now: float, **kwargs: object) -> list[object]:
        actions = original(now, **kwargs)  # type: ignore[arg-type]
        if any(getattr(a, "event", None) == "registration.sent" for a in actions):
            sent_at.append(now)
        return actions  # type: ignore[return-value]

    net.node._send = timed_send  # type: ignore[method-assign]
    net.run_until(30.0, advertisers={FA1: advertisement(FA1), FA2: advertisement(FA2, prefix=16)}, every=0.2)
    assert len(sent_at) >= 10
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert min(gaps) >= 1.0 - 1e-9  # 2.4.2: never more than one registration per second


def test_world_is_deterministic() -> None:
    a, b = setup(), setup()
    for net in (a, b):
        net.run_until(3.0, advertisers={FA1: advertisement(FA1)})
    assert [type(x).__name__ for x in a.world.log] == [type(x).__name__ for x in b.world.log]
    assert isinstance(a.world, World)
