"""What the demo runs *inside* a namespace (``python -m mipd.demo.agents ROLE ...``); one line per report.

- ``ping TARGET INTERVAL_MS``: an ICMP echo every interval; ``S seq time`` when sent, ``R seq time`` on a reply
  from TARGET, ``W seq SOURCE time`` on a reply to one of ours from another address (a rewritten source: not
  an answer); SIGUSR1 stops the sending (replies are still reported).
- ``serve ADDRESS PORT``: accepts one TCP connection; ``A PEER time`` on accept (the peer's address as this
  end sees it), ``D bytes time`` as data comes (at most every 50 ms), ``E reason time`` when it ends.
- ``send ADDRESS PORT INTERVAL_MS``: connects and sends a counter every interval; ``C time`` when connected,
  ``E reason time`` if the connection fails.

Times are wall-clock seconds (``time.time()``), comparable with the demo's own. SIGTERM stops each quietly.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import struct
import sys
import time
from types import FrameType

_sending = True


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _on_usr1(signum: int, frame: FrameType | None) -> None:
    global _sending  # noqa: PLW0603 - the one flag a signal handler sets
    _sending = False


def _say(*words: object) -> None:
    sys.stdout.write(" ".join(str(w) for w in words) + f" {time.time():.6f}\n")
    sys.stdout.flush()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(target: str, interval_ms: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident, seq, interval = os.getpid() & 0xFFFF, 0, interval_ms / 1000
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send and not _sending:
            next_send = now + 3600
        elif now >= next_send:
            seq += 1
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
            payload = b"mipd-demo".ljust(32, b".")
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq & 0xFFFF) + payload
            with contextlib.suppress(OSError):  # no route for a moment: the echo is lost all the same
                sock.sendto(packet, (target, 0))
            _say("S", seq)
            next_send += interval
            continue
        try:
            ready, _, _ = select.select([sock], [], [], next_send - now)
        except InterruptedError:
            continue
        if ready:
            data, (source, _) = sock.recvfrom(2048)
            start = (data[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[start:start + 8])
            if kind == 0 and rid == ident:
                if source == target:
                    _say("R", rseq)
                else:
                    _say("W", rseq, source)


def serve(address: str, port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(1)
    _say("L")
    conn, (peer, _) = listener.accept()
    _say("A", peer)
    total, last = 0, 0.0
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                _say("E", "closed")
                return
            total += len(data)
            if time.monotonic() - last >= 0.05:
                last = time.monotonic()
                _say("D", total)
    except OSError as error:
        _say("E", type(error).__name__)


def send(address: str, port: int, interval_ms: float) -> None:
    try:
        conn = socket.create_connection((address, port), timeout=10)
        conn.settimeout(None)
        _say("C")
        counter = 0
        while True:
            counter += 1
            conn.sendall(f"{counter:012d}\n".encode())
            time.sleep(interval_ms / 1000)
    except OSError as error:
        _say("E", type(error).__name__)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    signal.signal(signal.SIGUSR1, _on_usr1)
    role, args = argv[0], argv[1:]
    if role == "ping":
        ping(args[0], float(args[1]))
    elif role == "serve":
        serve(args[0], int(args[1]))
    elif role == "send":
        send(args[0], int(args[1]), float(args[2]))
    else:
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
