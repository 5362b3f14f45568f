"""The one exception the wire codec lets escape.

Every decoder in :mod:`mipd.core` either returns a message or raises :class:`DecodeError`,
whatever bytes it is given, as dnspython's wire parser turns every malformed input into one
``FormError``.
Any other exception out of a decoder is a bug.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """The bytes are not a well-formed message; ``reason`` says why in a few words."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(reason if offset is None else f"{reason} (at byte {offset})")
