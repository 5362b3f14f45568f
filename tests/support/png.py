"""Reading a PNG file's chunks with the standard library only: the signature, every chunk's CRC, the
IHDR's size and the tEXt chunks (PNG specification, 2nd edition, sections 5 and 11)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Png:
    width: int = 0
    height: int = 0
    chunks: list[bytes] = field(default_factory=list)  # chunk types in order
    text: dict[str, str] = field(default_factory=dict)


def read_png(path: Path) -> Png:
    """The file's IHDR size, chunk types and tEXt entries; ValueError if it is not a well-formed PNG."""
    data = path.read_bytes()
    if not data.startswith(SIGNATURE):
        raise ValueError("no PNG signature")
    png, offset = Png(), len(SIGNATURE)
    while offset < len(data):
        if offset + 12 > len(data):
            raise ValueError(f"truncated chunk at byte {offset}")
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        if len(body) != length or zlib.crc32(kind + body) != crc:
            raise ValueError(f"chunk {kind!r} at byte {offset}: bad length or CRC")
        png.chunks.append(kind)
        if kind == b"IHDR":
            png.width, png.height = struct.unpack(">II", body[:8])
        elif kind == b"tEXt":
            keyword, _, text = body.partition(b"\0")
            png.text[keyword.decode("latin-1")] = text.decode("latin-1")
        offset += 12 + length
    if not png.chunks or png.chunks[0] != b"IHDR" or png.chunks[-1] != b"IEND" or b"IDAT" not in png.chunks:
        raise ValueError(f"chunks out of order: {png.chunks}")
    return png
