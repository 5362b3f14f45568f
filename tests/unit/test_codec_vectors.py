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
from mipd.core.wire.extensions import AuthenticationExtension, EncapsulatingDeliveryStyle, MobileNodeNAI
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
from mipd.core.wire.registration import (
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    decode_registration,
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
]


@pytest.mark.parametrize(("name", "wire", "message"), REGISTRATION_CASES, ids=[c[0] for c in REGISTRATION_CASES])
def test_registration_vectors(name: str, wire: str, message: RegistrationRequest | RegistrationReply) -> None:
    assert message.encode().hex() == wire
    assert decode_registration(bytes.fromhex(wire)) == message


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
