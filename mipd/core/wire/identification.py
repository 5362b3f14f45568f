"""The 64-bit Identification field and replay protection (RFC 5944 sections 5.4 and 5.7).

Timestamps (5.7.1) are 64-bit NTP values: seconds since 1900 in the high 32 bits, a binary
fraction in the low 32. Nonces (5.7.2) put the home agent's nonce in the high 32 bits and the
mobile node's in the low 32. Either way "the low-order 32 bits of the Identification field in
the Registration Request MUST be copied unchanged into the Registration Reply" (5.7), which is
how a node matches a reply to its request.

Time is always passed in as Unix seconds (a float), so nothing here reads a clock.
"""

from __future__ import annotations

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
LOW32 = 0xFFFF_FFFF
DEFAULT_REPLAY_WINDOW = 7.0  # 5.7.1: "a default value of 7 seconds MAY be used"
_CLOCK_FRACTION_BITS = 20  # a float Unix time carries about microseconds: 20 fraction bits


def low32(identification: int) -> int:
    return identification & LOW32


def high32(identification: int) -> int:
    return (identification >> 32) & LOW32


def timestamp(unix_time: float, random_bits: int) -> int:
    """An NTP-format Identification for ``unix_time``.

    5.7.1: "the low-order bits ... that are not available from the time source SHOULD be
    generated from a good source of randomness": the fraction keeps the clock's top 20 bits
    and takes the low 12 from ``random_bits``.
    """
    seconds = int(unix_time // 1)
    fraction = int((unix_time - seconds) * (1 << 32)) & LOW32
    noise_mask = (1 << (32 - _CLOCK_FRACTION_BITS)) - 1
    fraction = (fraction & ~noise_mask) | (random_bits & noise_mask)
    return (((seconds + NTP_UNIX_OFFSET) & LOW32) << 32) | fraction


def _unix_seconds(ntp_seconds: int) -> int:
    """NTP seconds to Unix seconds across the 2036 rollover: as RFC 4330 section 3 does, a value
    with the top bit clear is taken to be in era 1 (from 2036-02-07), so 1968-2104 maps right."""
    if ntp_seconds < 0x8000_0000:
        ntp_seconds += 1 << 32
    return ntp_seconds - NTP_UNIX_OFFSET


def to_unix(identification: int) -> float:
    """The Unix time a timestamp Identification stands for."""
    return _unix_seconds(high32(identification)) + low32(identification) / (1 << 32)


def timestamp_acceptable(
    identification: int, now: float, window: float, last_accepted: int | None
) -> bool:
    """5.7.1: valid if "close enough to the home agent's time-of-day clock" and "greater than
    all previously accepted timestamps for the requesting mobile node"."""
    if abs(to_unix(identification) - now) > window:
        return False
    return last_accepted is None or identification > last_accepted


def timestamp_mismatch_reply(request_identification: int, now: float) -> int:
    """Reply Identification for code 133 with timestamps (5.7.1): the request's low 32 bits,
    and high 32 bits from the home agent's time of day, so the node can resynchronise."""
    return ((int(now // 1) + NTP_UNIX_OFFSET) & LOW32) << 32 | low32(request_identification)


def clock_offset(reply_identification: int, now: float) -> float:
    """What a mobile node adds to its clock after a 133 (3.6.2.3): the home agent's seconds
    (high 32 bits of the reply) minus its own."""
    return float(_unix_seconds(high32(reply_identification))) - now


def nonce_reply(request_identification: int, home_agent_nonce: int) -> int:
    """Reply Identification with nonces (5.7.2): a new home agent nonce in the high 32 bits,
    the request's low 32 bits copied. Every reply carries a fresh nonce, also a 133."""
    return (home_agent_nonce & LOW32) << 32 | low32(request_identification)


def nonce_request(home_agent_nonce: int, mobile_node_nonce: int) -> int:
    """A mobile node's next Identification with nonces: the nonce the home agent last sent it
    in the high 32 bits, its own new nonce in the low 32 (5.7.2)."""
    return (home_agent_nonce & LOW32) << 32 | (mobile_node_nonce & LOW32)


def nonce_acceptable(request_identification: int, expected_home_agent_nonce: int | None) -> bool:
    """Whether a request echoes the nonce the home agent last gave this node (5.7.2)."""
    return expected_home_agent_nonce is not None and high32(request_identification) == (
        expected_home_agent_nonce & LOW32
    )


def reply_matches(request_identification: int, reply_identification: int) -> bool:
    """Sections 3.6.2.1 and 3.7.3.1: a reply answers a request iff their low 32 bits agree."""
    return low32(request_identification) == low32(reply_identification)
