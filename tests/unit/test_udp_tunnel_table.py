"""The UDP tunnel plane's per-packet decisions (mipd.adapters.tunnel.udp_tunnel.UdpTunnelTable, RFC 3519 3.3)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from mipd.adapters.tunnel.udp_tunnel import COUNTERS, UdpTunnelTable, is_tunnel_data
from mipd.core.planes import HALF_BOUND, DataPlane, Endpoint, UdpTunnelEndpoint
from mipd.core.wire import ipv4
from mipd.core.wire.nat import Encapsulation, TunnelData, decode_tunnel_data
from mipd.core.wire.registration import RequestFlags
from mipd.core.wire.tunnel import Encapsulation as Tunnelling
from mipd.core.wire.tunnel import decapsulate, encapsulate

HA, HOME, COA = IPv4Address("10.1.0.1"), IPv4Address("10.1.0.10"), IPv4Address("10.5.0.5")
NAT = UdpTunnelEndpoint(IPv4Address("192.0.2.7"), 61000)


def packet(source: IPv4Address, destination: IPv4Address, payload: bytes = b"hello", protocol: int = 17) -> bytes:
    return ipv4.IPv4Header(tos=0, total_length=20 + len(payload), identification=1, flags=ipv4.Flags(0),
                           fragment_offset=0, ttl=64, protocol=protocol, source=source,
                           destination=destination).encode() + payload


def table() -> UdpTunnelTable:
    t = UdpTunnelTable()
    t.set(DataPlane(HOME, (Endpoint.for_request(COA, HA, RequestFlags.D | RequestFlags.T, NAT),)))
    return t


def test_forward_wraps_the_packet_in_tunnel_data_to_the_outer_endpoint() -> None:
    inner = packet(IPv4Address("10.9.0.9"), HOME)
    ((payload, outer),) = table().forward(inner)
    assert outer == NAT and is_tunnel_data(payload)
    message = decode_tunnel_data(payload)
    assert (message.next_header, message.payload, message.reserved) == (4, inner, 0)


def test_forward_without_a_udp_binding_or_malformed_is_counted() -> None:
    t = table()
    assert t.forward(packet(HA, IPv4Address("10.1.0.99"))) == []
    assert t.forward(b"\x45junk") == []
    classic = DataPlane(HOME, (Endpoint.for_request(COA, HA, RequestFlags.D),))
    t.set(classic)  # no UDP endpoint left: not this plane's node any more
    assert t.forward(packet(HA, HOME)) == []
    assert (t.counts["dropped_udp_no_binding"], t.counts["dropped_udp_malformed"]) == (2, 1)


def test_receive_takes_only_the_binding_outer_endpoint_and_ip_in_ip() -> None:
    t = table()
    inner = packet(HOME, HA)
    good = TunnelData(4, inner).encode()
    assert t.receive(good, NAT.address, NAT.port) == inner
    assert t.receive(good, NAT.address, NAT.port + 1) is None  # another port: not this mapping
    assert t.receive(good, IPv4Address("192.0.2.8"), NAT.port) is None
    assert t.receive(TunnelData(4, packet(IPv4Address("10.1.0.11"), HA)).encode(), NAT.address, NAT.port) is None
    assert t.receive(TunnelData(47, inner).encode(), NAT.address, NAT.port) is None
    assert t.receive(TunnelData(4, b"\x45\x00").encode(), NAT.address, NAT.port) is None
    assert t.receive(b"\x04\x04", NAT.address, NAT.port) is None
    assert {name: t.counts[name] for name in COUNTERS if t.counts[name]} == {
        "udp_decapsulated": 1, "dropped_udp_not_registered": 3, "dropped_udp_next_header": 1,
        "dropped_udp_malformed": 2,
    }


def test_is_tunnel_data_is_message_type_4() -> None:
    assert is_tunnel_data(b"\x04\x04\x00\x00") and not is_tunnel_data(b"\x01") and not is_tunnel_data(b"")


def icmp_echo(source: IPv4Address, destination: IPv4Address) -> bytes:
    return packet(source, destination, b"\x08\x00\xf7\xfd\x00\x01\x00\x01", protocol=1)


def test_a_half_bound_tunnel_learns_its_port_from_the_first_keepalive() -> None:
    """RFC 3519 4.6: the outer address must be the registration's, the port is the keepalive's."""
    t = UdpTunnelTable(HA)
    half = UdpTunnelEndpoint(NAT.address, HALF_BOUND)
    t.set(DataPlane(HOME, (Endpoint.for_request(COA, HA, RequestFlags.D | RequestFlags.T, half),)))
    assert t.forward(packet(IPv4Address("10.9.0.9"), HOME)) == []  # no port yet
    not_echo = TunnelData(4, packet(HOME, HA)).encode()  # UDP, not an echo request
    assert t.receive(not_echo, NAT.address, 40001) is None
    keepalive = icmp_echo(HOME, HA)
    wrong = IPv4Address("192.0.2.99")
    assert t.receive(TunnelData(4, keepalive).encode(), wrong, 40001) is None  # another address
    assert t.receive(TunnelData(4, keepalive).encode(), NAT.address, 40001) is not None
    ((_, outer),) = t.forward(packet(IPv4Address("10.9.0.9"), HOME))
    assert outer == UdpTunnelEndpoint(NAT.address, 40001)
    assert t.receive(TunnelData(4, packet(HOME, HA)).encode(), NAT.address, 40001) is not None  # now bound
    assert (t.counts["udp_half_bound_learnt"], t.counts["dropped_udp_awaiting_keepalive"],
            t.counts["dropped_udp_not_registered"]) == (1, 1, 2)


# --- mobile networks (RFC 5177) ---------------------------------------------------------------------

LAN = IPv4Network("192.168.50.0/24")
LAN_HOST = IPv4Address("192.168.50.7")


def router_table(flags: RequestFlags = RequestFlags.D | RequestFlags.T) -> UdpTunnelTable:
    t = UdpTunnelTable(HA)
    t.set(DataPlane(HOME, (Endpoint.for_request(COA, HA, flags, NAT),), (LAN,)))
    return t


def test_a_prefix_travels_in_tunnel_data_to_the_routers_outer_endpoint() -> None:
    t = router_table()
    inner = packet(IPv4Address("10.9.0.9"), LAN_HOST)
    (payload, outer), = t.forward(inner)
    assert outer == NAT and decode_tunnel_data(payload).payload == inner


def test_a_prefix_is_nested_to_the_home_address_when_a_foreign_agent_asked_for_udp() -> None:
    t = router_table(RequestFlags.T)  # D clear: a foreign agent's care-of address
    inner = packet(IPv4Address("10.9.0.9"), LAN_HOST)
    (payload, _), = t.forward(inner)
    nested = decode_tunnel_data(payload).payload
    assert nested[9] == 4 and nested[12:16] == HA.packed and nested[16:20] == HOME.packed
    assert decapsulate(nested).inner == inner


def test_tunnel_data_from_inside_a_prefix_is_accepted_and_others_dropped() -> None:
    t = router_table()
    from_lan = packet(LAN_HOST, IPv4Address("10.9.0.9"))
    assert t.receive(TunnelData(Encapsulation.IP_IN_IP, from_lan).encode(), NAT.address, NAT.port) == from_lan
    outsider = packet(IPv4Address("192.168.51.7"), IPv4Address("10.9.0.9"))
    assert t.receive(TunnelData(Encapsulation.IP_IN_IP, outsider).encode(), NAT.address, NAT.port) is None
    nested = encapsulate(packet(IPv4Address("172.16.0.1"), IPv4Address("10.9.0.9")), HOME, HA,
                         Tunnelling.IPIP, 1)
    assert t.receive(TunnelData(Encapsulation.IP_IN_IP, nested).encode(), NAT.address, NAT.port) is None
    good = encapsulate(from_lan, HOME, HA, Tunnelling.IPIP, 2)
    assert t.receive(TunnelData(Encapsulation.IP_IN_IP, good).encode(), NAT.address, NAT.port) == from_lan
    assert (t.counts["udp_decapsulated"], t.counts["dropped_udp_not_registered"],
            t.counts["dropped_udp_foreign_source"]) == (2, 1, 1)
    assert set(t.counts) <= set(COUNTERS)
