"""How the agents' engines refuse: a denial answered with its reply code, or a silent discard
counted by its reason; and the opening every received registration message goes through.
"""

from __future__ import annotations

from typing import TypeVar

from mipd.core.names import DiscardReason
from mipd.core.wire.codes import ReplyCode
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.extensions import RegistrationExtension
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, decode_registration

M = TypeVar("M", RegistrationRequest, RegistrationReply)


class Denied(Exception):
    """A check failed: the reply code the RFC gives for it (as exabgp's ``Notify(code, subcode)``
    carries its RFC code), and the reason for the journal."""

    def __init__(self, code: ReplyCode, reason: str, extensions: tuple[RegistrationExtension, ...] = ()) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.extensions = extensions  # for the reply, before its MN-HA (RFC 5177 4.2: 147's acknowledgements)


class Discard(Exception):
    """A datagram to discard silently: counted and journalled (packet.dropped) under ``reason``."""

    def __init__(self, reason: DiscardReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def open_registration(payload: bytes, kind: type[M], otherwise: str) -> M:
    """The message in ``payload`` if it is a ``kind`` without an unrecognised extension in 0-127
    (RFC 5944 1.8: discarded); else Discard: malformed, the other kind (``otherwise`` says what
    arrived where), or unknown-extension."""
    try:
        message = decode_registration(payload)
    except DecodeError as exc:
        raise Discard(DiscardReason.MALFORMED, exc.reason) from exc
    if not isinstance(message, kind):
        if kind is RegistrationRequest:
            raise Discard(DiscardReason.NOT_A_REQUEST, otherwise)
        raise Discard(DiscardReason.NOT_A_REPLY, otherwise)
    if (unknown := message.unrecognised_nonskippable) is not None:
        raise Discard(DiscardReason.UNKNOWN_EXTENSION, f"unrecognised extension type {unknown}")
    return message
