"""Known-answer authenticator vectors, cross-checked against OpenSSL (RFC 5944 sections 3.5.1, 5.1).

Every expected authenticator is computed by the ``openssl`` program over protected bytes that this
file assembles by hand from hex: the fixed part, every prior extension in its entirety, and the Type,
Length and SPI of the authentication extension itself. mipd's encoder is what is under test, so it
never produces the expected side.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from ipaddress import IPv4Address

import pytest

from mipd.core.wire import auth
from mipd.core.wire.auth import Algorithm
from mipd.core.wire.extensions import AuthenticationExtension, MobileNodeNAI
from mipd.core.wire.registration import (
    RegistrationReply,
    RegistrationRequest,
    RequestFlags,
    decode_registration,
)
from tests.support.tools import tool

pytestmark = pytest.mark.conformance

# The two vectors of /work/shared/rfc/WIRESHARK.md, verbatim.
WS_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
WS_SPI = 256
WS_RRQ_FIXED = "01200708c0a800f2c0a8001e0a0001f2e8fe6f8012345678"
WS_RRQ_EXT = "201400000100"
WS_RRQ_AUTH = "dffd1ac7ba9e84f6963785dda9ded818"
WS_RRP_FIXED = "03000708c0a800f2c0a8001ee8fe6f8012345678"
WS_RRP_EXT = "201400000100"
WS_RRP_AUTH = "a1609afe8d69f671e62e6622ab9e7461"

HOME = IPv4Address("192.168.0.242")
AGENT = IPv4Address("192.168.0.30")
COA = IPv4Address("10.0.1.242")
IDENT = 0xE8FE6F80_12345678

_HEX_DIGEST = re.compile(r"[0-9a-f]{32}")


def _digest_from(output: bytes) -> bytes:
    """The MD5-sized hex digest at the end of openssl dgst's output ("HMAC-MD5(stdin)= ..." or
    "MD5(stdin)= ...", depending on the version): its last whitespace-separated token."""
    token = output.decode("ascii").split()[-1].lower()
    assert _HEX_DIGEST.fullmatch(token), output
    return bytes.fromhex(token)


def openssl_hmac_md5(key: bytes, data: bytes) -> bytes:
    """HMAC-MD5 of ``data`` under ``key`` (binary, given as hex), computed by openssl."""
    result = subprocess.run(
        [tool("openssl"), "dgst", "-md5", "-mac", "HMAC", "-macopt", f"hexkey:{key.hex()}"],
        input=data,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return _digest_from(result.stdout)


def openssl_md5(data: bytes) -> bytes:
    """Plain MD5 of ``data``, computed by openssl."""
    result = subprocess.run(
        [tool("openssl"), "dgst", "-md5"], input=data, capture_output=True, check=True, timeout=30
    )
    return _digest_from(result.stdout)


def request(flags: int = 0x20, extensions: tuple[object, ...] = ()) -> RegistrationRequest:
    return RegistrationRequest(RequestFlags(flags), 1800, HOME, AGENT, COA, IDENT, extensions)  # type: ignore[arg-type]


def reply(code: int = 0, extensions: tuple[object, ...] = ()) -> RegistrationReply:
    return RegistrationReply(code, 1800, HOME, AGENT, IDENT, extensions)  # type: ignore[arg-type]


def ext_header(ext_type: int, spi: int) -> bytes:
    """Type, Length (4 + 16) and SPI of an authentication extension with an MD5 authenticator."""
    return bytes((ext_type, 20)) + spi.to_bytes(4, "big")


# --------------------------------------------------------------------------------------------
# The WIRESHARK.md vectors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "fixed", "ext", "authenticator"),
    [
        pytest.param(request(), WS_RRQ_FIXED, WS_RRQ_EXT, WS_RRQ_AUTH, id="RRQ"),
        pytest.param(reply(), WS_RRP_FIXED, WS_RRP_EXT, WS_RRP_AUTH, id="RRP"),
    ],
)
def test_wireshark_md_vector(
    message: RegistrationRequest | RegistrationReply, fixed: str, ext: str, authenticator: str
) -> None:
    """Our MN-HA authentication of the WIRESHARK.md messages gives exactly the published bytes,
    and the published authenticator is also openssl's HMAC-MD5 over fixed part + Type/Length/SPI."""
    protected = bytes.fromhex(fixed + ext)
    assert openssl_hmac_md5(WS_KEY, protected).hex() == authenticator
    assert message.encode().hex() == fixed
    signed = auth.append_authentication(message, 32, WS_SPI, WS_KEY, Algorithm.HMAC_MD5)
    wire = signed.encode()
    assert wire.hex() == fixed + ext + authenticator
    decoded = decode_registration(wire)
    assert decoded == signed
    assert decoded.mobile_home_auth == AuthenticationExtension(32, WS_SPI, bytes.fromhex(authenticator))
    assert auth.protected_bytes(decoded, 0) == protected
    assert auth.verify(decoded, 0, WS_KEY, Algorithm.HMAC_MD5)


def test_wireshark_md_vector_decoded_from_hex() -> None:
    """The published RRQ, decoded from hex alone, verifies under the published key."""
    wire = bytes.fromhex(WS_RRQ_FIXED + WS_RRQ_EXT + WS_RRQ_AUTH)
    message = decode_registration(wire)
    assert isinstance(message, RegistrationRequest)
    assert message.flags == RequestFlags.D
    assert (message.lifetime, message.home_address, message.home_agent, message.care_of_address) == (
        1800,
        HOME,
        AGENT,
        COA,
    )
    assert message.identification == IDENT
    assert auth.verify(message, 0, WS_KEY, Algorithm.HMAC_MD5)
    assert not auth.verify(message, 0, WS_KEY[::-1], Algorithm.HMAC_MD5)


# --------------------------------------------------------------------------------------------
# Further vectors
# --------------------------------------------------------------------------------------------

NAI = b"mn1@example.net"
NAI_EXT = bytes((131, len(NAI))) + NAI
HA_KEY = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
FA_KEY = bytes.fromhex("ffffffffffffffffffffffffffffffff00")  # 136 bits, arbitrary binary
FAHA_KEY = bytes(range(20))


def test_mn_ha_covers_prior_nai() -> None:
    """An MN-HA after an NAI extension covers the fixed part, the whole NAI extension, and its
    own Type/Length/SPI (openssl over the hand-assembled bytes)."""
    protected = bytes.fromhex(WS_RRQ_FIXED) + NAI_EXT + ext_header(32, 0x1234)
    expected = openssl_hmac_md5(HA_KEY, protected)
    signed = auth.append_authentication(
        request(extensions=(MobileNodeNAI(NAI),)), 32, 0x1234, HA_KEY, Algorithm.HMAC_MD5
    )
    wire = signed.encode()
    assert wire == protected + expected
    decoded = decode_registration(wire)
    assert auth.verify(decoded, 1, HA_KEY, Algorithm.HMAC_MD5)
    # Without the NAI the authenticator differs: the NAI really is covered.
    assert openssl_hmac_md5(HA_KEY, bytes.fromhex(WS_RRQ_FIXED) + ext_header(32, 0x1234)) != expected


def test_mn_fa_covers_whole_mn_ha() -> None:
    """An MN-FA after the MN-HA covers the whole MN-HA extension, its authenticator included."""
    mn_ha_protected = bytes.fromhex(WS_RRQ_FIXED) + NAI_EXT + ext_header(32, 0x1234)
    mn_ha = ext_header(32, 0x1234) + openssl_hmac_md5(HA_KEY, mn_ha_protected)
    mn_fa_protected = bytes.fromhex(WS_RRQ_FIXED) + NAI_EXT + mn_ha + ext_header(33, 0xFFFF_FFFF)
    mn_fa_value = openssl_hmac_md5(FA_KEY, mn_fa_protected)

    with_ha = auth.append_authentication(
        request(extensions=(MobileNodeNAI(NAI),)), 32, 0x1234, HA_KEY, Algorithm.HMAC_MD5
    )
    both = auth.append_authentication(with_ha, 33, 0xFFFF_FFFF, FA_KEY, Algorithm.HMAC_MD5)
    wire = both.encode()
    assert wire == mn_fa_protected + mn_fa_value
    decoded = decode_registration(wire)
    assert auth.protected_bytes(decoded, 2) == mn_fa_protected
    assert auth.verify(decoded, 1, HA_KEY, Algorithm.HMAC_MD5)
    assert auth.verify(decoded, 2, FA_KEY, Algorithm.HMAC_MD5)
    assert not auth.verify(decoded, 2, HA_KEY, Algorithm.HMAC_MD5)


def test_fa_ha_on_reply() -> None:
    """An FA-HA on a reply (after the MN-HA, code 0 and a denial code) covers the fixed part and
    the whole MN-HA extension."""
    for code in (0, 133):
        fixed = bytes((3, code)) + bytes.fromhex(WS_RRP_FIXED)[2:]
        mn_ha = ext_header(32, 256) + openssl_hmac_md5(HA_KEY, fixed + ext_header(32, 256))
        fa_ha_protected = fixed + mn_ha + ext_header(34, 0x8000_0001)
        expected = fa_ha_protected + openssl_hmac_md5(FAHA_KEY, fa_ha_protected)

        with_ha = auth.append_authentication(reply(code), 32, 256, HA_KEY, Algorithm.HMAC_MD5)
        both = auth.append_authentication(with_ha, 34, 0x8000_0001, FAHA_KEY, Algorithm.HMAC_MD5)
        assert both.encode() == expected
        decoded = decode_registration(expected)
        assert isinstance(decoded, RegistrationReply)
        assert decoded.code == code
        assert auth.verify(decoded, 1, FAHA_KEY, Algorithm.HMAC_MD5)
        assert auth.verify(decoded, 0, HA_KEY, Algorithm.HMAC_MD5)


@pytest.mark.parametrize("key_length", [64, 65, 100, 200])
def test_long_key_is_hashed(key_length: int) -> None:
    """HMAC keys longer than the 64-byte MD5 block are first hashed (RFC 2104 section 2); a
    64-byte key is used as is. openssl agrees, and a key over 64 bytes gives the same HMAC as
    its MD5 digest used as the key."""
    key = bytes((i * 7 + 3) % 256 for i in range(key_length))
    protected = bytes.fromhex(WS_RRQ_FIXED + WS_RRQ_EXT)
    expected = openssl_hmac_md5(key, protected)
    signed = auth.append_authentication(request(), 32, WS_SPI, key, Algorithm.HMAC_MD5)
    assert signed.encode() == protected + expected
    assert auth.verify(decode_registration(signed.encode()), 0, key, Algorithm.HMAC_MD5)
    hashed_key_hmac = openssl_hmac_md5(hashlib.md5(key).digest(), protected)
    assert (hashed_key_hmac == expected) is (key_length > 64)


@pytest.mark.parametrize(
    "key", [WS_KEY, HA_KEY, FA_KEY, bytes(range(100))], ids=["ws-key", "ha-key", "17-byte", "100-byte"]
)
def test_keyed_md5_prefix_suffix(key: bytes) -> None:
    """keyed-md5 is MD5(key || protected bytes || key) (RFC 2002 prefix+suffix), as computed by
    plain ``openssl dgst -md5``, and differs from HMAC-MD5."""
    protected = bytes.fromhex(WS_RRQ_FIXED) + NAI_EXT + ext_header(32, 3)
    expected = openssl_md5(key + protected + key)
    assert auth.compute(Algorithm.KEYED_MD5, key, protected) == expected
    signed = auth.append_authentication(
        request(extensions=(MobileNodeNAI(NAI),)), 32, 3, key, Algorithm.KEYED_MD5
    )
    wire = signed.encode()
    assert wire == protected + expected
    decoded = decode_registration(wire)
    assert auth.verify(decoded, 1, key, Algorithm.KEYED_MD5)
    assert not auth.verify(decoded, 1, key, Algorithm.HMAC_MD5)
    assert openssl_hmac_md5(key, protected) != expected


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_verify_rejects_tampering(algorithm: Algorithm) -> None:
    """verify accepts the untouched message and rejects one with any single bit of the
    authenticator flipped, a zeroed authenticator, a truncated one, and a changed fixed part."""
    wire = bytes.fromhex(WS_RRQ_FIXED + WS_RRQ_EXT) + auth.compute(
        algorithm, WS_KEY, bytes.fromhex(WS_RRQ_FIXED + WS_RRQ_EXT)
    )
    good = decode_registration(wire)
    assert auth.verify(good, 0, WS_KEY, algorithm)
    for bit in range(128):
        tampered = bytearray(wire)
        tampered[24 + 6 + bit // 8] ^= 0x80 >> (bit % 8)
        assert not auth.verify(decode_registration(bytes(tampered)), 0, WS_KEY, algorithm), bit
    zeroed = decode_registration(wire[:-16] + bytes(16))
    assert not auth.verify(zeroed, 0, WS_KEY, algorithm)
    # A 15-byte authenticator (Length 19) is a different extension header and a short value.
    short = decode_registration(wire[:24] + b"\x20\x13" + wire[26:-1])
    assert not auth.verify(short, 0, WS_KEY, algorithm)
    # Lifetime 1800 -> 1801: the authenticator no longer matches the fixed part.
    changed = decode_registration(wire[:3] + b"\x09" + wire[4:])
    assert changed.lifetime == 1801
    assert not auth.verify(changed, 0, WS_KEY, algorithm)
