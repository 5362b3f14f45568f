"""Codec vectors, one table run in both directions (in the manner of h11's SIMPLE_CASES).

Each row: a message value and its wire bytes written out by hand from the RFC 5944 diagrams.
Encoding the value must give the bytes; decoding the bytes must give the value. A second table
lists malformed inputs and the DecodeError reason each must raise.
"""

from __future__ import annotations

from ipaddress import IPv4Address as A

import pytest

from mipd.core.wire import identification as ident
from mipd.core.wire.codes import ReplyCode, denied_by_foreign_agent, denied_by_home_agent, is_accepted
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.extensions import (
    NOT_YET_SUPPORTED_NONSKIPPABLE,
    AuthenticationExtension,
    EncapsulatingDeliveryStyle,
    ExtensionType,
    MobileNodeNAI,
    RevocationSupport,
    RevocationSupportFlags,
)
from mipd.core.wire.icmp import (
    AdvertisementFlags as AF,
)
from mipd.core.wire.icmp import (
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentExtension,
    OneBytePadding,
    PrefixLengthsExtension,
    RouterAddress,
    decode_icmp,
    next_sequence,
)
from mipd.core.wire.messages import MessageType, decode_message
from mipd.core.wire.mobile_network import (
    MobileNetworkAcknowledgement,
    MobileNetworkAcknowledgementCode,
    MobileNetworkRequest,
    MobileNetworkSubType,
)
from mipd.core.wire.nat import (
    Encapsulation,
    TunnelData,
    UdpTunnelReply,
    UdpTunnelReplyCode,
    UdpTunnelReplyFlags,
    UdpTunnelRequest,
    UdpTunnelRequestFlags,
    decode_tunnel_data,
    tunnelling_accepted,
)
from mipd.core.wire.registration import (
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    decode_registration,
)
from mipd.core.wire.revocation import (
    RegistrationRevocation,
    RevocationAckFlags,
    RevocationAcknowledgement,
    RevocationFlags,
    decode_revocation,
    decode_revocation_acknowledgement,
)
from mipd.core.wire.tlv import Disposition, OpaqueTail, UnknownExtension, disposition

FIXED_RRQ = "01" "20" "0708" "c0a800f2" "c0a8001e" "0a0001f2" "e8fe6f8012345678"
FIXED_RRP = "03" "00" "0708" "c0a800f2" "c0a8001e" "e8fe6f8012345678"
HA, HOME, COA, ID = A("192.168.0.30"), A("192.168.0.242"), A("10.0.1.242"), 0xE8FE6F8012345678

REGISTRATION_CASES = [
    ("request, fixed part only", FIXED_RRQ, RegistrationRequest(RequestFlags.D, 1800, HOME, HA, COA, ID)),
    (
        "request with MN-HA (WIRESHARK.md known answer)",
        FIXED_RRQ + "20" "14" "00000100" "dffd1ac7ba9e84f6963785dda9ded818",
        RegistrationRequest(RequestFlags.D, 1800, HOME, HA, COA, ID, (
            AuthenticationExtension(32, 256, bytes.fromhex("dffd1ac7ba9e84f6963785dda9ded818")),)),
    ),
    (
        "request, every flag, NAI, delivery style, unknown skippable, three authenticators",
        "01" "ff" "0000" "c0a800f2" "c0a8001e" "c0a800f2" "0000000000000001"
        "83" "03" "613162" "82" "00" "c8" "02" "beef"
        "20" "06" "00000101" "aabb" "21" "04" "00000102" "22" "05" "ffffffff" "01",
        RegistrationRequest(RequestFlags(0xFF), 0, HOME, HA, HOME, 1, (
            MobileNodeNAI(b"a1b"), EncapsulatingDeliveryStyle(), UnknownExtension(200, b"\xbe\xef"),
            AuthenticationExtension(32, 257, b"\xaa\xbb"), AuthenticationExtension(33, 258, b""),
            AuthenticationExtension(34, 0xFFFFFFFF, b"\x01"))),
    ),
    (
        "request with an unrecognised non-skippable extension kept raw to the end",
        FIXED_RRQ + "82" "00" "32" "ffff" "0102",
        RegistrationRequest(RequestFlags.D, 1800, HOME, HA, COA, ID, (
            EncapsulatingDeliveryStyle(), OpaqueTail(bytes.fromhex("32ffff0102")))),
    ),
    (
        "reply, fixed part and MN-HA (WIRESHARK.md known answer)",
        FIXED_RRP + "20" "14" "00000100" "a1609afe8d69f671e62e6622ab9e7461",
        RegistrationReply(0, 1800, HOME, HA, ID, (
            AuthenticationExtension(32, 256, bytes.fromhex("a1609afe8d69f671e62e6622ab9e7461")),)),
    ),
    (
        "reply 136 from the HA, infinite lifetime",
        "03" "88" "ffff" "0a01000a" "0a010001" "0000000100000002",
        RegistrationReply(ReplyCode.HA_UNKNOWN_HOME_AGENT_ADDRESS, 0xFFFF, A("10.1.0.10"), A("10.1.0.1"),
                          0x100000002),
    ),
]

UTRQ = UdpTunnelRequestFlags
MN_NET, MN_NET2 = A("10.5.0.0"), A("10.6.0.0")
AUTH16 = "00112233445566778899aabbccddeeff"

# RFC 3519 (3.1, 3.2), RFC 5177 (4.1, 4.2), RFC 3543 (3.2) and RFC 2794 (2) extensions of
# registration messages, written out from the RFCs' diagrams.
EXTENSION_CASES = [
    (
        "request: UDP tunnel request F R GRE, mobile network request, revocation support",
        FIXED_RRQ + "90" "06" "00" "00" "c0" "2f" "0000" + "94" "06" "00" "18" "0a050000"
        + "89" "06" "8000" "00003039",
        RegistrationRequest(RequestFlags.D, 1800, HOME, HA, COA, ID, (
            UdpTunnelRequest(UTRQ.F | UTRQ.R, Encapsulation.GRE), MobileNetworkRequest(24, MN_NET),
            RevocationSupport(RevocationSupportFlags.I, 12345))),
    ),
    (
        "request: UDP tunnel request keeps Reserved 1 and 2, encapsulation 0; revocation support "
        "longer than 6",
        FIXED_RRQ + "90" "06" "00" "ff" "3f" "00" "0000" + "89" "08" "7fff" "ffffffff" "abcd",
        RegistrationRequest(RequestFlags.D, 1800, HOME, HA, COA, ID, (
            UdpTunnelRequest(UTRQ(0x3F), Encapsulation.UNSPECIFIED, 0xFF),
            RevocationSupport(RevocationSupportFlags(0x7FFF), 0xFFFFFFFF, b"\xab\xcd"))),
    ),
    (
        "request: UDP tunnel request with Reserved 3 set, mobile network sub-type 9: not understood",
        FIXED_RRQ + "90" "06" "00" "00" "80" "04" "0001" + "94" "02" "09" "ff",
        RegistrationRequest(RequestFlags.D, 1800, HOME, HA, COA, ID, (
            UnknownExtension(144, bytes.fromhex("000080040001")), UnknownExtension(148, b"\x09\xff"))),
    ),
    (
        "request: NAI bytes kept as they came, empty and not UTF-8",
        FIXED_RRQ + "83" "00" + "83" "03" "ff00c3",
        RegistrationRequest(RequestFlags.D, 1800, HOME, HA, COA, ID, (
            MobileNodeNAI(b""), MobileNodeNAI(b"\xff\x00\xc3"))),
    ),
    (
        "reply: UDP tunnel reply F keepalive 25, explicit and implicit acknowledgements",
        FIXED_RRP + "2c" "06" "00" "00" "8000" "0019" + "94" "08" "01" "00" "18" "00" "0a050000"
        + "94" "08" "02" "03" "10" "00" "0a060000",
        RegistrationReply(0, 1800, HOME, HA, ID, (
            UdpTunnelReply(UdpTunnelReplyCode.WILL_DO_TUNNELLING, UdpTunnelReplyFlags.F, 25),
            MobileNetworkAcknowledgement(MobileNetworkSubType.EXPLICIT_MODE_ACKNOWLEDGEMENT,
                                         MobileNetworkAcknowledgementCode.SUCCESS, 24, MN_NET),
            MobileNetworkAcknowledgement(MobileNetworkSubType.IMPLICIT_MODE_ACKNOWLEDGEMENT,
                                         MobileNetworkAcknowledgementCode.MOBNET_FWDING_SETUP_FAILED, 16,
                                         MN_NET2))),
    ),
    (
        "reply 147: UDP tunnel declined, reserved bits kept, prefix length 33 unauthorised",
        "03" "93" "0708" "c0a800f2" "c0a8001e" "e8fe6f8012345678" + "2c" "06" "00" "40" "7fff" "0000"
        + "94" "08" "01" "02" "21" "ee" "ffffffff",
        RegistrationReply(ReplyCode.HA_MOBNET_ERROR, 1800, HOME, HA, ID, (
            UdpTunnelReply(UdpTunnelReplyCode.TUNNELLING_DECLINED_REASON_UNSPECIFIED, UdpTunnelReplyFlags(0x7FFF)),
            MobileNetworkAcknowledgement(1, MobileNetworkAcknowledgementCode.MOBNET_UNAUTHORIZED, 33,
                                         A("255.255.255.255"), 0xEE))),
    ),
]

REVOCATION = "07" "00" "c000" "0a01000a" "0a010001" "0a020001" "00000063"
RV_HOME, RV_HA, RV_FA = A("10.1.0.10"), A("10.1.0.1"), A("10.2.0.1")

# Messages of UDP port 434 other than registration (RFC 3519 3.3, RFC 3543 3.3 and 3.4).
MESSAGE_CASES = [
    (
        "revocation from the home agent, inform, revocation support and Foreign-Home authenticator",
        REVOCATION + "89" "06" "0000" "00000007" + "22" "14" "000001f4" + AUTH16,
        RegistrationRevocation(RevocationFlags.A | RevocationFlags.I, RV_HOME, RV_HA, RV_FA, 99, (
            RevocationSupport(RevocationSupportFlags(0), 7), AuthenticationExtension(34, 500, bytes.fromhex(AUTH16)))),
    ),
    (
        "revocation from a foreign agent, every reserved bit set, no extensions",
        "07" "ff" "3fff" "0a01000a" "0a010001" "0a020001" "ffffffff",
        RegistrationRevocation(RevocationFlags(0x3FFF), RV_HOME, RV_HA, RV_FA, 0xFFFFFFFF, reserved=0xFF),
    ),
    (
        "revocation acknowledgement, inform, Mobile-Home authenticator",
        "0f" "00" "8000" "0a01000a" "00000063" + "20" "14" "00000100" + AUTH16,
        RevocationAcknowledgement(RevocationAckFlags.I, RV_HOME, 99, (
            AuthenticationExtension(32, 256, bytes.fromhex(AUTH16)),)),
    ),
    (
        "revocation acknowledgement, reserved bits set, an unknown non-skippable extension kept raw",
        "0f" "01" "7fff" "0a01000a" "00000000" + "32" "01" "00",
        RevocationAcknowledgement(RevocationAckFlags(0x7FFF), RV_HOME, 0, (OpaqueTail(bytes.fromhex("320100")),),
                                  reserved=1),
    ),
    (
        "tunnel data, IP in UDP",
        "04" "04" "0000" "4500001c",
        TunnelData(Encapsulation.IP_IN_IP, bytes.fromhex("4500001c")),
    ),
    ("tunnel data, GRE in UDP, reserved kept", "04" "2f" "abcd" "00000800", TunnelData(47, b"\0\0\x08\0", 0xABCD)),
    ("tunnel data, minimal encapsulation, header only", "04" "37" "0000", TunnelData(Encapsulation.MINIMAL, b"")),
]

ICMP_CASES = [
    ("agent solicitation", "0a00f5ff00000000", AgentSolicitation()),
    (
        "foreign agent advertisement with prefix lengths and padding",
        "09" "10" "937c" "01" "02" "0003" "0a020001" "00000000"
        "10" "0a" "0005" "0258" "1100" "0a020001" "13" "01" "18" "00",
        AgentAdvertisement(3, 16, (RouterAddress(A("10.2.0.1"), 0),), (
            MobilityAgentExtension(5, 600, AF.F | AF.T, (A("10.2.0.1"),)),
            PrefixLengthsExtension((24,)), OneBytePadding())),
    ),
    (
        "home agent advertisement, no router address, unknown skippable extension",
        "09" "00" "f7eb" "00" "02" "0003" "10" "06" "ffff" "0708" "2000" "c8" "00",
        AgentAdvertisement(3, 0, (), (
            MobilityAgentExtension(0xFFFF, 1800, AF.H), UnknownExtension(200, b""))),
    ),
]

MALFORMED = [
    ("empty", "", decode_registration, "empty"),
    ("not a registration message", "02" + "00" * 23, decode_registration, "unknown registration message type"),
    ("short request", FIXED_RRQ[:-2], decode_registration, "shorter than 24"),
    ("short reply", FIXED_RRP[:-2], decode_registration, "shorter than 20"),
    ("extension length past the end", FIXED_RRQ + "20" "14" "00000100", decode_registration, "truncated"),
    ("extension with no length byte", FIXED_RRQ + "83", decode_registration, "truncated extension length"),
    ("authentication shorter than its SPI", FIXED_RRQ + "20" "03" "000001", decode_registration, "SPI"),
    ("delivery style with data", FIXED_RRQ + "82" "01" "00", decode_registration, "length 0"),
    ("short ICMP", "0a00f5ff", decode_icmp, "shorter than 8"),
    ("bad ICMP checksum", "0a00f5fe00000000", decode_icmp, "checksum"),
    ("other ICMP type", "0800f7ff00000000", decode_icmp, "neither"),
    ("long solicitation", "0a00f5ff0000000000000000", decode_icmp, "expected 8"),
    # RFC 3519 3.1 and 3.2: Length 6; the reply is not skippable, so a Sub-Type other than 0 is an error.
    ("UDP tunnel request of length 4", FIXED_RRQ + "90" "04" "00" "00" "80" "04", decode_registration,
     "UDP tunnel request extension length 4"),
    ("UDP tunnel reply of length 5", FIXED_RRP + "2c" "05" "00" "00" "8000" "00", decode_registration,
     "UDP tunnel reply extension length 5"),
    ("UDP tunnel reply with sub-type 1", FIXED_RRP + "2c" "06" "01" "00" "0000" "0000", decode_registration,
     "sub-type 1"),
    ("UDP tunnel reply cut short", FIXED_RRP + "2c" "06" "00" "00" "80", decode_registration, "truncated"),
    # RFC 5177 4.1 and 4.2: Length 6 for the request, 8 for an acknowledgement.
    ("mobile network request of length 5", FIXED_RRQ + "94" "05" "00" "18" "0a0500", decode_registration,
     "mobile network request extension length 5"),
    ("mobile network acknowledgement of length 6", FIXED_RRP + "94" "06" "01" "00" "18" "00" "0a05",
     decode_registration, "mobile network acknowledgement extension length 6"),
    ("mobile network extension without a sub-type", FIXED_RRQ + "94" "00", decode_registration, "sub-type"),
    # RFC 3543 3.2: Length at least 6.
    ("revocation support of length 4", FIXED_RRQ + "89" "04" "8000" "0000", decode_registration, "need 6"),
    ("short revocation", REVOCATION[:-2], decode_message, "shorter than 20"),
    ("short revocation acknowledgement", "0f" "00" "8000" "0a01000a" "000000", decode_message, "shorter than 12"),
    ("revocation with a truncated authenticator", REVOCATION + "22" "14" "000001f4", decode_message, "truncated"),
    ("short tunnel data", "0404", decode_message, "shorter than 4"),
    ("empty port 434 datagram", "", decode_message, "empty"),
    ("message type 5", "05" + "00" * 23, decode_message, "unknown message type 5"),
    ("revocation to the tunnel data decoder", REVOCATION, decode_tunnel_data, "not a tunnel data message"),
    ("acknowledgement to the revocation decoder", "0f" + "00" * 23, decode_revocation, "not a registration revocation"),
    ("revocation to the acknowledgement decoder", REVOCATION, decode_revocation_acknowledgement,
     "not a revocation acknowledgement"),
    # The engines' decoder keeps refusing every type but 1 and 3 (they drop it as malformed).
    ("revocation to decode_registration", REVOCATION, decode_registration, "unknown registration message type 7"),
    ("tunnel data to decode_registration", "04040000", decode_registration, "unknown registration message type 4"),
    ("acknowledgement to decode_registration", "0f" + "00" * 23, decode_registration,
     "unknown registration message type 15"),
]


@pytest.mark.parametrize(("name", "wire", "message"), REGISTRATION_CASES, ids=[c[0] for c in REGISTRATION_CASES])
def test_registration_vectors(name: str, wire: str, message: RegistrationRequest | RegistrationReply) -> None:
    assert message.encode().hex() == wire
    assert decode_registration(bytes.fromhex(wire)) == message


@pytest.mark.parametrize(("name", "wire", "message"), EXTENSION_CASES, ids=[c[0] for c in EXTENSION_CASES])
def test_extension_vectors(name: str, wire: str, message: RegistrationRequest | RegistrationReply) -> None:
    assert message.encode().hex() == wire
    assert decode_registration(bytes.fromhex(wire)) == message
    assert decode_message(bytes.fromhex(wire)) == message


@pytest.mark.parametrize(("name", "wire", "message"), MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_port_434_message_vectors(name: str, wire: str, message: object) -> None:
    assert message.encode().hex() == wire  # type: ignore[attr-defined]
    assert decode_message(bytes.fromhex(wire)) == message


def test_decode_message_knows_every_registration_vector() -> None:
    for _, wire, message in REGISTRATION_CASES:
        assert decode_message(bytes.fromhex(wire)) == message
    assert [int(t) for t in MessageType] == [1, 3, 4, 7, 15]


def test_udp_tunnel_reply_is_understood() -> None:
    """RFC 3519 3.2: the non-skippable UDP Tunnel Reply is supported now (the mobile node reads it),
    so a reply carrying it is no longer discarded as unrecognised (RFC 5944 1.8)."""
    reply = EXTENSION_CASES[4][2]
    assert isinstance(reply.extensions[0], UdpTunnelReply)
    assert reply.unrecognised_nonskippable is None
    assert ExtensionType.UDP_TUNNEL_REPLY not in NOT_YET_SUPPORTED_NONSKIPPABLE
    assert EXTENSION_CASES[0][2].unrecognised_nonskippable is None  # skippable ones do not count


def test_new_extension_types_in_the_section_1_8_table() -> None:
    """RFC 3519 3.1/3.2, RFC 3543 3.2, RFC 5177 4: which of the new types are skippable."""
    assert disposition(ExtensionType.UDP_TUNNEL_REPLY) is Disposition.DISCARD_MESSAGE  # "non-skippable"
    for skippable in (ExtensionType.UDP_TUNNEL_REQUEST, ExtensionType.REVOCATION_SUPPORT,
                      ExtensionType.MOBILE_NETWORK, ExtensionType.MOBILE_NODE_NAI):
        assert disposition(skippable) is Disposition.SKIP_EXTENSION


def test_udp_tunnel_reply_codes_of_rfc_3519() -> None:
    assert tunnelling_accepted(0) and tunnelling_accepted(63)
    assert not tunnelling_accepted(64) and not tunnelling_accepted(255)
    assert UdpTunnelReply(UdpTunnelReplyCode.WILL_DO_TUNNELLING).accepted
    assert not UdpTunnelReply(UdpTunnelReplyCode.TUNNELLING_DECLINED_REASON_UNSPECIFIED).accepted


def test_revocation_accessors() -> None:
    revocation, _, ack = (c[2] for c in MESSAGE_CASES[:3])
    assert isinstance(revocation, RegistrationRevocation) and isinstance(ack, RevocationAcknowledgement)
    assert revocation.from_home_agent and not MESSAGE_CASES[1][2].from_home_agent  # type: ignore[union-attr]
    assert ack.acknowledges(revocation)
    assert not RevocationAcknowledgement(RevocationAckFlags(0), RV_HOME, 100).acknowledges(revocation)
    assert [i for i, _ in revocation.authentications(34)] == [1]
    assert MESSAGE_CASES[3][2].unrecognised_nonskippable == 0x32  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        MobileNetworkAcknowledgement(0, 0, 24, MN_NET)


@pytest.mark.parametrize(("name", "wire", "message"), ICMP_CASES, ids=[c[0] for c in ICMP_CASES])
def test_icmp_vectors(name: str, wire: str, message: AgentAdvertisement | AgentSolicitation) -> None:
    assert message.encode().hex() == wire
    assert decode_icmp(bytes.fromhex(wire)) == message


@pytest.mark.parametrize(("name", "wire", "decoder", "reason"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_inputs_raise_decode_error(name: str, wire: str, decoder: object, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decoder(bytes.fromhex(wire))  # type: ignore[operator]


def test_section_1_8_rule_table() -> None:
    assert [disposition(t) for t in (0, 32, 127)] == [Disposition.DISCARD_MESSAGE] * 3
    assert [disposition(t) for t in (128, 131, 255)] == [Disposition.SKIP_EXTENSION] * 3
    with pytest.raises(ValueError):
        disposition(256)


def test_messages_report_unrecognised_nonskippable_extensions() -> None:
    opaque = decode_registration(bytes.fromhex(REGISTRATION_CASES[3][1]))
    assert opaque.unrecognised_nonskippable == 0x32
    skippable = decode_registration(bytes.fromhex(REGISTRATION_CASES[2][1]))
    assert skippable.unrecognised_nonskippable is None
    assert [i for i, _ in skippable.authentications(33)] == [4]
    assert skippable.mobile_home_auth == AuthenticationExtension(32, 257, b"\xaa\xbb")


def test_advertisement_accessors() -> None:
    advert = ICMP_CASES[1][2]
    assert isinstance(advert, AgentAdvertisement)
    assert advert.mobility is not None and advert.mobility.sequence == 5
    assert advert.prefix_lengths == PrefixLengthsExtension((24,))
    assert AgentAdvertisement(3).mobility is None


def test_advertisement_flags_of_rfc_3519_and_rfc_3543() -> None:
    """RFC 3519 3.4: U follows T; RFC 3543 3.1: X follows U. (0x0020 is RFC 4857's I bit.)"""
    assert (AF.T, AF.U, AF.X, AF.I) == (0x0100, 0x0080, 0x0040, 0x0020)
    wire = MobilityAgentExtension(1, 600, AF.F | AF.U | AF.X).encode()
    assert wire.hex() == "10" "06" "0001" "0258" "10c0"


def test_request_flag_letters_in_rfc_order() -> None:
    assert (RequestFlags.T | RequestFlags.S | RequestFlags.D).letters() == "SDT"
    assert RequestFlags(0xFF).letters() == "SBDMGT"
    assert RequestFlags(0).letters() == ""


def test_sequence_numbers_wrap_to_256() -> None:
    assert next_sequence(0) == 1
    assert next_sequence(255) == 256
    assert next_sequence(0xFFFE) == 0xFFFF
    assert next_sequence(0xFFFF) == 256


def test_reply_code_ranges() -> None:
    assert ReplyCode(139).name == "HA_REQUESTED_ENCAPSULATION_UNAVAILABLE"
    assert ReplyCode(194).name == "FA_INVALID_HOME_AGENT_ADDRESS"
    # RFC 2794 section 5, RFC 3519 section 3.5, RFC 5177 section 11.
    assert [ReplyCode(c).name for c in (96, 97, 98, 99)] == [
        "FA_NONZERO_HOMEADDR_REQD", "FA_MISSING_NAI", "FA_MISSING_HOME_AGENT", "FA_MISSING_HOMEADDR"]
    assert ReplyCode(142).name == "HA_UDP_ENCAP_UNAVAIL"
    assert (ReplyCode(147).name, ReplyCode(148).name) == ("HA_MOBNET_ERROR", "HA_MOBNET_DISALLOWED")
    assert all(is_accepted(c) for c in (0, 1)) and not is_accepted(64)
    fa = [c for c in ReplyCode if denied_by_foreign_agent(c)]
    ha = [c for c in ReplyCode if denied_by_home_agent(c)]
    assert min(fa) == 64 and 194 in fa and 88 in fa
    assert (min(ha), max(ha)) == (128, 148)
    assert len(fa) + len(ha) + 2 == len(ReplyCode)


def test_timestamp_identification() -> None:
    # 2026-01-01T00:00:00Z is Unix second 1767225600; NTP counts 2208988800 more seconds.
    t = 1_767_225_600.5
    value = ident.timestamp(t, 0xFFFFFFFF)
    assert ident.high32(value) == 1_767_225_600 + 2_208_988_800
    assert ident.low32(value) >> 12 == 0x80000000 >> 12  # the clock's half second
    assert ident.low32(value) & 0xFFF == 0xFFF  # the rest from the random bits
    assert abs(ident.to_unix(value) - t) < 2**-19


def test_timestamp_window_and_order() -> None:
    now = 1_767_225_600.0
    stamp = ident.timestamp(now, 0)
    assert ident.timestamp_acceptable(stamp, now + 7, 7, None)
    assert not ident.timestamp_acceptable(stamp, now + 7.001, 7, None)
    assert not ident.timestamp_acceptable(stamp, now, 7, stamp)  # replay
    assert ident.timestamp_acceptable(stamp + 1, now, 7, stamp)


def test_reply_identifications_of_section_5_7() -> None:
    request = 0x0102030405060708
    mismatch = ident.timestamp_mismatch_reply(request, 1_767_225_600.9)
    assert ident.low32(mismatch) == 0x05060708
    assert ident.high32(mismatch) == 1_767_225_600 + 2_208_988_800
    assert ident.clock_offset(mismatch, 1_767_225_590.0) == 10.0
    nonce = ident.nonce_reply(request, 0xCAFEBABE)
    assert nonce == 0xCAFEBABE05060708 and ident.reply_matches(request, nonce)
    assert not ident.reply_matches(request, nonce + 1)
    assert ident.nonce_request(0xCAFEBABE, 0x11) == 0xCAFEBABE00000011
    assert ident.nonce_acceptable(0xCAFEBABE00000011, 0xCAFEBABE)
    assert not ident.nonce_acceptable(0xCAFEBABE00000011, 0xCAFEBABF)
    assert not ident.nonce_acceptable(0xCAFEBABE00000011, None)


def test_timestamps_across_the_2036_ntp_rollover() -> None:
    after = 2_085_978_496 + 3600.25  # an hour after 2036-02-07T06:28:16Z, when NTP seconds wrap to 0
    value = ident.timestamp(after, 0)
    assert ident.high32(value) == 3600
    assert abs(ident.to_unix(value) - after) < 2**-19
    assert ident.timestamp_acceptable(value, after + 1, 7, ident.timestamp(after - 10, 0))
    assert ident.clock_offset(ident.timestamp_mismatch_reply(1, after), after - 5) == 4.75  # whole seconds
