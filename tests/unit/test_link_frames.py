"""Frames of the visited link: the Ethernet/IPv4/UDP codec (mipd.core.wire.frames) against scapy, and the
visited link's BPF program run by a small classic-BPF interpreter over scapy-built frames (the real
kernel runs it in tests/integration/test_visited_link.py)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from mipd.adapters.link.visited import (
    BPF_JEQ,
    BPF_JSET,
    BPF_LDB_ABS,
    BPF_LDH_ABS,
    BPF_LDH_IND,
    BPF_LDXB_MSH,
    BPF_RET,
    Instruction,
    registration_filter,
)
from mipd.core.wire.errors import DecodeError
from mipd.core.wire.frames import BAD_UDP_CHECKSUM, decode_udp_frame, encode_udp_frame

NODE_MAC, FA_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:fa"
HOME, FA = "10.1.0.10", "10.2.0.1"


def run_bpf(program: list[Instruction], frame: bytes) -> int:
    """The opcodes the program uses, as <linux/filter.h> defines them; an out-of-bounds load drops."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code in (BPF_LDH_ABS, BPF_LDH_IND, BPF_LDB_ABS):
            offset = k + (x if code == BPF_LDH_IND else 0)
            size = 1 if code == BPF_LDB_ABS else 2
            if offset + size > len(frame):
                return 0
            a = int.from_bytes(frame[offset:offset + size], "big")
        elif code == BPF_LDXB_MSH:
            if k >= len(frame):
                return 0
            x = 4 * (frame[k] & 0x0F)
        elif code in (BPF_JEQ, BPF_JSET):
            taken = a == k if code == BPF_JEQ else bool(a & k)
            pc += jt if taken else jf
        elif code == BPF_RET:
            return k
        else:
            raise AssertionError(f"opcode 0x{code:02x} not interpreted")


def frame(packet: Packet) -> bytes:
    return bytes(Ether(dst=FA_MAC, src=NODE_MAC) / packet)


REQUEST = Raw(b"\x01" * 28)
FILTER_CASES = [
    ("udp 434", frame(IP(src=HOME, dst=FA) / UDP(sport=49152, dport=434) / REQUEST), True),
    ("udp 434 with IP options", frame(IP(src=HOME, dst=FA, options=b"\x94\x04\x00\x00") / UDP(dport=434) / REQUEST),
     True),
    ("udp 434 to 224.0.0.11", frame(IP(src=HOME, dst="224.0.0.11") / UDP(dport=434) / REQUEST), True),
    ("udp 435", frame(IP(src=HOME, dst=FA) / UDP(dport=435) / REQUEST), False),
    ("udp from 434 to 435", frame(IP(src=HOME, dst=FA) / UDP(sport=434, dport=435) / REQUEST), False),
    ("tcp 434", frame(IP(src=HOME, dst=FA) / TCP(dport=434)), False),
    ("first fragment", frame(IP(src=HOME, dst=FA, flags="MF") / UDP(dport=434) / REQUEST), False),
    ("later fragment", frame(IP(src=HOME, dst=FA, frag=3, proto=17) / Raw(b"\x00\x00\x01\xb2" + b"\0" * 20)), False),
    ("DF set", frame(IP(src=HOME, dst=FA, flags="DF") / UDP(dport=434) / REQUEST), True),
    ("arp", bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=NODE_MAC) / ARP(pdst=FA)), False),
    ("ipv6", bytes(Ether(dst=FA_MAC, src=NODE_MAC) / IPv6() / UDP(dport=434)), False),
    ("truncated", frame(IP(src=HOME, dst=FA) / UDP(dport=434))[:30], False),
]


@pytest.mark.parametrize(("name", "data", "passes"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_registration_filter(name: str, data: bytes, passes: bool) -> None:
    assert (run_bpf(registration_filter(434), data) != 0) is passes, name


def test_the_filter_follows_the_port() -> None:
    data = frame(IP(src=HOME, dst=FA) / UDP(dport=4340) / REQUEST)
    assert run_bpf(registration_filter(4340), data) and not run_bpf(registration_filter(434), data)


def test_encoded_frames_check_out_in_scapy() -> None:
    data = encode_udp_frame(b"reply!", destination_mac=bytes.fromhex("02000000000a"),
                            source_mac=bytes.fromhex("0200000000fa"), source=IPv4Address(FA), source_port=434,
                            destination=IPv4Address(HOME), destination_port=49152, ttl=64, identification=0x1234)
    packet = Ether(data)
    assert (packet.dst, packet.src, packet[IP].src, packet[IP].dst) == (NODE_MAC, FA_MAC, FA, HOME)
    assert (packet[IP].ttl, packet[IP].id, int(packet[IP].flags), packet[IP].frag) == (64, 0x1234, 0, 0)
    assert (packet[UDP].sport, packet[UDP].dport, packet[UDP].len, bytes(packet[UDP].payload)) == \
        (434, 49152, 14, b"reply!")
    sent_ip, sent_udp = packet[IP].chksum, packet[UDP].chksum
    del packet[IP].chksum, packet[UDP].chksum
    rebuilt = Ether(bytes(packet))
    assert (rebuilt[IP].chksum, rebuilt[UDP].chksum) == (sent_ip, sent_udp) and sent_udp != 0


def test_a_computed_zero_udp_checksum_is_sent_as_all_ones() -> None:
    # Find a payload whose checksum comes out as 0: then 0xFFFF goes on the wire (RFC 768).
    for n in range(0x10000):
        data = encode_udp_frame(n.to_bytes(2, "big"), destination_mac=bytes(6), source_mac=bytes(6),
                                source=IPv4Address(FA), source_port=434, destination=IPv4Address(HOME),
                                destination_port=434)
        if data[40:42] == b"\xff\xff":
            decode_udp_frame(data)  # and it verifies
            return
    raise AssertionError("no payload gave a zero checksum")


def test_decoding_a_scapy_frame() -> None:
    data = frame(IP(src=HOME, dst="255.255.255.255", ttl=255) / UDP(sport=49152, dport=434) / REQUEST)
    decoded = decode_udp_frame(data)
    assert decoded.source_mac == bytes.fromhex("02000000000a") and decoded.ip.ttl == 255
    assert (decoded.ip.source, decoded.source_port, decoded.destination_port, decoded.payload) == \
        (IPv4Address(HOME), 49152, 434, b"\x01" * 28)


def corrupt_udp_checksum(data: bytes) -> bytes:
    value = struct.unpack_from("!H", data, 40)[0] ^ 0x0101
    return data[:40] + struct.pack("!H", value) + data[42:]


GOOD = frame(IP(src=HOME, dst=FA) / UDP(sport=49152, dport=434) / REQUEST)


@pytest.mark.parametrize(("data", "reason"), [
    (corrupt_udp_checksum(GOOD), BAD_UDP_CHECKSUM),
    (frame(IP(src=HOME, dst=FA, flags="MF") / UDP(dport=434) / REQUEST), "an IP fragment"),
    (frame(IP(src=HOME, dst=FA) / UDP(dport=434, len=20) / REQUEST), "UDP length 20"),
    (frame(IP(src=HOME, dst=FA, chksum=1) / UDP(dport=434) / REQUEST), "bad IPv4 header checksum"),
    (frame(IP(src=HOME, dst=FA) / TCP(dport=434)), "is not UDP"),
    (bytes(Ether() / ARP()), "is not IPv4"),
    (frame(IP(src=HOME, dst=FA, proto=17) / Raw(b"\xc0\x00\x01\xb2")), "shorter than its header"),
    (GOOD[:40], "total length"),
], ids=["udp-checksum", "fragment", "udp-length", "ip-checksum", "tcp", "arp", "short-udp", "truncated"])
def test_malformed_frames_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_udp_frame(data)


def test_zero_udp_checksum_means_none_and_unverified_is_allowed() -> None:
    zero = GOOD[:40] + b"\0\0" + GOOD[42:]
    assert decode_udp_frame(zero).udp_checksum == 0
    assert decode_udp_frame(corrupt_udp_checksum(GOOD), verify_udp_checksum=False).payload == b"\x01" * 28
