"""Extension framing shared by both Mobile IP extension number spaces.

RFC 5944 section 1.8 defines one rule for the extensions of registration messages and for those of
ICMP Router Discovery messages (agent advertisements). It lives here, once, in
:data:`UNRECOGNISED_EXTENSION_RULES`; both decoders consult it through :func:`disposition`.

Extensions use the simple Type-Length-Data form (section 1.9): one byte Type, one byte Length not
counting Type and Length, then Length bytes. An extension type we do not recognise is kept as
raw bytes so that a message re-encodes byte for byte:

- a skippable one (128-255) as :class:`UnknownExtension`, its Length used to step over it;
- a non-skippable one (0-127) as :class:`OpaqueTail`, holding it and everything after it. Its
  framing cannot be trusted (it may use the long format of section 1.10), and the whole message
  is to be discarded anyway, so nothing after it is parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mipd.core.wire.reader import Reader


class Disposition(Enum):
    """What a receiver does with an extension type it does not recognise."""

    DISCARD_MESSAGE = "discard-message"
    SKIP_EXTENSION = "skip-extension"


# RFC 5944 section 1.8: "If an Extension numbered in either of these ranges [0-127] is
# encountered but not recognized, the message containing that Extension MUST be silently
# discarded" and for 128-255 "that particular Extension is ignored, but the rest of the
# Extensions and message data MUST still be processed". Section 1.7: "silently discard"
# means no error to the sender; the event SHOULD be logged and counted.
UNRECOGNISED_EXTENSION_RULES: tuple[tuple[range, Disposition], ...] = (
    (range(0, 128), Disposition.DISCARD_MESSAGE),
    (range(128, 256), Disposition.SKIP_EXTENSION),
)


def disposition(ext_type: int) -> Disposition:
    """The RFC 5944 section 1.8 rule for an unrecognised extension of type ``ext_type``."""
    for types, rule in UNRECOGNISED_EXTENSION_RULES:
        if ext_type in types:
            return rule
    raise ValueError(f"extension type {ext_type} is not a byte")


@dataclass(frozen=True, slots=True)
class UnknownExtension:
    """A skippable (128-255) extension we do not interpret, kept as its Data bytes."""

    type: int
    data: bytes

    def encode(self) -> bytes:
        return bytes((self.type, len(self.data))) + self.data


@dataclass(frozen=True, slots=True)
class OpaqueTail:
    """An unrecognised non-skippable extension (0-127) and every byte after it, uninterpreted.

    ``data`` starts with the extension's Type byte. A message that carries one MUST be silently
    discarded by its receiver (RFC 5944 section 1.8).
    """

    data: bytes

    @property
    def type(self) -> int:
        return self.data[0]

    def encode(self) -> bytes:
        return self.data


ExtensionParser = Callable[[bytes, int], Any]
"""Builds an extension object from its Data bytes; the int is the Data's offset, for errors."""


def decode_extensions(
    reader: Reader,
    parsers: Mapping[int, ExtensionParser],
    one_byte: Mapping[int, Any] | None = None,
) -> tuple[Any, ...]:
    """Decode the extensions that fill the rest of ``reader``.

    ``parsers`` maps each recognised TLV type to its parser; ``one_byte`` maps types encoded as a
    lone Type byte (the One-byte Padding extension) to the object that stands for them.
    """
    out: list[Any] = []
    while reader.remaining:
        ext_type = reader.u8("extension type")
        if one_byte is not None and ext_type in one_byte:
            out.append(one_byte[ext_type])
            continue
        parser = parsers.get(ext_type)
        if parser is None and disposition(ext_type) is Disposition.DISCARD_MESSAGE:
            out.append(OpaqueTail(bytes((ext_type,)) + reader.rest()))
            break
        length = reader.u8("extension length")
        data_offset = reader.offset
        data = reader.take(length, f"extension {ext_type} data")
        if parser is None:
            out.append(UnknownExtension(ext_type, data))
        else:
            out.append(parser(data, data_offset))
    return tuple(out)
