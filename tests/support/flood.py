"""A hostile peer for robustness tests: floods UDP 434 with bad registration requests (run inside a namespace).

    python -m tests.support.flood TARGET SECONDS RATE MIX [REPLAY_HEX]

``RATE`` is datagrams per second (0: as fast as the loop goes). ``MIX`` is a comma-separated list of kinds,
sent in turn:

- ``badauth``: a well-formed request for a configured node (SPI 256) whose authenticator is random: the home
  agent checks it and answers 131;
- ``nospi``: signed with an SPI no association has: silently discarded (RFC 5944 3.8.2.1);
- ``short``: a request cut off at a random length below its fixed part: malformed;
- ``huge``: a 1400-byte datagram, a valid fixed part followed by an unknown non-skippable extension;
- ``replay``: ``REPLAY_HEX``, one correctly signed request sent again and again (answered 133);
- ``spoofed``: a ``badauth`` request from a random source address of 198.18.0.0/16 (a raw socket
  writes the IP and UDP headers), so that no source fails often enough to run out of its budget.

Requests are built with struct and random bytes, nothing of mipd's. At the end one JSON line on stdout:
``{"sent": N, "replies": R, "seconds": S, "by_kind": {...}}`` (R: answers received on the sending socket).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

HOME, HA = "10.1.0.10", "10.1.0.1"


def _fixed(ident: int) -> bytes:
    return struct.pack("!BBH4s4s4sQ", 1, 0x20, 600, socket.inet_aton(HOME), socket.inet_aton(HA),
                       socket.inet_aton("10.2.0.50"), ident)


def datagram(kind: str, counter: int, replay: bytes) -> bytes:
    fixed = _fixed(counter)
    if kind == "badauth":
        return fixed + struct.pack("!BBI", 32, 20, 256) + os.urandom(16)
    if kind == "nospi":
        return fixed + struct.pack("!BBI", 32, 20, 0x7FFF0000 + counter % 1000) + os.urandom(16)
    if kind == "short":
        return fixed[: counter % 24]
    if kind == "huge":
        return fixed + bytes([100, 255]) + os.urandom(255) + bytes(1400 - 24 - 257)
    if kind == "replay":
        return replay
    raise ValueError(kind)


SPOOFED_NETWORK = 0xC6120000  # 198.18.0.0/16 (RFC 2544's benchmarking range)


def spoofed(target: bytes, counter: int) -> bytes:
    """A ``badauth`` request in IPv4 and UDP headers from a random 198.18.0.0/16 source (the kernel
    fills in the IP checksum; the UDP checksum is left 0, none)."""
    payload = datagram("badauth", counter, b"")
    source = struct.pack("!I", SPOOFED_NETWORK | int.from_bytes(os.urandom(2), "big"))
    udp = struct.pack("!HHHH", 40_000 + counter % 20_000, 434, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(payload), counter & 0xFFFF, 0, 64, 17, 0,
                     source, target)
    return ip + udp + payload


def main(argv: list[str]) -> int:
    target, seconds, rate, kinds = argv[0], float(argv[1]), float(argv[2]), argv[3].split(",")
    replay = bytes.fromhex(argv[4]) if len(argv) > 4 else b""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) if "spoofed" in kinds else None
    if raw is not None:
        raw.setblocking(False)
    target_bytes = socket.inet_aton(target)
    sent, replies, counter = 0, 0, 0
    by_kind = dict.fromkeys(kinds, 0)
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        due = int((now - start) * rate) + 1 if rate > 0 else sent + 64
        while sent < due:
            kind = kinds[counter % len(kinds)]
            counter += 1
            try:
                if kind == "spoofed" and raw is not None:
                    raw.sendto(spoofed(target_bytes, counter), (target, 0))
                else:
                    sock.sendto(datagram(kind, counter, replay), (target, 434))
            except BlockingIOError:
                break
            sent += 1
            by_kind[kind] += 1
        while True:
            try:
                sock.recv(2048)
            except BlockingIOError:
                break
            replies += 1
        if rate > 0 and sent >= due:
            time.sleep(0.0005)
    deadline = time.monotonic() + 0.5  # late answers
    while time.monotonic() < deadline:
        try:
            sock.recv(2048)
            replies += 1
        except BlockingIOError:
            time.sleep(0.01)
    print(json.dumps({"sent": sent, "replies": replies, "seconds": seconds, "by_kind": by_kind}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
