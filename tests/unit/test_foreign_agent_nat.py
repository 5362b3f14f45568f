"""The foreign agent behind a NAT (RFC 3519 3.4, 4.5, 4.9): the engine's decisions and the userspace
data plane's per-packet ones, with an explicit clock."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from mipd.adapters.tunnel.visitor_userspace import KEEPALIVE_IDENTIFIER, VisitorTable
from mipd.core.actions import Datagram, SendDatagram, SendToNode
from mipd.core.advertiser import foreign_agent_advertisement
from mipd.core.foreign_agent import ForeignAgent
from mipd.core.planes import Delivery, VisitorPlane
from mipd.core.wire import ipv4
from mipd.core.wire.auth import append_authentication, verify
from mipd.core.wire.extensions import ExtensionType
from mipd.core.wire.icmp import AdvertisementFlags, checksum
from mipd.core.wire.nat import Encapsulation as NextHeader
from mipd.core.wire.nat import TunnelData, UdpTunnelReply, UdpTunnelRequest, decode_tunnel_data
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags, decode_registration
from tests.support.registration import HA, KEY, MN, Clock
from tests.unit.test_foreign_agent import COA, HA_FA_KEY, MAC, clock, frame, node_request, settings

__all__ = ["clock"]  # the fixture

F = RequestFlags


def agent(clock: Clock, **overrides: object) -> ForeignAgent:
    overrides.setdefault("nat_traversal", True)
    return ForeignAgent(settings(**overrides), wall_clock=clock.wall)


def relayed_request(actions: list[object]) -> RegistrationRequest:
    (send,) = [a for a in actions if isinstance(a, SendDatagram)]
    msg = decode_registration(send.payload)
    assert isinstance(msg, RegistrationRequest)
    assert send.source == COA  # 4.5: from the care-of address
    return msg


def reply_with(req: RegistrationRequest, udp: UdpTunnelReply | None, *, before_mn_ha: bool = False) -> Datagram:
    """The home agent's reply; its UDP Tunnel Reply after MN-HA and before FA-HA (the answer to a
    foreign agent's request), or before MN-HA (the answer to the node's own)."""
    extra = (udp,) if udp is not None and before_mn_ha else ()
    reply = RegistrationReply(0, req.lifetime, req.home_address, HA, req.identification, extra)
    reply = append_authentication(reply, ExtensionType.MOBILE_HOME_AUTHENTICATION, 256, KEY, "hmac-md5")
    if udp is not None and not before_mn_ha:
        reply = RegistrationReply(reply.code, reply.lifetime, reply.home_address, reply.home_agent,
                                  reply.identification, (*reply.extensions, udp))
    reply = append_authentication(reply, ExtensionType.FOREIGN_HOME_AUTHENTICATION, 500, HA_FA_KEY, "hmac-md5")
    return Datagram(reply.encode(), HA, 434, COA, 50000)


def test_the_request_extension_goes_after_mn_ha_and_before_fa_ha(clock: Clock) -> None:
    fa = agent(clock)
    out = relayed_request(fa.from_node(frame(node_request(clock)), clock.now))
    assert [e.type for e in out.extensions] == [32, 144, 34]
    ext = out.extensions[1]
    assert isinstance(ext, UdpTunnelRequest)
    assert (int(ext.flags), ext.encapsulation) == (0, NextHeader.IP_IN_IP)  # no F, no R; IP-in-UDP asked for
    assert verify(out, 2, HA_FA_KEY, "hmac-md5")  # FA-HA covers the extension
    (pending,) = fa.visitors.pending(MN)
    assert pending.udp_tunnel_requested


def test_no_extension_when_off_for_co_located_or_for_a_deregistration(clock: Clock) -> None:
    assert [e.type for e in relayed_request(
        agent(clock, nat_traversal=False).from_node(frame(node_request(clock)), clock.now)).extensions] == [32, 34]
    fa = agent(clock)
    colocated = node_request(clock, flags=F.D, coa=IPv4Address("10.2.0.50"))
    assert [e.type for e in relayed_request(fa.from_node(frame(colocated), clock.now)).extensions] == [32]
    assert [e.type for e in relayed_request(fa.from_node(frame(node_request(clock, lifetime=0)),
                                                         clock.now)).extensions] == [32]


def test_an_assenting_reply_makes_a_udp_tunnelled_visitor_and_is_stripped_for_the_node(clock: Clock) -> None:
    fa = agent(clock)
    req = relayed_request(fa.from_node(frame(node_request(clock, flags=F.T)), clock.now))
    assert not fa.advertises_udp_tunnelling  # 3.4: not before a home agent showed we are behind a NAT
    actions = fa.from_home_agent(reply_with(req, UdpTunnelReply(0, keepalive_interval=30)), clock.now)
    visitor = fa.visitors.active(MN)
    assert visitor is not None and visitor.udp_tunnel and visitor.keepalive_interval == 30
    planes = [a for a in actions if isinstance(a, VisitorPlane)]
    assert planes == [VisitorPlane(MN, Delivery(MN, MAC, HA, COA, reverse=True, udp_tunnel=True,
                                                keepalive_interval=30))]
    (to_node,) = [a for a in actions if isinstance(a, SendToNode)]
    relayed_reply = decode_registration(to_node.payload)
    assert [e.type for e in relayed_reply.extensions] == [32]  # RFC 5944 3.7.3.2: ours removed after MN-HA
    assert fa.advertises_udp_tunnelling
    config = foreign_agent_advertisement(fa.settings, (), registration_required=False, busy=False,
                                         destination=IPv4Address("224.0.0.1"), lifetime=3, interval=1.0,
                                         udp_tunnelling=fa.advertises_udp_tunnelling)
    assert config.flags & AdvertisementFlags.U


def test_keepalive_zero_means_the_default_and_a_declining_or_missing_reply_means_ip_in_ip(clock: Clock) -> None:
    fa = agent(clock)
    req = relayed_request(fa.from_node(frame(node_request(clock)), clock.now))
    fa.from_home_agent(reply_with(req, UdpTunnelReply(0)), clock.now)
    visitor = fa.visitors.active(MN)
    assert visitor is not None and visitor.udp_tunnel and visitor.keepalive_interval == 110  # 4.9: K = 110
    for udp in (UdpTunnelReply(64), None):  # declined (3.2.1), or a home agent without RFC 3519 (4.6.1)
        fa = agent(clock)
        req = relayed_request(fa.from_node(frame(node_request(clock)), clock.now))
        fa.from_home_agent(reply_with(req, udp), clock.now)
        visitor = fa.visitors.active(MN)
        assert visitor is not None and not visitor.udp_tunnel and visitor.keepalive_interval == 0
        assert not fa.advertises_udp_tunnelling


def test_a_reply_extension_we_did_not_ask_for_does_not_make_a_udp_tunnel(clock: Clock) -> None:
    fa = agent(clock, nat_traversal=False)
    req = relayed_request(fa.from_node(frame(node_request(clock)), clock.now))
    actions = fa.from_home_agent(reply_with(req, UdpTunnelReply(0, keepalive_interval=30)), clock.now)
    visitor = fa.visitors.active(MN)
    assert visitor is not None and not visitor.udp_tunnel
    assert not fa.advertises_udp_tunnelling
    assert any(isinstance(a, SendToNode) for a in actions)


def test_a_reply_extension_before_mn_ha_is_relayed_unchanged(clock: Clock) -> None:
    # To a co-located request (the node's own extension, we added none): not ours.
    fa = agent(clock)
    colocated = node_request(clock, flags=F.D, coa=IPv4Address("10.2.0.50"))
    req = relayed_request(fa.from_node(frame(colocated), clock.now))
    actions = fa.from_home_agent(reply_with(req, UdpTunnelReply(0), before_mn_ha=True), clock.now)
    (to_node,) = [a for a in actions if isinstance(a, SendToNode)]
    assert [e.type for e in decode_registration(to_node.payload).extensions] == [44, 32]
    visitor = fa.visitors.active(MN)
    assert visitor is not None and not visitor.udp_tunnel
    # To our own request, from a home agent that put it before MN-HA: ours, though it reaches the node.
    fa = agent(clock)
    req = relayed_request(fa.from_node(frame(node_request(clock)), clock.now))
    actions = fa.from_home_agent(reply_with(req, UdpTunnelReply(0), before_mn_ha=True), clock.now)
    visitor = fa.visitors.active(MN)
    assert visitor is not None and visitor.udp_tunnel


# --- the userspace data plane's decisions ---

VISITOR = IPv4Address("10.1.0.10")
CORRESPONDENT = IPv4Address("192.0.2.7")


def udp_delivery(keepalive: int = 20) -> VisitorPlane:
    return VisitorPlane(VISITOR, Delivery(VISITOR, MAC, HA, COA, reverse=True, udp_tunnel=True,
                                          keepalive_interval=keepalive))


def datagram(source: IPv4Address, destination: IPv4Address, body: bytes = b"x" * 12, protocol: int = 17) -> bytes:
    return ipv4.IPv4Header(0, 20 + len(body), 1, ipv4.Flags(0), 0, 64, protocol, source, destination).encode() + body


def test_type_4_from_the_home_agent_s_434_is_delivered_and_mismatches_are_counted() -> None:
    table = VisitorTable(COA)
    table.set(udp_delivery())
    inner = datagram(CORRESPONDENT, VISITOR)
    assert table.deliver_udp(TunnelData(4, inner).encode(), HA, 434) == inner
    assert table.deliver_udp(TunnelData(4, inner).encode(), HA, 1434) is None
    assert table.deliver_udp(TunnelData(4, inner).encode(), IPv4Address("10.9.9.9"), 434) is None
    assert table.deliver_udp(TunnelData(47, inner).encode(), HA, 434) is None
    assert table.deliver_udp(TunnelData(4, datagram(CORRESPONDENT, IPv4Address("10.1.0.99"))).encode(),
                             HA, 434) is None
    assert table.deliver_udp(b"\x04\x04", HA, 434) is None
    assert table.deliver_udp(TunnelData(4, b"\x45garbage").encode(), HA, 434) is None
    counts = {k: v for k, v in table.counts.items() if v}
    assert counts == {"udp_decapsulated": 1, "dropped_udp_not_home_agent": 2, "dropped_udp_next_header": 1,
                      "dropped_udp_not_visitor": 1, "dropped_udp_malformed": 2}


def test_reverse_tunnel_is_type_4_to_the_home_agent_and_keepalives_follow_idleness() -> None:
    table = VisitorTable(COA)
    table.set(udp_delivery(keepalive=20))
    assert table.keepalives(1000.0) == []  # the first K seconds after the visitor appeared: none
    outgoing = datagram(VISITOR, CORRESPONDENT)
    payload, destination, udp = table.reverse(outgoing, 1010.0)  # type: ignore[misc]
    assert (destination, udp) == (HA, True)
    message = decode_tunnel_data(payload)
    assert (message.next_header, message.payload) == (4, outgoing)
    assert table.keepalives(1025.0) == []  # 15 s after the last packet to the home agent
    ((keepalive, to),) = table.keepalives(1030.0)
    assert to == HA
    header, icmp = ipv4.parse(decode_tunnel_data(keepalive).payload)
    assert (header.source, header.destination, header.protocol) == (VISITOR, HA, 1)  # 4.9: to the home agent
    assert icmp[0] == 8 and checksum(icmp) == 0 and int.from_bytes(icmp[4:6], "big") == KEEPALIVE_IDENTIFIER
    assert table.keepalives(1049.0) == []
    # The answer is consumed, not delivered to the visitor.
    echo_reply = bytearray(icmp)
    echo_reply[0] = 0
    echo_reply[2:4] = b"\0\0"
    echo_reply[2:4] = struct.pack("!H", checksum(bytes(echo_reply)))
    answer = datagram(HA, VISITOR, bytes(echo_reply), protocol=1)
    assert table.deliver_udp(TunnelData(4, answer).encode(), HA, 434) is None
    assert table.counts["udp_keepalives_answered"] == 1 and table.counts["udp_keepalives_sent"] == 1
    table.set(VisitorPlane(VISITOR, None))
    assert table.keepalives(2000.0) == [] and VISITOR not in table.last_sent


def test_classic_visitors_are_still_raw_ip_in_ip() -> None:
    table = VisitorTable(COA)
    table.set(VisitorPlane(VISITOR, Delivery(VISITOR, MAC, HA, COA, reverse=True)))
    out = table.reverse(datagram(VISITOR, CORRESPONDENT))
    assert out is not None and out[1:] == (HA, False) and out[0][9] == 4
    assert table.keepalives(10_000.0) == []
    assert table.deliver_udp(TunnelData(4, datagram(CORRESPONDENT, VISITOR)).encode(), HA, 434) is None
