"""The home agent's RFC 3519 decisions: UDP Tunnel Request in, UDP Tunnel Reply and outer endpoint out."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from mipd.core.actions import Emit
from mipd.core.planes import HALF_BOUND, DataPlane, UdpTunnelEndpoint
from mipd.core.security import SecurityAssociation
from mipd.core.wire.auth import Algorithm, verify
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.nat import (
    Encapsulation,
    UdpTunnelReply,
    UdpTunnelReplyFlags,
    UdpTunnelRequest,
    UdpTunnelRequestFlags,
)
from mipd.core.wire.registration import RegistrationReply, RequestFlags
from mipd.core.wire.tunnel import Encapsulation as Carried
from tests.support.registration import (
    COA,
    FA,
    FA_KEY,
    KEY,
    MN,
    Clock,
    datagram,
    engine,
    events,
    only_reply,
    request,
)

NAT = IPv4Address("192.0.2.7")  # the NAT's public address: the request's IP source
D = RequestFlags.D
ASK = UdpTunnelRequest()
FORCE = UdpTunnelRequest(UdpTunnelRequestFlags.F)


def tunnel_reply(reply: RegistrationReply) -> UdpTunnelReply | None:
    found = [e for e in reply.extensions if isinstance(e, UdpTunnelReply)]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_nat_detected_assents_with_keepalive_covered_by_the_authenticator(clock: Clock) -> None:
    ha = engine(clock, keepalive_interval=30)
    actions = ha.receive(datagram(request(clock, flags=D, before=(ASK,)), source=NAT, port=61000), clock.now)
    send, reply = only_reply(actions)
    assert reply.code == ReplyCode.ACCEPTED and (send.destination, send.destination_port) == (NAT, 61000)
    assert reply.extensions[0] == UdpTunnelReply(0, UdpTunnelReplyFlags(0), 30)
    assert reply.extensions[1].type == ExtensionType.MOBILE_HOME_AUTHENTICATION  # the reply extension first
    assert verify(reply, 1, KEY, Algorithm.HMAC_MD5)
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.outer == UdpTunnelEndpoint(NAT, 61000) and binding.foreign_agent is None
    planes = [a for a in actions if isinstance(a, DataPlane)]
    assert len(planes) == 1 and planes[0].endpoints[0].outer == UdpTunnelEndpoint(NAT, 61000)
    added = next(a for a in actions if isinstance(a, Emit) and a.event == "binding.added")
    assert (added.fields["outer_address"], added.fields["outer_port"]) == ("192.0.2.7", 61000)


def test_a_new_nat_mapping_on_reregistration_moves_the_outer_endpoint(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock, flags=D, before=(ASK,)), source=NAT, port=61000), clock.now)
    clock.now += 5
    actions = ha.receive(datagram(request(clock, flags=D, before=(ASK,)), source=NAT, port=62000), clock.now)
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.outer == UdpTunnelEndpoint(NAT, 62000)
    planes = [a for a in actions if isinstance(a, DataPlane)]
    assert [p.endpoints[0].outer for p in planes] == [UdpTunnelEndpoint(NAT, 62000)]
    assert "binding.renewed" in events(actions)


def test_no_nat_and_no_force_declines_and_binds_ip_in_ip(clock: Clock) -> None:
    ha = engine(clock)
    _, reply = only_reply(ha.receive(datagram(request(clock, flags=D, before=(ASK,))), clock.now))
    assert reply.code == ReplyCode.ACCEPTED
    found = tunnel_reply(reply)
    assert found is not None and found.code == 64 and not found.accepted
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.outer is None


def test_force_tunnels_without_a_nat_and_says_forced(clock: Clock) -> None:
    ha = engine(clock)
    _, reply = only_reply(ha.receive(datagram(request(clock, flags=D, before=(FORCE,)), port=434), clock.now))
    found = tunnel_reply(reply)
    assert found is not None and found.accepted and found.flags & UdpTunnelReplyFlags.F
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.outer == UdpTunnelEndpoint(COA, 434)


def test_mobile_node_placed_request_without_d_is_134(clock: Clock) -> None:
    ha = engine(clock)
    _, reply = only_reply(ha.receive(datagram(request(clock, before=(ASK,)), source=NAT), clock.now))
    assert reply.code == ReplyCode.HA_POORLY_FORMED_REQUEST and tunnel_reply(reply) is None
    assert len(ha.bindings) == 0


def test_foreign_agent_placed_request_with_d_is_134(clock: Clock) -> None:
    ha = engine(clock)
    msg = request(clock, flags=D, after=(ASK,), fa_ha=(300, FA_KEY))
    _, reply = only_reply(ha.receive(datagram(msg, source=FA), clock.now))
    assert reply.code == ReplyCode.HA_POORLY_FORMED_REQUEST


def test_foreign_agent_behind_a_nat_gets_the_tunnel_to_its_mapping(clock: Clock) -> None:
    """RFC 3519 4.5: the agent is known by its care-of address (its FA-HA SA is the one it shares with
    us under that address), not by the NAT's address its request comes from; the reply's extension
    goes after MN-HA and before FA-HA, where the agent finds it."""
    ha = engine(clock, foreign_agents={FA: {300: SecurityAssociation(300, FA_KEY, FA)}})
    msg = request(clock, coa=FA, after=(ASK,), fa_ha=(300, FA_KEY))
    _, reply = only_reply(ha.receive(datagram(msg, source=NAT, port=50434), clock.now))
    assert reply.code == ReplyCode.ACCEPTED
    found = tunnel_reply(reply)
    assert found is not None and found.accepted
    types = [e.type for e in reply.extensions]
    assert types == [ExtensionType.MOBILE_HOME_AUTHENTICATION, 44, ExtensionType.FOREIGN_HOME_AUTHENTICATION]
    binding = ha.bindings.get(MN, FA)
    assert binding is not None and binding.outer == UdpTunnelEndpoint(NAT, 50434) and binding.foreign_agent == FA


@pytest.mark.parametrize(("encapsulation", "flags"), [
    (Encapsulation.GRE, D), (Encapsulation.MINIMAL, D), (Encapsulation.UNSPECIFIED, D | RequestFlags.G),
    (Encapsulation.UNSPECIFIED, D | RequestFlags.M),
])
def test_gre_or_minimal_inside_udp_is_142(clock: Clock, encapsulation: Encapsulation, flags: RequestFlags) -> None:
    ha = engine(clock, encapsulations=frozenset(Carried))
    msg = request(clock, flags=flags, before=(UdpTunnelRequest(encapsulation=encapsulation),))
    _, reply = only_reply(ha.receive(datagram(msg, source=NAT), clock.now))
    assert reply.code == ReplyCode.HA_UDP_ENCAP_UNAVAIL


def test_gre_asked_without_a_nat_is_declined_not_142(clock: Clock) -> None:
    """3.1.4: when no UDP tunnelling is needed, M and G decide the ordinary tunnel."""
    ha = engine(clock, encapsulations=frozenset(Carried))
    msg = request(clock, flags=D | RequestFlags.G, before=(UdpTunnelRequest(encapsulation=Encapsulation.GRE),))
    _, reply = only_reply(ha.receive(datagram(msg), clock.now))
    found = tunnel_reply(reply)
    assert reply.code == ReplyCode.ACCEPTED and found is not None and not found.accepted


def test_forced_behind_a_nat_says_forced_too(clock: Clock) -> None:
    ha = engine(clock)
    _, reply = only_reply(ha.receive(datagram(request(clock, flags=D, before=(FORCE,)), source=NAT), clock.now))
    found = tunnel_reply(reply)
    assert found is not None and found.accepted and found.flags & UdpTunnelReplyFlags.F


def test_ip_in_ip_named_explicitly_is_accepted(clock: Clock) -> None:
    ha = engine(clock)
    msg = request(clock, flags=D, before=(UdpTunnelRequest(encapsulation=Encapsulation.IP_IN_IP),))
    _, reply = only_reply(ha.receive(datagram(msg, source=NAT), clock.now))
    found = tunnel_reply(reply)
    assert reply.code == ReplyCode.ACCEPTED and found is not None and found.accepted


def test_nat_traversal_off_ignores_the_extension(clock: Clock) -> None:
    ha = engine(clock, nat_traversal="off")
    _, reply = only_reply(ha.receive(datagram(request(clock, flags=D, before=(FORCE,)), source=NAT), clock.now))
    assert reply.code == ReplyCode.ACCEPTED and tunnel_reply(reply) is None
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.outer is None


def test_required_denies_a_natted_request_without_the_extension_129(clock: Clock) -> None:
    ha = engine(clock, nat_traversal="required")
    _, reply = only_reply(ha.receive(datagram(request(clock, flags=D), source=NAT), clock.now))
    assert reply.code == ReplyCode.HA_ADMINISTRATIVELY_PROHIBITED
    clock.now += 1
    _, reply = only_reply(ha.receive(datagram(request(clock, flags=D)), clock.now))  # no NAT: fine
    assert reply.code == ReplyCode.ACCEPTED
    clock.now += 1
    _, reply = only_reply(ha.receive(datagram(request(clock, flags=D, before=(ASK,)), source=NAT), clock.now))
    found = tunnel_reply(reply)
    assert reply.code == ReplyCode.ACCEPTED and found is not None and found.accepted


def test_allowed_accepts_a_natted_request_without_the_extension_as_ip_in_ip(clock: Clock) -> None:
    ha = engine(clock)
    _, reply = only_reply(ha.receive(datagram(request(clock, flags=D), source=NAT), clock.now))
    assert reply.code == ReplyCode.ACCEPTED and tunnel_reply(reply) is None


def test_a_duplicate_gets_the_same_assent(clock: Clock) -> None:
    ha = engine(clock)
    msg = request(clock, flags=D, before=(ASK,))
    ha.receive(datagram(msg, source=NAT), clock.now)
    _, reply = only_reply(ha.receive(datagram(msg, source=NAT), clock.now + 1))
    found = tunnel_reply(reply)
    assert found is not None and found.accepted and found.keepalive_interval == 110


def test_denials_carry_no_tunnel_reply_and_deregistration_ignores_the_extension(clock: Clock) -> None:
    ha = engine(clock)
    ha.receive(datagram(request(clock, flags=D, before=(ASK,)), source=NAT), clock.now)
    clock.now += 1
    actions = ha.receive(datagram(request(clock, flags=D, lifetime=0, before=(ASK,)), source=NAT), clock.now)
    _, reply = only_reply(actions)
    assert reply.code == ReplyCode.ACCEPTED and tunnel_reply(reply) is None and len(ha.bindings) == 0
    assert [p.endpoints for p in actions if isinstance(p, DataPlane)] == [()]


def test_r_flag_through_a_foreign_agent_is_half_bound(clock: Clock) -> None:
    """4.6: with R the request's port is the FA's mapping; the port comes from the first keepalive."""
    ha = engine(clock)
    msg = request(clock, flags=D, before=(UdpTunnelRequest(UdpTunnelRequestFlags.R),))
    _, reply = only_reply(ha.receive(datagram(msg, source=NAT, port=434), clock.now))
    found = tunnel_reply(reply)
    assert reply.code == ReplyCode.ACCEPTED and found is not None and found.accepted
    binding = ha.bindings.get(MN, COA)
    assert binding is not None and binding.outer == UdpTunnelEndpoint(NAT, HALF_BOUND)
    assert binding.foreign_agent == NAT  # relayed by the foreign agent, whose address the NAT shows
