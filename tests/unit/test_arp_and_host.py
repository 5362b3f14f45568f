"""Gratuitous ARP frames (RFC 5944 4.6) checked by scapy; host settings set and restored."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Ether

from mipd.adapters.sysctl import HostSettings
from mipd.core.wire.arp import REPLY, REQUEST, ArpPacket, decode_arp, gratuitous_arp, mac_bytes, mac_text
from mipd.core.wire.errors import DecodeError

MAC = mac_bytes("02:00:00:00:00:0a")
HOME = IPv4Address("10.1.0.10")


@pytest.mark.parametrize("operation", [REQUEST, REPLY])
def test_gratuitous_arp_as_scapy_reads_it(operation: int) -> None:
    frame = gratuitous_arp(MAC, HOME, operation).encode()
    parsed = Ether(frame)
    assert (parsed.dst, parsed.src, parsed.type) == ("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:0a", 0x0806)
    arp = parsed[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.pdst) == (operation, "02:00:00:00:00:0a", str(HOME), str(HOME))
    assert arp.hwdst == ("02:00:00:00:00:0a" if operation == REPLY else "00:00:00:00:00:00")
    assert len(frame) == 60


def test_decode_what_scapy_builds() -> None:
    frame = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") /
                  ARP(op=1, hwsrc="02:00:00:00:00:01", psrc="10.1.0.2", pdst="10.1.0.10"))
    packet = decode_arp(frame)
    assert packet == ArpPacket(REQUEST, mac_bytes("02:00:00:00:00:01"), IPv4Address("10.1.0.2"), bytes(6),
                               IPv4Address("10.1.0.10"), b"\xff" * 6, mac_bytes("02:00:00:00:00:01"))
    assert not packet.gratuitous and gratuitous_arp(MAC, HOME).gratuitous


@pytest.mark.parametrize("frame", [b"", b"\xff" * 41, bytes(Ether(type=0x0800) / (b"\0" * 28))])
def test_malformed_frames(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_arp(frame)


@pytest.mark.parametrize("text", ["02:00:00:00:00", "02:00:00:00:00:0g", "2:0:0:0:0:a", "02-00-00-00-00-0a"])
def test_mac_parsing_rejects_garbage(text: str) -> None:
    with pytest.raises(DecodeError):
        mac_bytes(text)
    assert mac_text(MAC) == "02:00:00:00:00:0a"


def test_host_settings_are_applied_and_restored(tmp_path: Path) -> None:
    proc = tmp_path / "ipv4"
    values = {"ip_forward": "0", "conf/all/send_redirects": "1", "conf/all/rp_filter": "1",
              "conf/default/rp_filter": "1", "conf/home0/send_redirects": "1", "conf/home0/rp_filter": "1",
              "conf/visit0/rp_filter": "0", "conf/mip0/rp_filter": "1"}
    for name, value in values.items():
        (proc / name).parent.mkdir(parents=True, exist_ok=True)
        (proc / name).write_text(value + "\n")
    host = HostSettings(proc)
    report = host.apply("home0")
    now = {name: (proc / name).read_text().strip() for name in values}
    assert now == {**values, "ip_forward": "1", "conf/all/send_redirects": "0", "conf/all/rp_filter": "0",
                   "conf/home0/send_redirects": "0", "conf/home0/rp_filter": "2"}  # mip0, default untouched
    assert "ip_forward 0->1" in report and "conf/home0/rp_filter 1->2" in report
    host.restore()
    assert {name: (proc / name).read_text().strip() for name in values} == values
