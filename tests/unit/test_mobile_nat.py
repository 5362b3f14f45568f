"""The mobile node's side of RFC 3519: when it asks for UDP tunnelling (nat_traversal), what an
assenting UDP Tunnel Reply changes, the keepalives, and what it does when they go unanswered."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Interface

import pytest

from mipd.core.actions import Datagram, Emit, SendDatagram
from mipd.core.keepalive import ANSWER_WAIT, DEFAULT_INTERVAL, MIN_INTERVAL, TRIES
from mipd.core.mobile_node import MobileNode
from mipd.core.names import EventName, NodeNatTraversal
from mipd.core.planes import MobilePlane
from mipd.core.wire import ipv4
from mipd.core.wire.auth import append_authentication
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.icmp import AdvertisementFlags
from mipd.core.wire.nat import (
    UdpTunnelReply,
    UdpTunnelReplyFlags,
    UdpTunnelRequest,
    UdpTunnelRequestFlags,
    decode_tunnel_data,
)
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags
from tests.support.scenario import HA, KEY, MN
from tests.unit.test_mobile_node import hear, node, request_of, sends

COLOCATED = IPv4Interface("192.168.4.50/24")
GRANTED = UdpTunnelReply(keepalive_interval=20)


def udp_request(req: RegistrationRequest) -> UdpTunnelRequest | None:
    found = [e for e in req.extensions if isinstance(e, UdpTunnelRequest)]
    assert len(found) <= 1
    return found[0] if found else None


def reply(mobile: MobileNode, req: RegistrationRequest, now: float, *, code: int = 0,
          tunnel: UdpTunnelReply | None = GRANTED) -> list[object]:
    """The home agent's answer, with ``tunnel`` (if any) before the MN-HA authenticator."""
    answer = RegistrationReply(code, req.lifetime, MN, HA, req.identification,
                               () if tunnel is None else (tunnel,))
    answer = append_authentication(answer, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, "hmac-md5")
    return mobile.reply(Datagram(answer.encode(), HA, 434, MN), now)  # type: ignore[return-value]


def registered(mode: NodeNatTraversal = NodeNatTraversal.AUTO, interval: int = 20,
               lifetime: int = 300) -> tuple[MobileNode, RegistrationRequest, list[object]]:
    _, mobile = node(colocated=COLOCATED, nat_traversal=mode, lifetime=lifetime)
    req = request_of(sends(mobile.start(0.0))[0])
    return mobile, req, reply(mobile, req, 0.1, tunnel=UdpTunnelReply(keepalive_interval=interval))


def events(actions: list[object], name: EventName) -> list[Emit]:
    return [a for a in actions if isinstance(a, Emit) and a.event == name]


@pytest.mark.parametrize(("mode", "flags"), [(NodeNatTraversal.AUTO, UdpTunnelRequestFlags(0)),
                                             (NodeNatTraversal.FORCE, UdpTunnelRequestFlags.F)])
def test_a_co_located_registration_asks_before_the_mn_ha_authenticator(mode: NodeNatTraversal,
                                                                        flags: UdpTunnelRequestFlags) -> None:
    _, mobile = node(colocated=COLOCATED, nat_traversal=mode)
    req = request_of(sends(mobile.start(0.0))[0])
    asked = udp_request(req)
    assert asked is not None and asked.flags == flags and asked.encapsulation == 4
    assert req.flags & RequestFlags.D  # RFC 3519 3.1: only with D
    types = [e.type for e in req.extensions]
    assert types.index(144) < types.index(ExtensionType.MOBILE_HOME_AUTHENTICATION)


def test_off_never_asks_nor_through_a_foreign_agent() -> None:
    _, mobile = node(colocated=COLOCATED, nat_traversal=NodeNatTraversal.OFF)
    assert udp_request(request_of(sends(mobile.start(0.0))[0])) is None
    _, mobile = node(nat_traversal=NodeNatTraversal.FORCE)
    (send,) = sends(hear(mobile, 0.0, flags=AdvertisementFlags.F))
    assert udp_request(request_of(send)) is None  # a foreign agent's care-of address: never (3.1)


def test_an_assenting_reply_makes_the_tunnel_udp_and_logs_nat_detected() -> None:
    mobile, _, accepted = registered()
    (plane,) = [a for a in accepted if isinstance(a, MobilePlane)]
    assert plane.udp_tunnel and plane.care_of_address == COLOCATED.ip
    (event,) = events(accepted, EventName.NAT_DETECTED)
    assert event.fields["keepalive_interval"] == 20 and event.fields["reason"] == "nat"
    assert mobile.udp_tunnel and mobile.plane().udp_tunnel


@pytest.mark.parametrize("tunnel", [None, UdpTunnelReply(code=64)])
def test_no_or_a_declining_reply_keeps_ip_in_ip(tunnel: UdpTunnelReply | None) -> None:
    _, mobile = node(colocated=COLOCATED)
    req = request_of(sends(mobile.start(0.0))[0])
    accepted = reply(mobile, req, 0.1, tunnel=tunnel)
    (plane,) = [a for a in accepted if isinstance(a, MobilePlane)]
    assert not plane.udp_tunnel and not mobile.udp_tunnel
    assert not events(accepted, EventName.NAT_DETECTED)
    assert not [a for a in mobile.on_timer(100.0) if isinstance(a, SendDatagram)]  # no keepalives


def test_forced_reply_says_so() -> None:
    _, mobile = node(colocated=COLOCATED, nat_traversal=NodeNatTraversal.FORCE)
    req = request_of(sends(mobile.start(0.0))[0])
    accepted = reply(mobile, req, 0.1, tunnel=UdpTunnelReply(flags=UdpTunnelReplyFlags.F))
    (event,) = events(accepted, EventName.NAT_DETECTED)
    assert event.fields["reason"] == "forced" and event.fields["keepalive_interval"] == DEFAULT_INTERVAL


def keepalive_of(send: SendDatagram) -> tuple[int, int]:
    """The (identifier, sequence) of a keepalive: tunnel data carrying an Echo Request to the HA."""
    assert (send.destination, send.destination_port, send.source) == (HA, 434, COLOCATED.ip)
    data = decode_tunnel_data(send.payload)
    header, icmp = ipv4.parse(data.payload)
    assert data.next_header == 4 and (header.source, header.destination, header.protocol) == (MN, HA, 1)
    kind, _, _, identifier, sequence = struct.unpack("!BBHHH", icmp[:8])
    assert kind == 8
    return identifier, sequence


def test_keepalives_every_interval_while_answered() -> None:
    mobile, _, _ = registered(interval=20)
    assert sends(mobile.on_timer(20.0)) == []
    assert (mobile.next_timer() or 0.0) <= 20.1
    (first,) = sends(mobile.on_timer(20.1))
    identifier, sequence = keepalive_of(first)
    mobile.keepalive_reply(identifier, sequence, 20.2)
    assert sends(mobile.on_timer(20.1 + ANSWER_WAIT)) == []  # answered: not sent again
    assert sends(mobile.on_timer(40.1)) == []
    (second,) = sends(mobile.on_timer(40.2))
    assert keepalive_of(second) == (identifier, sequence + 1)


def test_a_reply_that_is_not_ours_is_no_answer() -> None:
    mobile, _, _ = registered(interval=20)
    identifier, sequence = keepalive_of(sends(mobile.on_timer(20.1))[0])
    mobile.keepalive_reply(identifier ^ 1, sequence, 20.2)
    mobile.keepalive_reply(identifier, sequence + 1, 20.2)
    (again,) = sends(mobile.on_timer(20.1 + ANSWER_WAIT))  # still unanswered: sent again
    assert keepalive_of(again) == (identifier, sequence + 1)


def test_unanswered_keepalives_mean_keepalive_lost_and_a_new_registration() -> None:
    mobile, req, _ = registered(interval=20)
    now, sent = 20.1, []
    for tries in range(TRIES):
        assert sends(mobile.on_timer(now - 0.01)) == []
        (keepalive,) = sends(mobile.on_timer(now))
        sent.append(keepalive_of(keepalive))
        now += ANSWER_WAIT * 2 ** tries
    assert [s for _, s in sent] == [1, 2, 3]
    assert not events(mobile.on_timer(now - 0.01), EventName.KEEPALIVE_LOST)
    actions = mobile.on_timer(now)
    (lost,) = events(actions, EventName.KEEPALIVE_LOST)
    assert lost.fields["care_of_address"] == str(COLOCATED.ip)
    (again,) = sends(actions)
    again_req = request_of(again)
    assert udp_request(again_req) is not None and again_req.care_of_address == COLOCATED.ip
    assert again_req.identification != req.identification


def test_142_asks_again_without_udp_and_not_again() -> None:
    _, mobile = node(colocated=COLOCATED, lifetime=10)
    first = request_of(sends(mobile.start(0.0))[0])
    assert udp_request(first) is not None
    assert sends(reply(mobile, first, 0.1, code=142, tunnel=None)) == []  # the once-a-second rule
    (retry,) = sends(mobile.on_timer(1.0))
    assert udp_request(request_of(retry)) is None


def test_udp_tunnelling_survives_a_restart() -> None:
    mobile, _, _ = registered(interval=30)
    record = mobile.snapshot(1.0)
    assert record.registration is not None and record.registration.udp_keepalive == 30
    _, again = node(colocated=COLOCATED)
    again.restore(record, 1.0)
    assert again.udp_tunnel and again.next_timer() is not None


def test_the_interval_is_never_under_ten_seconds() -> None:
    mobile, _, accepted = registered(interval=3)
    assert mobile.registration is not None and mobile.registration.udp_keepalive == MIN_INTERVAL
    assert events(accepted, EventName.NAT_DETECTED)[0].fields["keepalive_interval"] == MIN_INTERVAL


def test_the_home_agent_address_is_the_keepalives_destination() -> None:
    mobile, _, _ = registered()
    (keepalive,) = sends(mobile.on_timer(20.1))
    assert keepalive.destination == IPv4Address(str(HA))
