"""One fuzz harness per decoder of mipd.core, and the invariants each one checks.

The invariant of every harness (mipd.core.wire.errors; docs/robustness.md): *decode succeeds or raises
DecodeError*; any other exception is a crash. Where the codec has a round trip it is checked too,
``decode(encode(x)) == x`` for every ``x`` that decoded, and byte for byte where the module promises
it (registration messages and extensions re-encode exactly, unknown extensions included).

The engine harnesses feed the bytes to the engines' own receive paths (the home agent's UDP 434, the
foreign agent's visited link and relay socket, the mobile node's socket). Authenticators are
recomputed over the fuzzed message with the harness's keys before it is handed over, so mutations
reach the checks behind authentication; the invariant there is that nothing but actions come out,
at most one reply per datagram, and every reply is a well-formed, authenticated Registration Reply.

The harnesses import nothing but mipd.core and the standard library, so that atheris instruments
only the code under test (fuzz/harness.py). Each is a plain function of ``bytes``: a crash found by
the fuzzer reproduces with ``python -c 'from fuzz.targets import TARGETS; TARGETS[name](data)'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from mipd.core.actions import Action, Datagram, Emit, SendDatagram, SendToNode
from mipd.core.foreign_agent import ForeignAgent, ForeignAgentSettings, NodeRequest
from mipd.core.home_agent import HomeAgent, HomeAgentSettings
from mipd.core.mobile_node import MobileNode, MobileNodeSettings
from mipd.core.planes import DataPlane
from mipd.core.security import ReplayProtection, SecurityAssociation
from mipd.core.wire import auth, identification, ipv4
from mipd.core.wire.arp import decode_arp, mac_bytes, mac_text
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.extensions import PARSERS as REGISTRATION_PARSERS
from mipd.core.wire.extensions import AuthenticationExtension, ExtensionType
from mipd.core.wire.frames import decode_ip_frame, decode_udp_frame
from mipd.core.wire.icmp import _ONE_BYTE as ICMP_ONE_BYTE
from mipd.core.wire.icmp import _PARSERS as ICMP_PARSERS
from mipd.core.wire.icmp import AgentAdvertisement, checksum, decode_icmp
from mipd.core.wire.messages import DECODERS as MESSAGE_DECODERS
from mipd.core.wire.messages import decode_message
from mipd.core.wire.reader import Reader
from mipd.core.wire.registration import (
    RegistrationReply,
    RegistrationRequest,
    decode_registration,
    decode_reply,
    decode_request,
)
from mipd.core.wire.tlv import decode_extensions
from mipd.core.wire.tunnel import DropReason, Encapsulation, TunnelRefused, decapsulate, encapsulate

Target = Callable[[bytes], None]

# The addresses and keys the engine harnesses (and fuzz/seeds.py) use.
HA = IPv4Address("10.1.0.1")
HOME_NET = IPv4Network("10.1.0.0/24")
MN = IPv4Address("10.1.0.10")
MN_NONCE = IPv4Address("10.1.0.11")
FA = IPv4Address("10.2.0.1")
MN_MAC = bytes.fromhex("02000000000a")
MN_HA_KEY = bytes(range(16))
MN_FA_KEY = bytes(range(100, 116))
FA_HA_KEY = bytes(range(50, 66))
MN_HA_SPI, MN_NONCE_SPI, MN_FA_SPI, FA_HA_SPI = 256, 257, 300, 500
WALL = 1_790_000_000.0
_ALL = frozenset(Encapsulation)


# --------------------------------------------------------------------------------------------
# Codec harnesses
# --------------------------------------------------------------------------------------------


def registration(data: bytes) -> None:
    """decode_registration / decode_request / decode_reply; byte-exact re-encoding."""
    for decoder in (decode_request, decode_reply):
        with contextlib.suppress(DecodeError):
            decoder(data)
    try:
        message = decode_registration(data)
    except DecodeError:
        return
    wire = message.encode()
    assert wire == data, f"re-encoded {wire.hex()} != {data.hex()}"
    assert decode_registration(wire) == message


def messages(data: bytes) -> None:
    """decode_message (every UDP port 434 message type: RFC 5944, RFC 3519 tunnel data, RFC 3543
    revocations) and each type's own decoder; byte-exact re-encoding, the same value either way."""
    for decoder in MESSAGE_DECODERS.values():
        with contextlib.suppress(DecodeError):
            decoder(data)
    try:
        message = decode_message(data)
    except DecodeError:
        return
    wire = message.encode()
    assert wire == data, f"re-encoded {wire.hex()} != {data.hex()}"
    assert decode_message(wire) == message
    assert MESSAGE_DECODERS[data[0]](data) == message
    _ = getattr(message, "unrecognised_nonskippable", None)


def extensions(data: bytes) -> None:
    """Both extension number spaces (registration and ICMP router discovery) over raw bytes;
    the extensions re-encode to the same bytes."""
    for parsers, one_byte in ((REGISTRATION_PARSERS, None), (ICMP_PARSERS, ICMP_ONE_BYTE)):
        try:
            decoded = decode_extensions(Reader(data), parsers, one_byte)
        except DecodeError:
            continue
        wire = b"".join(ext.encode() for ext in decoded)
        assert wire == data, f"re-encoded {wire.hex()} != {data.hex()}"


def icmp(data: bytes) -> None:
    """decode_icmp (agent advertisement / solicitation), checksum verified and not verified;
    encode() writes a fresh checksum, so a checksummed message re-encodes to itself."""
    try:
        checked = decode_icmp(data)
    except DecodeError:
        checked = None
    try:
        message = decode_icmp(data, verify_checksum=False)
    except DecodeError:
        assert checked is None, "decoded with its checksum verified but not without"
        return
    assert checked is None or checked == message
    wire = message.encode()
    assert checksum(wire) == 0
    assert decode_icmp(wire) == message
    if isinstance(message, AgentAdvertisement):
        _ = (message.mobility, message.prefix_lengths, message.unrecognised_nonskippable)
    if checked is not None and data[2:4] not in (b"\x00\x00", b"\xff\xff"):
        # The checksum field's two zeros of one's complement aside, the bytes come back unchanged.
        assert wire == data, f"re-encoded {wire.hex()} != {data.hex()}"


def ipv4_header(data: bytes) -> None:
    """ipv4.parse, checksum verified and not; the header re-encodes and parses back equal."""
    with contextlib.suppress(DecodeError):
        ipv4.parse(data)
    try:
        header, payload = ipv4.parse(data, verify_checksum=False)
    except DecodeError:
        return
    wire = header.encode() + payload
    again, rest = ipv4.parse(wire)
    assert rest == payload
    assert replace(again, checksum=0) == replace(header, checksum=0)


def tunnel_decapsulate(data: bytes) -> None:
    """decapsulate (RFC 2003 / 2784 / 2004): succeeds, DecodeError, or TunnelRefused(TTL_ZERO or,
    GRE with another Protocol Type than IPv4, UNSUPPORTED_PROTOCOL); what decapsulated,
    encapsulated again the same way, decapsulates to the same inner datagram."""
    try:
        taken = decapsulate(data)
    except DecodeError:
        return
    except TunnelRefused as refused:
        assert refused.reason in (DropReason.TTL_ZERO, DropReason.UNSUPPORTED_PROTOCOL), refused
        if refused.reason is DropReason.UNSUPPORTED_PROTOCOL:
            assert data[9] == 47, refused  # only GRE says which protocol it carries
        return
    try:
        packet = encapsulate(taken.inner, taken.source, taken.destination, taken.encapsulation, 0)
    except TunnelRefused as refused:
        assert refused.reason in (DropReason.LOOP, DropReason.TOO_BIG, DropReason.FRAGMENTED_MINIMAL), refused
        return
    again = decapsulate(packet)
    assert again.encapsulation is taken.encapsulation
    assert (again.source, again.destination) == (taken.source, taken.destination)
    header, payload = ipv4.parse(taken.inner)
    header_again, payload_again = ipv4.parse(again.inner)
    assert payload_again == payload
    assert replace(header_again, checksum=0) == replace(header, checksum=0)


_ENCAPSULATIONS = tuple(Encapsulation)


def tunnel_encapsulate(data: bytes) -> None:
    """encapsulate over a datagram from the TUN device (first byte picks the encapsulation):
    succeeds, DecodeError or TunnelRefused; what it makes decapsulates back to the datagram."""
    if not data:
        return
    kind, inner = _ENCAPSULATIONS[data[0] % len(_ENCAPSULATIONS)], data[1:]
    try:
        packet = encapsulate(inner, FA, HA, kind, 7, local_addresses=(FA,))
    except DecodeError:
        return
    except TunnelRefused:
        return
    taken = decapsulate(packet)
    assert (taken.source, taken.destination, taken.encapsulation) == (FA, HA, kind)
    header, payload = ipv4.parse(inner)
    header_again, payload_again = ipv4.parse(taken.inner)
    assert payload_again == payload
    assert replace(header_again, checksum=0) == replace(header, checksum=0)


def arp(data: bytes) -> None:
    """decode_arp; an ARP packet re-encodes (padded to 60 bytes) and decodes back equal."""
    try:
        packet = decode_arp(data)
    except DecodeError:
        return
    _ = packet.gratuitous
    assert decode_arp(packet.encode()) == packet


def udp_frame(data: bytes) -> None:
    """decode_udp_frame (the foreign agent's visited link), UDP checksum verified and not."""
    for verify in (True, False):
        try:
            frame = decode_udp_frame(data, verify_udp_checksum=verify)
        except DecodeError:
            continue
        assert len(frame.payload) + 8 + frame.ip.header_length == frame.ip.total_length


def ip_frame(data: bytes) -> None:
    """decode_ip_frame (the mobile node's link, agent advertisements), then its ICMP payload."""
    try:
        frame = decode_ip_frame(data)
    except DecodeError:
        return
    assert len(frame.payload) + frame.ip.header_length == frame.ip.total_length
    with contextlib.suppress(DecodeError):
        decode_icmp(frame.payload)


def mac_address(data: bytes) -> None:
    """mac_bytes (link-layer addresses given as text): six bytes or DecodeError; round trip."""
    text = data.decode("utf-8", errors="replace")
    try:
        value = mac_bytes(text)
    except DecodeError:
        return
    assert len(value) == 6
    assert mac_bytes(mac_text(value)) == value


# --------------------------------------------------------------------------------------------
# Engine harnesses: the receive paths, with authenticators recomputed
# --------------------------------------------------------------------------------------------

_KEYS = {
    (ExtensionType.MOBILE_HOME_AUTHENTICATION, MN_HA_SPI): MN_HA_KEY,
    (ExtensionType.MOBILE_HOME_AUTHENTICATION, MN_NONCE_SPI): MN_HA_KEY,
    (ExtensionType.MOBILE_FOREIGN_AUTHENTICATION, MN_FA_SPI): MN_FA_KEY,
    (ExtensionType.FOREIGN_HOME_AUTHENTICATION, FA_HA_SPI): FA_HA_KEY,
}


def resign(message: RegistrationRequest | RegistrationReply) -> RegistrationRequest | RegistrationReply:
    """``message`` with each 16-byte authenticator under a harness SPI made valid, in order."""
    for index, ext in enumerate(message.extensions):
        key = _KEYS.get((ext.type, getattr(ext, "spi", -1)))
        if key is None or not isinstance(ext, AuthenticationExtension) or len(ext.authenticator) != 16:
            continue
        value = auth.compute(auth.Algorithm.HMAC_MD5, key, auth.protected_bytes(message, index))
        fixed = AuthenticationExtension(ext.type, ext.spi, value)
        message = replace(message, extensions=(*message.extensions[:index], fixed, *message.extensions[index + 1:]))
    return message


def _resigned(data: bytes) -> tuple[bytes, int] | None:
    """The payload with valid authenticators, and its Identification; None if it does not decode."""
    try:
        message = decode_registration(data)
    except DecodeError:
        return None
    return resign(message).encode(), message.identification


def _sa(spi: int, peer: IPv4Address, key: bytes, replay: ReplayProtection = ReplayProtection.TIMESTAMP
        ) -> SecurityAssociation:
    return SecurityAssociation(spi, key, peer, replay=replay)


def home_agent_settings() -> HomeAgentSettings:
    return HomeAgentSettings(
        HA, HOME_NET,
        {MN_HA_SPI: _sa(MN_HA_SPI, MN, MN_HA_KEY),
         MN_NONCE_SPI: _sa(MN_NONCE_SPI, MN_NONCE, MN_HA_KEY, ReplayProtection.NONCE)},
        foreign_agents={FA: {FA_HA_SPI: _sa(FA_HA_SPI, FA, FA_HA_KEY)}},
        max_lifetime=600, max_bindings_per_node=2, encapsulations=_ALL)


def _replies(actions: list[Action]) -> list[bytes]:
    return [a.payload for a in actions if isinstance(a, SendDatagram | SendToNode)]


def _check_reply(payload: bytes, key: bytes, ext_type: int = ExtensionType.MOBILE_HOME_AUTHENTICATION) -> None:
    reply = decode_registration(payload)
    assert isinstance(reply, RegistrationReply), reply
    found = reply.authentications(ext_type)
    assert found, "a reply without its authentication extension"
    assert auth.verify(reply, found[-1][0], key, auth.Algorithm.HMAC_MD5)


def home_agent(data: bytes) -> None:
    """HomeAgent.receive on UDP 434: at most one reply, authenticated; the data plane it states
    is its binding table's. The first byte picks the datagram's source and destination."""
    if len(data) < 2:
        return
    signed = _resigned(data[1:])
    payload, ident = signed if signed is not None else (data[1:], 0)
    source = (MN, FA, IPv4Address("10.9.0.9"))[data[0] % 3]
    destination = (HA, HOME_NET.broadcast_address, IPv4Address("255.255.255.255"))[(data[0] >> 2) % 3]
    engine = HomeAgent(home_agent_settings(), wall_clock=lambda: identification.to_unix(ident) + 0.5,
                       random32=lambda: 0x1234_5678)
    for _ in range(2):  # the same datagram twice: a replay or a duplicate (3.8.2.2)
        actions = engine.receive(Datagram(payload, source, 434, destination), 100.0)
        replies = _replies(actions)
        assert len(replies) <= 1, actions
        for reply in replies:
            _check_reply(reply, MN_HA_KEY)
        for plane in (a for a in actions if isinstance(a, DataPlane)):
            assert len(plane.endpoints) == len(engine.bindings.of(plane.home_address))
    engine.on_timer(100.0 + 0x10000)
    assert len(engine.bindings) == sum(1 for b in engine.bindings if b.expires == float("inf"))


def foreign_agent_settings() -> ForeignAgentSettings:
    return ForeignAgentSettings(
        FA, frozenset({FA}), home_agents={HA: {FA_HA_SPI: _sa(FA_HA_SPI, HA, FA_HA_KEY)}},
        mobile_nodes={MN: {MN_FA_SPI: _sa(MN_FA_SPI, MN, MN_FA_KEY)}}, max_lifetime=600, encapsulations=_ALL)


def foreign_agent_node(data: bytes) -> None:
    """ForeignAgent.from_node on the visited link: one relayed request or one reply to the node;
    then its ICMP error path (relay_failed) over the same bytes."""
    if len(data) < 2:
        return
    signed = _resigned(data[1:])
    payload = signed[0] if signed is not None else data[1:]
    engine = ForeignAgent(foreign_agent_settings(), wall_clock=lambda: WALL)
    frame = NodeRequest(payload, (MN, IPv4Address("0.0.0.0"))[data[0] & 1], 5000,
                        (FA, IPv4Address("224.0.0.11"))[(data[0] >> 1) & 1], MN_MAC, data[0] | 0x7F)
    actions = engine.from_node(frame, 10.0)
    sent = [a for a in actions if isinstance(a, SendDatagram | SendToNode)]
    assert len(sent) <= 1, actions
    for action in sent:
        message = decode_registration(action.payload)
        assert isinstance(message, RegistrationRequest if isinstance(action, SendDatagram) else RegistrationReply)
    for action in engine.relay_failed(data, data[0] % 13, data[-1] % 16, 11.0):
        assert not isinstance(action, SendDatagram)
    engine.on_timer(1e6)
    assert not engine.visitors.all_pending()


def _pending_foreign_agent() -> ForeignAgent:
    engine = ForeignAgent(foreign_agent_settings(), wall_clock=lambda: WALL)
    request = resign(RegistrationRequest(
        0, 300, MN, HA, FA, 0xE8FE6F80_12345678,
        (AuthenticationExtension(ExtensionType.MOBILE_HOME_AUTHENTICATION, MN_HA_SPI, bytes(16)),
         AuthenticationExtension(ExtensionType.MOBILE_FOREIGN_AUTHENTICATION, MN_FA_SPI, bytes(16)))))
    relayed = engine.from_node(NodeRequest(request.encode(), MN, 5000, FA, MN_MAC, 255), 10.0)
    assert any(isinstance(a, SendDatagram) for a in relayed), relayed
    return engine


def foreign_agent_reply(data: bytes) -> None:
    """ForeignAgent.from_home_agent with a request pending: at most one reply to the node, signed
    for it (MN-FA); a visitor made active has a delivery plane."""
    signed = _resigned(data)
    payload = signed[0] if signed is not None else data
    engine = _pending_foreign_agent()
    actions = engine.from_home_agent(Datagram(payload, HA, 434, FA, 40000), 11.0)
    replies = [a for a in actions if isinstance(a, SendToNode)]
    assert len(replies) <= 1, actions
    assert not any(isinstance(a, SendDatagram) for a in actions), actions
    for reply in replies:
        decoded = decode_registration(reply.payload)
        assert isinstance(decoded, RegistrationReply)
        if decoded.home_address == MN:
            _check_reply(reply.payload, MN_FA_KEY, ExtensionType.MOBILE_FOREIGN_AUTHENTICATION)
    engine.on_timer(1e6)
    assert not engine.visitors.all_active() or all(v.expires == float("inf") for v in engine.visitors.all_active())


def _registering_mobile_node() -> tuple[MobileNode, int]:
    settings = MobileNodeSettings(MN, HOME_NET, HA, _sa(MN_HA_SPI, MN, MN_HA_KEY), lifetime=300,
                                  care_of="colocated", colocated_address=IPv4Interface("10.3.0.20/24"))
    node = MobileNode(settings, wall_clock=lambda: WALL, random32=lambda: 0x2222_3333, random=lambda: 0.5)
    node.start(0.0)
    node.addresses([IPv4Interface("10.3.0.20/24")], 0.0)
    assert node.attempt is not None, "the node did not register"
    return node, node.attempt.request.identification


def mobile_node_reply(data: bytes) -> None:
    """MobileNode.reply with a registration in flight: any bytes give actions, never an exception;
    the Identification's low 32 bits are set to the request's so that mutations reach further."""
    node, ident = _registering_mobile_node()
    payload = data
    try:
        message = decode_registration(data)
    except DecodeError:
        message = None
    if isinstance(message, RegistrationReply) and data[:1] == b"\x03" and len(data) % 2:
        payload = resign(replace(message, identification=(message.identification & ~0xFFFF_FFFF)
                                 | (ident & 0xFFFF_FFFF))).encode()
    actions = node.reply(Datagram(payload, HA, 434, IPv4Address("10.3.0.20"), 434), 1.0)
    for action in actions:
        assert isinstance(action, Action.__args__), action  # type: ignore[attr-defined]
    node.on_timer(2.0)
    _ = [e for e in actions if isinstance(e, Emit)]


TARGETS: dict[str, Target] = {
    "registration": registration,
    "messages": messages,
    "extensions": extensions,
    "icmp": icmp,
    "ipv4": ipv4_header,
    "tunnel_decapsulate": tunnel_decapsulate,
    "tunnel_encapsulate": tunnel_encapsulate,
    "arp": arp,
    "udp_frame": udp_frame,
    "ip_frame": ip_frame,
    "mac_address": mac_address,
    "home_agent": home_agent,
    "foreign_agent_node": foreign_agent_node,
    "foreign_agent_reply": foreign_agent_reply,
    "mobile_node_reply": mobile_node_reply,
}
