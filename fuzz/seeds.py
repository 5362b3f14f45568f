"""Write the seed corpora, ``fuzz/corpus/<target>/``, from the test vectors.

    python -m fuzz.seeds [DIRECTORY]        (default: fuzz/corpus)

Where the seeds come from:

- the hand-written codec vectors of tests/unit/test_codec_vectors.py (registration, ICMP, malformed);
- the Wireshark known-answer registration messages of tests/conformance/test_openssl.py;
- frames and packets built by scapy, the independent encoder of the conformance tests
  (IP-in-IP, GRE, minimal encapsulation by hand per RFC 2004 3.1, ARP, UDP to port 434, ICMP);
- messages signed the way the engine harnesses expect (fuzz/targets.py's keys and SPIs), from
  the in-memory scenario (tests/support/scenario.py) of a node registering through a foreign agent.

The files are named by the SHA-1 of their content, so running this again writes the same corpus;
the corpus is committed (about 220 files, 70 kB) and this script is how it was made.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from scapy.layers.inet import ICMP, IP, UDP, IPOption_NOP
from scapy.layers.l2 import ARP, GRE, Ether
from scapy.packet import Raw

from fuzz import targets as t
from mipd.core.actions import SendDatagram, SendToNode
from mipd.core.wire.arp import REPLY, gratuitous_arp
from mipd.core.wire.extensions import AuthenticationExtension, ExtensionType, MobileNodeNAI
from mipd.core.wire.frames import encode_ip_frame, encode_udp_frame
from mipd.core.wire.icmp import AgentSolicitation
from mipd.core.wire.registration import RegistrationReply, RegistrationRequest, RequestFlags
from mipd.core.wire.tunnel import Encapsulation, encapsulate
from tests.conformance import test_openssl as wireshark
from tests.support import scenario
from tests.unit import test_codec_vectors as vectors

DEFAULT = Path(__file__).resolve().parent / "corpus"
IDENT = 0xE8FE6F80_12345678
HOME, CN, COA = "10.1.0.50", "10.3.0.10", "10.2.0.20"


def _minimal(inner: IP, *, with_source: bool) -> bytes:
    """RFC 2004 3.1 by hand (scapy has no layer): the modified header, the forwarding header."""
    forwarding = bytes((inner.proto, 0x80 if with_source else 0)) + b"\0\0" + IPv4Address(inner.dst).packed
    if with_source:
        forwarding += IPv4Address(inner.src).packed
    total = sum(int.from_bytes(forwarding[i:i + 2], "big") for i in range(0, len(forwarding), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    forwarding = forwarding[:2] + (~total & 0xFFFF).to_bytes(2, "big") + forwarding[4:]
    outer = IP(src=scenario.HA.compressed, dst=COA, proto=55, ttl=inner.ttl, id=inner.id, tos=inner.tos)
    return bytes(outer / Raw(forwarding + bytes(inner.payload)))


def _registration_messages() -> list[bytes]:
    out = [bytes.fromhex(wire) for _, wire, _ in vectors.REGISTRATION_CASES + vectors.EXTENSION_CASES]
    out += [bytes.fromhex(w) for _, w, d, _ in vectors.MALFORMED if d is vectors.decode_registration]
    out.append(bytes.fromhex(wireshark.WS_RRQ_FIXED + wireshark.WS_RRQ_EXT + wireshark.WS_RRQ_AUTH))
    out.append(bytes.fromhex(wireshark.WS_RRP_FIXED + wireshark.WS_RRP_EXT + wireshark.WS_RRP_AUTH))
    out.append(bytes.fromhex(wireshark.WS_RRQ_FIXED) + wireshark.NAI_EXT)
    return out


def _scenario_messages() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Requests a node sent, requests the FA relayed, replies the HA and the FA sent, while a node
    registers through a foreign agent, moves home and deregisters (the in-memory scenario)."""
    world, node, fas, ha = scenario.build(reverse_tunneling=True)
    net = scenario.Network(world, node, fas, ha)
    net.deliver(node.start(0.0), node)
    net.run_until(5.0, advertisers={scenario.FA1: scenario.advertisement(scenario.FA1)})
    net.run_until(10.0, advertisers={scenario.HA: scenario.advertisement(scenario.HA, home=True)})
    from_node, relayed, replies = [], [], []
    for action, origin in zip(world.log, world.origins, strict=True):
        if isinstance(action, SendDatagram) and origin is node:
            from_node.append(action.payload)
        elif isinstance(action, SendDatagram) and origin in fas.values():
            relayed.append(action.payload)
        elif isinstance(action, SendDatagram | SendToNode):
            replies.append(action.payload)
    return from_node, relayed, replies


def _harness_messages() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Requests and replies under the engine harnesses' SAs (authenticators recomputed there)."""
    mn_ha = AuthenticationExtension(ExtensionType.MOBILE_HOME_AUTHENTICATION, t.MN_HA_SPI, bytes(16))
    nonce = AuthenticationExtension(ExtensionType.MOBILE_HOME_AUTHENTICATION, t.MN_NONCE_SPI, bytes(16))
    mn_fa = AuthenticationExtension(ExtensionType.MOBILE_FOREIGN_AUTHENTICATION, t.MN_FA_SPI, bytes(16))
    fa_ha = AuthenticationExtension(ExtensionType.FOREIGN_HOME_AUTHENTICATION, t.FA_HA_SPI, bytes(16))
    base = RegistrationRequest(RequestFlags(0), 300, t.MN, t.HA, t.FA, IDENT, (mn_ha,))
    requests = [
        base,
        replace(base, extensions=(MobileNodeNAI(b"mn@example.net"), mn_ha, fa_ha)),
        replace(base, flags=RequestFlags.T | RequestFlags.G, extensions=(mn_ha, mn_fa)),
        replace(base, flags=RequestFlags.S | RequestFlags.D, care_of_address=IPv4Address("10.9.0.9")),
        replace(base, lifetime=0, care_of_address=t.MN),
        replace(base, home_address=IPv4Address("0.0.0.0"), flags=RequestFlags.M | RequestFlags.B),
        replace(base, home_address=t.MN_NONCE, extensions=(nonce,)),
    ]
    replies = [
        RegistrationReply(0, 300, t.MN, t.HA, IDENT, (mn_ha, fa_ha)),
        RegistrationReply(133, 0, t.MN, t.HA, IDENT, (mn_ha,)),
        RegistrationReply(0, 0, t.MN, t.HA, IDENT, (mn_ha,)),
        RegistrationReply(1, 0xFFFF, t.MN, t.HA, 0x1122_3344_2222_3333, (mn_ha,)),
    ]
    signed_requests = [t.resign(r).encode() for r in requests]
    signed_replies = [t.resign(r).encode() for r in replies]
    # mobile_node_reply re-signs odd-length replies only (so that it also sees unsigned ones).
    odd = [r + b"\xc8\x00\x00" if len(r) % 2 == 0 else r for r in signed_replies]
    return signed_requests, signed_replies, odd


def _ip_packets() -> list[IP]:
    return [
        IP(src=CN, dst=HOME, ttl=63, tos=0x28, id=7) / UDP(sport=1234, dport=80) / Raw(b"hello"),
        IP(src=CN, dst=HOME, ttl=1, flags="DF") / ICMP(type=8) / Raw(b"x" * 9),
        IP(src=CN, dst=HOME, options=[IPOption_NOP()] * 4) / Raw(b"opt"),
        IP(src=CN, dst=HOME, flags="MF", frag=3) / Raw(b"fragment"),
        IP(src=CN, dst=HOME, ttl=0) / Raw(b"ttl0"),
    ]


def corpora() -> dict[str, list[bytes]]:
    """The seed inputs of every target of fuzz/targets.py."""
    registration = _registration_messages()
    from_node, relayed, scenario_replies = _scenario_messages()
    signed_requests, signed_replies, odd_replies = _harness_messages()
    all_registration = registration + from_node + relayed + scenario_replies + signed_requests + signed_replies
    icmp = [bytes.fromhex(w) for _, w, _ in vectors.ICMP_CASES]
    icmp += [bytes.fromhex(w) for _, w, d, _ in vectors.MALFORMED if d is vectors.decode_icmp]
    icmp += [scenario.advertisement(scenario.FA1).encode(), scenario.advertisement(scenario.HA, home=True).encode(),
             AgentSolicitation().encode(), bytes(ICMP(type=10))]
    packets = _ip_packets()
    plain = [bytes(p) for p in packets]
    tunnels = [bytes(IP(src=scenario.HA.compressed, dst=COA) / p) for p in packets]
    tunnels += [bytes(IP(src=scenario.HA.compressed, dst=COA) / GRE(proto=0x0800) / p) for p in packets]
    tunnels += [_minimal(IP(bytes(p)), with_source=w) for p in packets[:3] for w in (True, False)]
    mac_a, mac_b = scenario.MN_MAC, scenario.FA_MACS[scenario.FA1]
    arp = [gratuitous_arp(mac_a, scenario.MN).encode(), gratuitous_arp(mac_b, scenario.FA1, REPLY).encode(),
           bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:0a") /
                 ARP(op=1, hwsrc="02:00:00:00:00:0a", psrc=HOME, pdst="10.1.0.1"))]
    udp = [bytes(Ether(dst="02:00:00:00:00:f1", src="02:00:00:00:00:0a") / IP(src=HOME, dst="10.2.0.1") /
                 UDP(sport=49152, dport=434) / Raw(m)) for m in from_node[:3]]
    udp += [encode_udp_frame(m, destination_mac=mac_b, source_mac=mac_a, source=scenario.MN,
                             source_port=5000, destination=IPv4Address("224.0.0.11"), destination_port=434)
            for m in signed_requests[:2]]
    ip_frames = [encode_ip_frame(m, destination_mac=b"\x01\x00\x5e\x00\x00\x01", source_mac=mac_b,
                                 source=scenario.FA1, destination=IPv4Address("224.0.0.1"), protocol=1, ttl=1)
                 for m in icmp[:3]]
    ip_frames += [bytes(Ether(dst="01:00:5e:00:00:01", src="02:00:00:00:00:f1") / IP(src="10.2.0.1",
                  dst="224.0.0.1", ttl=1) / Raw(m)) for m in icmp[3:5]]
    extensions = [m[24:] for m in all_registration if m[:1] == b"\x01"]
    extensions += [m[20:] for m in all_registration if m[:1] == b"\x03"]
    extensions += [m[16:] for m in icmp if m[:1] == b"\x09"]
    kinds = tuple(Encapsulation)
    to_encapsulate = [bytes((kinds.index(k),)) + p for k in kinds for p in plain]
    to_encapsulate += [bytes((kinds.index(Encapsulation.IPIP),)) +
                       encapsulate(plain[0], scenario.HA, IPv4Address(COA), Encapsulation.IPIP, 1)]
    return {
        "registration": all_registration,
        "messages": registration + [bytes.fromhex(w) for _, w, _ in vectors.MESSAGE_CASES]
                    + [bytes.fromhex(w) for _, w, d, _ in vectors.MALFORMED if d is vectors.decode_message],
        "extensions": [e for e in extensions if e],
        "icmp": icmp,
        "ipv4": plain + tunnels,
        "tunnel_decapsulate": tunnels + plain[:1],
        "tunnel_encapsulate": to_encapsulate,
        "arp": arp,
        "udp_frame": udp,
        "ip_frame": ip_frames,
        "mac_address": [b"02:00:00:00:00:0a", b"ff:ff:ff:ff:ff:ff", b"0:1:2:3:4:5", b"02-00-00-00-00-0a"],
        "home_agent": [bytes((selector,)) + m for m in signed_requests for selector in (0, 1)]
                      + [b"\x00" + m for m in from_node + relayed],
        "foreign_agent_node": [bytes((selector,)) + m for m in signed_requests + from_node
                               for selector in (0x80, 0x03)],
        "foreign_agent_reply": signed_replies + scenario_replies,
        "mobile_node_reply": odd_replies + signed_replies + scenario_replies,
    }


def write(directory: Path = DEFAULT) -> dict[str, int]:
    """Write every corpus under ``directory``; return the number of seeds per target."""
    counts: dict[str, int] = {}
    for name, seeds in corpora().items():
        if name not in t.TARGETS:
            raise KeyError(f"seeds for unknown target {name}")
        target_dir = directory / name
        target_dir.mkdir(parents=True, exist_ok=True)
        unique = {hashlib.sha1(seed, usedforsecurity=False).hexdigest()[:16]: seed for seed in seeds}
        for digest, seed in unique.items():
            (target_dir / f"seed-{digest}").write_bytes(seed)
        counts[name] = len(unique)
    missing = set(t.TARGETS) - set(counts)
    if missing:
        raise KeyError(f"targets without seeds: {sorted(missing)}")
    return counts


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    for name, count in write(root).items():
        print(f"{name}: {count} seeds in {root / name}")
