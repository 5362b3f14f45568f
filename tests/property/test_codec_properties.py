"""Property tests of the wire codec (mipd.core), driven by hypothesis.

Every test states its invariant in its docstring. Strategies cover every message and extension
type the codec knows, with every field over its whole range, plus the raw forms it keeps for what
it does not know (UnknownExtension, OpaqueTail).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mipd.core.wire import auth, identification
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.extensions import (
    AuthenticationExtension,
    EncapsulatingDeliveryStyle,
    MobileNodeNAI,
    RevocationSupport,
    RevocationSupportFlags,
)
from mipd.core.wire.icmp import (
    AdvertisementFlags,
    AgentAdvertisement,
    AgentSolicitation,
    MobilityAgentExtension,
    OneBytePadding,
    PrefixLengthsExtension,
    RouterAddress,
    checksum,
    decode_icmp,
    next_sequence,
)
from mipd.core.wire.messages import DECODERS, decode_message
from mipd.core.wire.mobile_network import (
    ACKNOWLEDGEMENT_SUB_TYPES,
    MobileNetworkAcknowledgement,
    MobileNetworkRequest,
)
from mipd.core.wire.nat import (
    TunnelData,
    UdpTunnelReply,
    UdpTunnelReplyFlags,
    UdpTunnelRequest,
    UdpTunnelRequestFlags,
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
)
from mipd.core.wire.tlv import OpaqueTail, UnknownExtension

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
i32 = st.integers(-(2**31), 2**31 - 1)
ipv4 = u32.map(IPv4Address)

AUTH_TYPES = (32, 33, 34)
REG_RECOGNISED_SKIPPABLE = (130, 131, 137, 144, 148)
REG_RECOGNISED_NONSKIPPABLE = (*AUTH_TYPES, 44)
ICMP_RECOGNISED = (0, 16, 19)

auth_extensions = st.builds(
    AuthenticationExtension, st.sampled_from(AUTH_TYPES), u32, st.binary(max_size=251)
)
nai_extensions = st.builds(MobileNodeNAI, st.binary(max_size=255))
delivery_style = st.just(EncapsulatingDeliveryStyle())
# RFC 3519 3.1 and 3.2, RFC 5177 4.1 and 4.2, RFC 3543 3.2: every field over its whole range.
udp_tunnel_requests = st.builds(UdpTunnelRequest, u8.map(UdpTunnelRequestFlags), u8, u8)
udp_tunnel_replies = st.builds(UdpTunnelReply, u8, u16.map(UdpTunnelReplyFlags), u16)
mobile_network_requests = st.builds(MobileNetworkRequest, u8, ipv4)
mobile_network_acks = st.builds(
    MobileNetworkAcknowledgement, st.sampled_from(sorted(ACKNOWLEDGEMENT_SUB_TYPES)), u8, u8, ipv4, u8
)
revocation_supports = st.builds(RevocationSupport, u16.map(RevocationSupportFlags), u32, st.binary(max_size=249))
reg_unknown = st.builds(
    UnknownExtension,
    st.integers(128, 255).filter(lambda t: t not in REG_RECOGNISED_SKIPPABLE),
    st.binary(max_size=255),
)
reg_opaque_tail = st.builds(
    lambda t, rest: OpaqueTail(bytes((t,)) + rest),
    st.integers(0, 127).filter(lambda t: t not in REG_RECOGNISED_NONSKIPPABLE),
    st.binary(max_size=300),
)
reg_extension = st.one_of(
    auth_extensions, nai_extensions, delivery_style, reg_unknown, udp_tunnel_requests, udp_tunnel_replies,
    mobile_network_requests, mobile_network_acks, revocation_supports,
)


@st.composite
def reg_extension_lists(draw: st.DrawFn, *, allow_tail: bool = True) -> tuple[object, ...]:
    exts = draw(st.lists(reg_extension, max_size=6))
    if allow_tail and draw(st.booleans()):
        exts.append(draw(reg_opaque_tail))
    return tuple(exts)


def requests(extensions: st.SearchStrategy[tuple[object, ...]] | None = None) -> st.SearchStrategy:
    return st.builds(
        RegistrationRequest,
        u8.map(RequestFlags),  # all eight bits, the reserved r and x included
        u16,
        ipv4,
        ipv4,
        ipv4,
        u64,
        extensions if extensions is not None else reg_extension_lists(),
    )


def replies(extensions: st.SearchStrategy[tuple[object, ...]] | None = None) -> st.SearchStrategy:
    return st.builds(
        RegistrationReply,
        u8,  # any code byte, defined or not
        u16,
        ipv4,
        ipv4,
        u64,
        extensions if extensions is not None else reg_extension_lists(),
    )


registration_messages = st.one_of(requests(), replies())

router_addresses = st.builds(RouterAddress, ipv4, i32)
mobility_extensions = st.builds(
    MobilityAgentExtension,
    u16,
    u16,
    u16.map(AdvertisementFlags),  # any 16 bits, reserved ones included
    st.lists(ipv4, max_size=62).map(tuple),  # Length 6 + 4N must fit a byte: N <= 62
)
prefix_lengths = st.builds(PrefixLengthsExtension, st.lists(st.integers(0, 32), max_size=255).map(tuple))
icmp_unknown = st.builds(UnknownExtension, st.integers(128, 255), st.binary(max_size=255))
icmp_opaque_tail = st.builds(
    lambda t, rest: OpaqueTail(bytes((t,)) + rest),
    st.integers(1, 127).filter(lambda t: t not in ICMP_RECOGNISED),
    st.binary(max_size=300),
)
icmp_extension = st.one_of(mobility_extensions, prefix_lengths, st.just(OneBytePadding()), icmp_unknown)


@st.composite
def icmp_extension_lists(draw: st.DrawFn) -> tuple[object, ...]:
    exts = draw(st.lists(icmp_extension, max_size=5))
    if draw(st.booleans()):
        exts.append(draw(icmp_opaque_tail))
    return tuple(exts)


advertisements = st.builds(
    AgentAdvertisement,
    u16,
    u8,
    st.lists(router_addresses, max_size=12).map(tuple),
    icmp_extension_lists(),
)
solicitations = st.builds(AgentSolicitation, u8, u32)
icmp_messages = st.one_of(advertisements, solicitations)


# Raw bytes that look enough like a message to get past the first checks.
tlv_soup = st.lists(
    st.tuples(
        st.one_of(st.sampled_from((0, 16, 19, 32, 33, 34, 44, 130, 131, 137, 144, 148, 200, 50)), u8),
        u8,  # declared length, often wrong for the data that follows
        st.binary(max_size=40),
    ).map(lambda t: bytes(t[:2]) + t[2]),
    max_size=6,
).map(b"".join)

registration_like = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.sampled_from((1, 3)), st.binary(max_size=30), tlv_soup).map(
        lambda t: bytes((t[0],)) + t[1] + t[2]
    ),
    st.tuples(st.sampled_from((1, 3)), st.binary(min_size=19, max_size=23), tlv_soup).map(
        lambda t: bytes((t[0],)) + t[1] + t[2]
    ),
)

icmp_like = st.one_of(
    st.binary(max_size=400),
    st.tuples(
        st.sampled_from((9, 10)),
        u8,
        u16,
        st.one_of(st.integers(0, 4), u8),
        st.one_of(st.just(2), u8),
        u16,
        st.binary(max_size=40),
        tlv_soup,
    ).map(lambda t: bytes((t[0], t[1])) + t[2].to_bytes(2, "big") + bytes((t[3], t[4]))
          + t[5].to_bytes(2, "big") + t[6] + t[7]),
)


def with_checksum(data: bytes) -> bytes:
    """``data`` with its ICMP checksum field set so that it verifies."""
    if len(data) < 4:
        return data
    zeroed = data[:2] + b"\0\0" + data[4:]
    return zeroed[:2] + checksum(zeroed).to_bytes(2, "big") + zeroed[4:]


# --------------------------------------------------------------------------------------------
# Checkers shared by the robustness properties
# --------------------------------------------------------------------------------------------


def check_registration_bytes(data: bytes) -> RegistrationRequest | RegistrationReply | None:
    """Decoding returns a message or raises DecodeError; a message re-encodes to ``data``."""
    try:
        message = decode_registration(data)
    except DecodeError:
        return None
    assert isinstance(message, RegistrationRequest | RegistrationReply)
    assert message.encode() == data
    return message


def check_icmp_bytes(data: bytes, *, verify: bool) -> AgentAdvertisement | AgentSolicitation | None:
    """Decoding returns a message or raises DecodeError; a message re-encodes to ``data``.

    The encoder always writes a fresh checksum, so bytes 2-3 are compared only when the decoder
    verified them. Even then one's-complement arithmetic has two zeros: a received 0xffff where
    0x0000 would also verify is valid, and re-encodes as 0x0000 (RFC 1624 section 3).
    """
    try:
        message = decode_icmp(data, verify_checksum=verify)
    except DecodeError:
        return None
    assert isinstance(message, AgentAdvertisement | AgentSolicitation)
    out = message.encode()
    assert len(out) == len(data)
    assert out[:2] + out[4:] == data[:2] + data[4:]
    assert checksum(out) == 0
    if verify:
        assert out[2:4] == data[2:4] or (data[2:4] == b"\xff\xff" and out[2:4] == b"\0\0")
    return message


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@PROPERTY
@given(registration_messages)
def test_registration_round_trip(message: RegistrationRequest | RegistrationReply) -> None:
    """For every Registration Request and Reply: decode(encode(m)) == m, and
    encode(decode(b)) == b for b = encode(m)."""
    wire = message.encode()
    decoded = decode_registration(wire)
    assert decoded == message
    assert type(decoded) is type(message)
    assert decoded.encode() == wire


@PROPERTY
@given(icmp_messages)
def test_icmp_round_trip(message: AgentAdvertisement | AgentSolicitation) -> None:
    """For every Agent Advertisement and Solicitation: the encoding carries a valid checksum,
    decode(encode(m)) == m, and encode(decode(b)) == b for b = encode(m)."""
    wire = message.encode()
    assert checksum(wire) == 0
    decoded = decode_icmp(wire)
    assert decoded == message
    assert type(decoded) is type(message)
    assert decoded.encode() == wire
    assert decode_icmp(wire, verify_checksum=False) == message


def test_icmp_checksum_has_two_zeros() -> None:
    """A received checksum 0xffff that verifies where 0x0000 also would (the words sum to
    0xffff) decodes, and re-encodes with 0x0000: the one case where ICMP re-encoding is not
    byte-exact. The reserved word is chosen so that the other words sum to 0xffff."""
    head = bytes((10, 0)) + b"\0\0"
    reserved = 0xFFFF - 0x0A00
    data = head[:2] + b"\xff\xff" + (reserved).to_bytes(4, "big")
    assert checksum(data) == 0
    message = decode_icmp(data)
    assert message == AgentSolicitation(0, reserved)
    assert message.encode() == data[:2] + b"\0\0" + data[4:]
    check_icmp_bytes(data, verify=True)


# --------------------------------------------------------------------------------------------
# Robustness: only DecodeError escapes, and what decodes re-encodes exactly
# --------------------------------------------------------------------------------------------


@PROPERTY
@given(registration_like)
def test_registration_arbitrary_bytes(data: bytes) -> None:
    """decode_registration of any bytes returns a message or raises DecodeError, and a decoded
    message re-encodes to exactly those bytes."""
    check_registration_bytes(data)


@PROPERTY
@given(icmp_like, st.booleans())
def test_icmp_arbitrary_bytes(data: bytes, fix_checksum: bool) -> None:
    """decode_icmp of any bytes, with and without checksum verification (and with the checksum
    made valid), returns a message or raises DecodeError; a decoded message re-encodes to the
    same bytes (bytes 2-3 excepted where the checksum was not verified)."""
    check_icmp_bytes(data, verify=False)
    check_icmp_bytes(data, verify=True)
    if fix_checksum:
        fixed = with_checksum(data)
        result = check_icmp_bytes(fixed, verify=True)
        # a valid checksum means verification changes nothing
        assert result == check_icmp_bytes(fixed, verify=False)


@FEW
@given(registration_messages)
def test_registration_truncations(message: RegistrationRequest | RegistrationReply) -> None:
    """Every proper prefix of a valid encoding decodes to a message (re-encoding to that prefix)
    or raises DecodeError; prefixes shorter than the fixed part always raise."""
    wire = message.encode()
    for n in range(len(wire)):
        decoded = check_registration_bytes(wire[:n])
        if n < type(message).FIXED_LENGTH:
            assert decoded is None


@FEW
@given(icmp_messages)
def test_icmp_truncations(message: AgentAdvertisement | AgentSolicitation) -> None:
    """Every proper prefix of a valid encoding, checksum verified or not (and re-computed),
    decodes to a message or raises DecodeError; prefixes under 8 bytes always raise."""
    wire = message.encode()
    for n in range(len(wire)):
        prefix = wire[:n]
        results = [
            check_icmp_bytes(prefix, verify=False),
            check_icmp_bytes(prefix, verify=True),
            check_icmp_bytes(with_checksum(prefix), verify=True),
        ]
        if n < 8:
            assert results == [None, None, None]


mutations = st.lists(st.tuples(st.integers(0, 10_000), u8), min_size=1, max_size=6)


def mutate(wire: bytes, changes: list[tuple[int, int]]) -> bytes:
    buf = bytearray(wire)
    for index, value in changes:
        buf[index % len(buf)] = value
    return bytes(buf)


@PROPERTY
@given(registration_messages, mutations)
def test_registration_mutations(
    message: RegistrationRequest | RegistrationReply, changes: list[tuple[int, int]]
) -> None:
    """Overwriting one or several bytes of a valid encoding gives bytes that decode to a
    message (re-encoding exactly) or raise DecodeError. The first change alone is the
    single-byte case."""
    wire = message.encode()
    check_registration_bytes(mutate(wire, changes[:1]))
    check_registration_bytes(mutate(wire, changes))


@PROPERTY
@given(icmp_messages, mutations)
def test_icmp_mutations(message: AgentAdvertisement | AgentSolicitation, changes: list[tuple[int, int]]) -> None:
    """Overwriting one or several bytes of a valid ICMP encoding gives bytes that, with the
    checksum verified or not, and with the checksum re-computed, decode to a message
    (re-encoding exactly, bytes 2-3 aside when unverified) or raise DecodeError."""
    wire = message.encode()
    for mutated in (mutate(wire, changes[:1]), mutate(wire, changes)):
        check_icmp_bytes(mutated, verify=False)
        check_icmp_bytes(mutated, verify=True)
        check_icmp_bytes(with_checksum(mutated), verify=True)


@PROPERTY
@given(icmp_messages, st.integers(0, 10_000), st.integers(1, 0xFF))
def test_icmp_single_byte_change_fails_checksum(
    message: AgentAdvertisement | AgentSolicitation, index: int, delta: int
) -> None:
    """Changing any one byte of a valid ICMP encoding to another value breaks the checksum,
    so decoding with verification raises DecodeError."""
    wire = bytearray(message.encode())
    i = index % len(wire)
    wire[i] = (wire[i] + delta) % 256
    with pytest.raises(DecodeError):
        decode_icmp(bytes(wire))


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------

unsigned_messages = st.one_of(
    requests(reg_extension_lists(allow_tail=False)), replies(reg_extension_lists(allow_tail=False))
)
keys = st.binary(max_size=100)
algorithms = st.sampled_from(list(auth.Algorithm))


def _hmac_block_key(key: bytes) -> bytes:
    """The 64-byte block key HMAC really uses (RFC 2104 section 2): long keys are hashed, short
    ones zero-padded. Two keys with the same block key give the same HMAC."""
    if len(key) > 64:
        key = hashlib.md5(key).digest()
    return key.ljust(64, b"\0")


def _equivalent_keys(algorithm: auth.Algorithm, a: bytes, b: bytes) -> bool:
    if algorithm == auth.Algorithm.HMAC_MD5:
        return _hmac_block_key(a) == _hmac_block_key(b)
    return a == b


def _sign(message, ext_type, spi, key, algorithm):  # type: ignore[no-untyped-def]
    signed = auth.append_authentication(message, ext_type, spi, key, algorithm)
    wire = signed.encode()
    decoded = decode_registration(wire)
    assert decoded == signed
    return wire, decoded, len(decoded.extensions) - 1


@PROPERTY
@given(unsigned_messages, st.sampled_from(AUTH_TYPES), u32, keys, keys, algorithms)
def test_auth_verifies_with_the_key_and_only_the_key(
    message: RegistrationRequest | RegistrationReply,
    ext_type: int,
    spi: int,
    key: bytes,
    other_key: bytes,
    algorithm: auth.Algorithm,
) -> None:
    """append_authentication then verify, over the decoded wire form, is True with the same
    key and algorithm, and False with any other key (other than one HMAC cannot tell apart:
    the same zero-padded 64-byte block key) and with the other algorithm."""
    wire, decoded, index = _sign(message, ext_type, spi, key, algorithm)
    ext = decoded.extensions[index]
    assert isinstance(ext, AuthenticationExtension)
    assert (ext.type, ext.spi, len(ext.authenticator)) == (ext_type, spi, auth.AUTHENTICATOR_LENGTH)
    assert wire[-20:-16] == spi.to_bytes(4, "big")
    assert auth.verify(decoded, index, key, algorithm)
    assume(not _equivalent_keys(algorithm, key, other_key))
    assert not auth.verify(decoded, index, other_key, algorithm)
    other_algorithm = next(a for a in auth.Algorithm if a != algorithm)
    assert not auth.verify(decoded, index, key, other_algorithm)


@PROPERTY
@given(unsigned_messages, st.sampled_from(AUTH_TYPES), u32, keys, algorithms, st.integers(0, 10**6))
def test_auth_rejects_any_single_bit_flip(
    message: RegistrationRequest | RegistrationReply,
    ext_type: int,
    spi: int,
    key: bytes,
    algorithm: auth.Algorithm,
    bit: int,
) -> None:
    """Flipping any single bit of a signed message's encoding and decoding it again gives
    either a DecodeError or a message in which no authentication extension verifies under the
    key: the authenticator covers every byte before it and is itself compared in full."""
    wire, _, _ = _sign(message, ext_type, spi, key, algorithm)
    bit %= len(wire) * 8
    flipped = bytearray(wire)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    try:
        tampered = decode_registration(bytes(flipped))
    except DecodeError:
        return
    for i, ext in enumerate(tampered.extensions):
        if isinstance(ext, AuthenticationExtension):
            assert not auth.verify(tampered, i, key, algorithm)


@PROPERTY
@given(requests(reg_extension_lists(allow_tail=False)), keys, keys, algorithms)
def test_auth_chain_mn_ha_then_mn_fa(
    message: RegistrationRequest, ha_key: bytes, fa_key: bytes, algorithm: auth.Algorithm
) -> None:
    """An MN-FA authenticator appended after an MN-HA one covers the whole MN-HA extension:
    both verify, and changing only the MN-HA authenticator breaks the MN-FA one too."""
    with_ha = auth.append_authentication(message, 32, 1, ha_key, algorithm)
    both = auth.append_authentication(with_ha, 33, 2, fa_key, algorithm)
    decoded = decode_registration(both.encode())
    n = len(decoded.extensions)
    assert auth.verify(decoded, n - 2, ha_key, algorithm)
    assert auth.verify(decoded, n - 1, fa_key, algorithm)
    ha_ext = decoded.extensions[n - 2]
    assert isinstance(ha_ext, AuthenticationExtension)
    bad = AuthenticationExtension(32, 1, bytes(b ^ 0xFF for b in ha_ext.authenticator))
    altered = replace(decoded, extensions=(*decoded.extensions[: n - 2], bad, decoded.extensions[n - 1]))
    assert not auth.verify(altered, n - 1, fa_key, algorithm)
    assert not auth.verify(altered, n - 2, ha_key, algorithm)


# --------------------------------------------------------------------------------------------
# Identification (RFC 5944 section 5.7)
# --------------------------------------------------------------------------------------------

NTP_ERA0_END = 2**32 - identification.NTP_UNIX_OFFSET  # first Unix second NTP era 0 cannot hold
unix_times = st.floats(min_value=0, max_value=NTP_ERA0_END - 1, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(unix_times, u32)
def test_timestamp_round_trips_within_2_pow_minus_20(unix_time: float, random_bits: int) -> None:
    """to_unix(timestamp(t, r)) is within 2**-20 s of t for any t in NTP era 0 and any random
    bits: only the 12 low fraction bits are replaced by noise; the seconds are t's."""
    ident = identification.timestamp(unix_time, random_bits)
    assert 0 <= ident < 2**64
    assert abs(identification.to_unix(ident) - unix_time) <= 2**-20
    assert identification.high32(ident) == int(unix_time) + identification.NTP_UNIX_OFFSET
    assert identification.low32(ident) & 0xFFF == random_bits & 0xFFF


@PROPERTY
@given(u64, unix_times, u32)
def test_replies_match_their_request(request_ident: int, now: float, nonce: int) -> None:
    """A timestamp-mismatch (133) reply and a nonce reply both match the request they answer
    (same low 32 bits), and do not match a request with different low 32 bits. The 133 reply
    carries the home agent's seconds; the nonce reply carries the nonce."""
    mismatch = identification.timestamp_mismatch_reply(request_ident, now)
    nonce_reply = identification.nonce_reply(request_ident, nonce)
    assert identification.reply_matches(request_ident, mismatch)
    assert identification.reply_matches(request_ident, nonce_reply)
    other = request_ident ^ 1
    assert not identification.reply_matches(other, mismatch)
    assert not identification.reply_matches(other, nonce_reply)
    assert identification.high32(mismatch) == int(now) + identification.NTP_UNIX_OFFSET
    assert identification.high32(nonce_reply) == nonce
    assert identification.nonce_acceptable(identification.nonce_request(nonce, request_ident), nonce)


# Exact dyadic values, so the float arithmetic in the window check is exact.
seconds_values = st.integers(1_000, NTP_ERA0_END - 100)  # NTP era 0 (to 2036)
fractions = st.integers(0, 2**12 - 1).map(lambda f: f << 20)  # 12 fraction bits
windows = st.integers(0, 64 * 16).map(lambda w: w / 16)  # 0 .. 64 s in 1/16 s steps


@PROPERTY
@given(seconds_values, fractions, windows, st.sampled_from((1, -1)))
def test_timestamp_window_edges(seconds: int, fraction: int, window: float, sign: int) -> None:
    """A timestamp exactly `window` seconds from now (either side) is acceptable; 1/16 s more
    and it is not (RFC 5944 section 5.7.1)."""
    ident = ((seconds + identification.NTP_UNIX_OFFSET) << 32) | fraction
    at = identification.to_unix(ident)
    assert at == seconds + fraction / 2**32
    assert identification.timestamp_acceptable(ident, at + sign * window, window, None)
    assert not identification.timestamp_acceptable(ident, at + sign * (window + 1 / 16), window, None)


@PROPERTY
@given(seconds_values, fractions, st.integers(1, 2**40))
def test_timestamp_strictly_monotonic(seconds: int, fraction: int, gap: int) -> None:
    """Within the window, a timestamp is acceptable iff it is strictly greater than the last
    accepted one: equal or older timestamps are replays."""
    ident = ((seconds + identification.NTP_UNIX_OFFSET) << 32) | fraction
    now = identification.to_unix(ident)
    window = identification.DEFAULT_REPLAY_WINDOW
    assert identification.timestamp_acceptable(ident, now, window, None)
    assert identification.timestamp_acceptable(ident, now, window, ident - gap)
    assert not identification.timestamp_acceptable(ident, now, window, ident)
    assert not identification.timestamp_acceptable(ident, now, window, ident + gap)


@PROPERTY
@given(u16)
def test_next_sequence(sequence: int) -> None:
    """next_sequence adds one, except that 0xffff is followed by 256; once past 255 it never
    yields 0-255 again (RFC 5944 section 2.3.2)."""
    following = next_sequence(sequence)
    if sequence == 0xFFFF:
        assert following == 256
    else:
        assert following == sequence + 1
    if sequence >= 255:
        assert 256 <= following <= 0xFFFF


def test_next_sequence_walk() -> None:
    """Walking the whole sequence space from 255 for 2**17 steps never yields 0-255, and
    wraps from 0xffff to 256 (exhaustive version of the property above)."""
    seq = 255
    for _ in range(2**17):
        nxt = next_sequence(seq)
        assert 256 <= nxt <= 0xFFFF
        if seq == 0xFFFF:
            assert nxt == 256
        seq = nxt


# --------------------------------------------------------------------------------------------
# The other messages of UDP port 434: RFC 3519 tunnel data, RFC 3543 revocations
# --------------------------------------------------------------------------------------------

revocations = st.builds(
    RegistrationRevocation, u16.map(RevocationFlags), ipv4, ipv4, ipv4, u32, reg_extension_lists(), u8
)
acknowledgements = st.builds(RevocationAcknowledgement, u16.map(RevocationAckFlags), ipv4, u32,
                             reg_extension_lists(), u8)
tunnel_data = st.builds(TunnelData, u8, st.binary(max_size=300), u16)
port_434_messages = st.one_of(registration_messages, revocations, acknowledgements, tunnel_data)
port_434_like = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.sampled_from(sorted(DECODERS)), st.binary(max_size=30), tlv_soup).map(
        lambda t: bytes((t[0],)) + t[1] + t[2]
    ),
    st.tuples(st.sampled_from((7, 15)), st.binary(min_size=11, max_size=19), tlv_soup).map(
        lambda t: bytes((t[0],)) + t[1] + t[2]
    ),
)


def check_port_434_bytes(data: bytes) -> object:
    """decode_message returns a message or raises DecodeError; a message re-encodes to ``data``,
    and the decoder of its type gives the same value."""
    try:
        message = decode_message(data)
    except DecodeError:
        return None
    assert message.encode() == data
    assert DECODERS[data[0]](data) == message
    return message


@PROPERTY
@given(port_434_messages)
def test_port_434_round_trip(message: object) -> None:
    """For every message of UDP port 434 (registration, RFC 3519 tunnel data, RFC 3543 revocation
    and acknowledgement, with every new extension): decode(encode(m)) == m, byte for byte."""
    wire = message.encode()  # type: ignore[attr-defined]
    decoded = decode_message(wire)
    assert decoded == message
    assert type(decoded) is type(message)
    assert decoded.encode() == wire


@PROPERTY
@given(port_434_like)
def test_port_434_arbitrary_bytes(data: bytes) -> None:
    """decode_message of any bytes returns a message or raises DecodeError, and what decodes
    re-encodes to exactly those bytes."""
    check_port_434_bytes(data)


@FEW
@given(st.one_of(revocations, acknowledgements, tunnel_data))
def test_port_434_truncations(message: object) -> None:
    """Every proper prefix of a revocation, acknowledgement or tunnel data message decodes (and
    re-encodes to the prefix) or raises DecodeError; prefixes shorter than the fixed part raise."""
    wire = message.encode()  # type: ignore[attr-defined]
    fixed = getattr(message, "FIXED_LENGTH", TunnelData.HEADER_LENGTH)
    for n in range(len(wire)):
        decoded = check_port_434_bytes(wire[:n])
        if n < fixed:
            assert decoded is None


@PROPERTY
@given(st.one_of(revocations, acknowledgements, tunnel_data), mutations)
def test_port_434_mutations(message: object, changes: list[tuple[int, int]]) -> None:
    """Overwriting bytes of a valid encoding gives a message (re-encoding exactly) or DecodeError."""
    wire = message.encode()  # type: ignore[attr-defined]
    check_port_434_bytes(mutate(wire, changes[:1]))
    check_port_434_bytes(mutate(wire, changes))


unsigned_revocations = st.one_of(
    st.builds(RegistrationRevocation, u16.map(RevocationFlags), ipv4, ipv4, ipv4, u32,
              reg_extension_lists(allow_tail=False), u8),
    st.builds(RevocationAcknowledgement, u16.map(RevocationAckFlags), ipv4, u32,
              reg_extension_lists(allow_tail=False), u8),
)


@PROPERTY
@given(unsigned_revocations, st.sampled_from((32, 34)), u32, keys, keys, algorithms, st.integers(0, 10**6))
def test_revocation_authenticators(
    message: RegistrationRevocation | RevocationAcknowledgement,
    ext_type: int,
    spi: int,
    key: bytes,
    other_key: bytes,
    algorithm: auth.Algorithm,
    bit: int,
) -> None:
    """RFC 3543 3.3 and 3.4: a revocation or acknowledgement signed with append_authentication
    (Foreign-Home or Mobile-Home) verifies after decoding with the key and only the key, and
    its authenticator covers the fixed part, every prior extension and its own Type, Length and
    SPI (RFC 5944 3.5.1): flipping any bit before the authenticator breaks it."""
    signed = auth.append_authentication(message, ext_type, spi, key, algorithm)
    wire = signed.encode()
    decoded = decode_message(wire)
    assert decoded == signed
    assert isinstance(decoded, RegistrationRevocation | RevocationAcknowledgement)
    index = len(decoded.extensions) - 1
    assert auth.protected_bytes(decoded, index) == wire[:-auth.AUTHENTICATOR_LENGTH]
    assert auth.verify(decoded, index, key, algorithm)
    if not _equivalent_keys(algorithm, key, other_key):
        assert not auth.verify(decoded, index, other_key, algorithm)
    bit %= (len(wire) - auth.AUTHENTICATOR_LENGTH) * 8
    flipped = bytearray(wire)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    try:
        tampered = decode_message(bytes(flipped))
    except DecodeError:
        return
    for i, ext in enumerate(getattr(tampered, "extensions", ())):
        if isinstance(ext, AuthenticationExtension):
            assert not auth.verify(tampered, i, key, algorithm)  # type: ignore[arg-type]
