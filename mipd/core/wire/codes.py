"""Registration Reply codes, named as the RFCs name them.

RFC 5944 section 3.4 defines the success codes and the codes for denials by the foreign agent
(64-127 and 194) and by the home agent (128-192); RFC 3024 (reverse tunneling) adds 74-76, 79
and 137-139; RFC 2794 (NAI) adds 96-99; RFC 3519 (NAT traversal) adds 142; RFC 5177 (mobile
networks) adds 147 and 148. Section 6.4 allocates the ranges.
"""

from __future__ import annotations

from enum import IntEnum


class ReplyCode(IntEnum):
    """Code field of a Registration Reply (RFC 5944 section 3.4; RFC 3024 sections 3.3 and 3.4;
    RFC 2794 section 5; RFC 3519 section 3.5; RFC 5177 section 11)."""

    # Successful registration codes (RFC 5944 section 3.4).
    ACCEPTED = 0
    ACCEPTED_SIMULTANEOUS_BINDINGS_UNSUPPORTED = 1

    # Registration denied by the foreign agent (RFC 5944 section 3.4).
    FA_REASON_UNSPECIFIED = 64
    FA_ADMINISTRATIVELY_PROHIBITED = 65
    FA_INSUFFICIENT_RESOURCES = 66
    FA_MOBILE_NODE_FAILED_AUTHENTICATION = 67
    FA_HOME_AGENT_FAILED_AUTHENTICATION = 68
    FA_REQUESTED_LIFETIME_TOO_LONG = 69
    FA_POORLY_FORMED_REQUEST = 70
    FA_POORLY_FORMED_REPLY = 71
    FA_REQUESTED_ENCAPSULATION_UNAVAILABLE = 72
    FA_RESERVED_AND_UNAVAILABLE = 73
    # RFC 3024 (reverse tunneling), foreign agent codes.
    FA_REQUESTED_REVERSE_TUNNEL_UNAVAILABLE = 74
    FA_REVERSE_TUNNEL_IS_MANDATORY_AND_T_BIT_NOT_SET = 75
    FA_MOBILE_NODE_TOO_DISTANT = 76
    FA_INVALID_CARE_OF_ADDRESS = 77
    FA_REGISTRATION_TIMEOUT = 78
    FA_DELIVERY_STYLE_NOT_SUPPORTED = 79  # RFC 3024
    FA_HOME_NETWORK_UNREACHABLE = 80
    FA_HOME_AGENT_HOST_UNREACHABLE = 81
    FA_HOME_AGENT_PORT_UNREACHABLE = 82
    FA_HOME_AGENT_UNREACHABLE = 88
    # RFC 2794 section 5 (NAI), foreign agent codes, under the RFC's own names.
    FA_NONZERO_HOMEADDR_REQD = 96
    FA_MISSING_NAI = 97
    FA_MISSING_HOME_AGENT = 98
    FA_MISSING_HOMEADDR = 99
    FA_INVALID_HOME_AGENT_ADDRESS = 194  # new in RFC 5944, listed with the FA codes

    # Registration denied by the home agent (RFC 5944 section 3.4).
    HA_REASON_UNSPECIFIED = 128
    HA_ADMINISTRATIVELY_PROHIBITED = 129
    HA_INSUFFICIENT_RESOURCES = 130
    HA_MOBILE_NODE_FAILED_AUTHENTICATION = 131
    HA_FOREIGN_AGENT_FAILED_AUTHENTICATION = 132
    HA_REGISTRATION_IDENTIFICATION_MISMATCH = 133
    HA_POORLY_FORMED_REQUEST = 134
    HA_TOO_MANY_SIMULTANEOUS_MOBILITY_BINDINGS = 135
    HA_UNKNOWN_HOME_AGENT_ADDRESS = 136
    # RFC 3024 (reverse tunneling), home agent codes.
    HA_REQUESTED_REVERSE_TUNNEL_UNAVAILABLE = 137
    HA_REVERSE_TUNNEL_IS_MANDATORY_AND_T_BIT_NOT_SET = 138
    HA_REQUESTED_ENCAPSULATION_UNAVAILABLE = 139
    # RFC 3519 section 3.5 (NAT traversal), ERROR_HA_UDP_ENCAP_UNAVAIL, "Requested UDP tunnel
    # encapsulation unavailable"; section 8 gives its number, 142.
    HA_UDP_ENCAP_UNAVAIL = 142
    # RFC 5177 section 11, Table 3 (mobile networks).
    HA_MOBNET_ERROR = 147  # "Mobile Network Prefix operation error"
    HA_MOBNET_DISALLOWED = 148  # "Mobile Router operation is not permitted"


def is_accepted(code: int) -> bool:
    """Codes 0-8 report success (RFC 5944 section 6.4)."""
    return 0 <= code <= 8


def denied_by_foreign_agent(code: int) -> bool:
    """64-127 are foreign agent denials (section 6.4); 194 is one too (section 3.4)."""
    return 64 <= code <= 127 or code == ReplyCode.FA_INVALID_HOME_AGENT_ADDRESS


def denied_by_home_agent(code: int) -> bool:
    """128-192 are home agent denials (RFC 5944 section 6.4)."""
    return 128 <= code <= 192
