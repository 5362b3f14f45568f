"""A bounded cursor over received bytes (in the manner of dnspython's ``wirebase``).

Reads never run past the end they were given: a short buffer raises :class:`DecodeError`
naming what was wanted and where, never ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from mipd.core.wire.errors import DecodeError


class Reader:
    """Reads big-endian fields from ``data[start:end]``, advancing as it goes."""

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def offset(self) -> int:
        """Position of the next byte to read, counted from the start of the whole buffer."""
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _advance(self, n: int, what: str) -> int:
        pos = self._pos
        if n > self._end - pos:
            raise DecodeError(f"truncated {what}: need {n} bytes, {self._end - pos} left", pos)
        self._pos = pos + n
        return pos

    def u8(self, what: str = "field") -> int:
        return self._data[self._advance(1, what)]

    def u16(self, what: str = "field") -> int:
        pos = self._advance(2, what)
        return int.from_bytes(self._data[pos : pos + 2], "big")

    def u32(self, what: str = "field") -> int:
        pos = self._advance(4, what)
        return int.from_bytes(self._data[pos : pos + 4], "big")

    def i32(self, what: str = "field") -> int:
        pos = self._advance(4, what)
        return int.from_bytes(self._data[pos : pos + 4], "big", signed=True)

    def u64(self, what: str = "field") -> int:
        pos = self._advance(8, what)
        return int.from_bytes(self._data[pos : pos + 8], "big")

    def ipv4(self, what: str = "address") -> IPv4Address:
        return IPv4Address(self.u32(what))

    def take(self, n: int, what: str = "field") -> bytes:
        pos = self._advance(n, what)
        return bytes(self._data[pos : pos + n])

    def rest(self) -> bytes:
        """All remaining bytes; the reader is then exhausted."""
        return self.take(self.remaining)

    def restrict(self, n: int, what: str = "field") -> Reader:
        """A reader over the next ``n`` bytes only; this reader moves past them."""
        pos = self._advance(n, what)
        return Reader(self._data, pos, pos + n)
