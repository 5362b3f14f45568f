"""Every message of UDP port 434 by its first byte, the Type (RFC 5944 1.8, RFC 3519 3.3, RFC 3543 3).

:func:`decode_message` recognises Registration Requests (1) and Replies (3), MIP Tunnel Data (4,
RFC 3519), Registration Revocations (7) and Revocation Acknowledgements (15, RFC 3543), so that a
runtime can route each. It is separate from :func:`~mipd.core.wire.registration.decode_registration`,
which the engines call and which keeps raising DecodeError for every type but 1 and 3: an agent
that does not implement RFC 3519 or RFC 3543 treats types 4, 7 and 15 as it treats any unknown
type, and that is what it does.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from mipd.core.wire.errors import DecodeError
from mipd.core.wire.nat import TunnelData, decode_tunnel_data
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, decode_reply, decode_request
from mipd.core.wire.revocation import (
    RegistrationRevocation,
    RevocationAcknowledgement,
    decode_revocation,
    decode_revocation_acknowledgement,
)


class MessageType(IntEnum):
    """Mobile IP message types of UDP port 434, named as their RFCs name them."""

    REGISTRATION_REQUEST = 1  # RFC 5944 section 3.3
    REGISTRATION_REPLY = 3  # RFC 5944 section 3.4
    MIP_TUNNEL_DATA = 4  # RFC 3519 section 3.3
    REGISTRATION_REVOCATION = 7  # RFC 3543 section 3.3
    REGISTRATION_REVOCATION_ACKNOWLEDGEMENT = 15  # RFC 3543 section 3.4


Message = RegistrationRequest | RegistrationReply | TunnelData | RegistrationRevocation | RevocationAcknowledgement

DECODERS: dict[int, Callable[[bytes], Message]] = {
    MessageType.REGISTRATION_REQUEST: decode_request,
    MessageType.REGISTRATION_REPLY: decode_reply,
    MessageType.MIP_TUNNEL_DATA: decode_tunnel_data,
    MessageType.REGISTRATION_REVOCATION: decode_revocation,
    MessageType.REGISTRATION_REVOCATION_ACKNOWLEDGEMENT: decode_revocation_acknowledgement,
}


def decode_message(data: bytes) -> Message:
    """Decode a UDP payload to or from port 434, whichever of the five message types it holds."""
    if not data:
        raise DecodeError("empty datagram", 0)
    decoder = DECODERS.get(data[0])
    if decoder is None:
        raise DecodeError(f"unknown message type {data[0]}", 0)
    return decoder(data)
