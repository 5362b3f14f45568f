"""The Python floor: the tightest plain-Python loop that does what the C floor does.

Receive a Registration Request, find the key by the SPI of its Mobile-Home Authentication
Extension, verify HMAC-MD5 over the request and the extension's type, length and SPI, answer a
Registration Reply with code 0 (the request's lifetime and Identification) and its own
authenticator. No bindings, no replay state, no journal, no event loop: one blocking socket.

    python bench/pyfloor.py ADDRESS PORT NODES_FILE

Standalone on purpose (standard library only): it measures the interpreter, not mipd.
"""

from __future__ import annotations

import hmac
import socket
import sys


def load_keys(path: str) -> dict[int, bytes]:
    keys: dict[int, bytes] = {}
    with open(path, encoding="ascii") as lines:
        for line in lines:
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 3:
                keys[int(fields[1])] = bytes.fromhex(fields[2])
    return keys


def serve(address: str, port: int, keys: dict[int, bytes]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    receive, send, digest, equal = sock.recvfrom, sock.sendto, hmac.digest, hmac.compare_digest
    from_bytes, get_key = int.from_bytes, keys.get
    while True:
        data, peer = receive(2048)
        if len(data) < 46 or data[0] != 1 or data[24] != 32 or data[25] != 20:
            continue
        spi_bytes = data[26:30]
        key = get_key(from_bytes(spi_bytes, "big"))
        if key is None:
            continue
        if equal(digest(key, data[:30], "md5"), data[30:46]):
            head = b"\x03\x00" + data[2:12] + data[16:24] + b"\x20\x14" + spi_bytes
        else:
            head = b"\x03\x83\x00\x00" + data[4:12] + data[16:24] + b"\x20\x14" + spi_bytes
        send(head + digest(key, head, "md5"), peer)


def main() -> None:
    address, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    keys = load_keys(path)
    print(f"pyfloor: serving {address}:{port} for {len(keys)} nodes", file=sys.stderr, flush=True)
    serve(address, port, keys)


if __name__ == "__main__":
    main()
