"""The link monitor's netlink parsing, on hand-made messages, and its one-off snapshot.

The transitions themselves are exercised against the kernel in tests/integration/test_link_monitor.py.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Interface

from mipd.adapters.netlink.monitor import (
    IFA_ADDRESS,
    IFA_LOCAL,
    IFLA_IFNAME,
    RTM_NEWADDR,
    RTM_NEWLINK,
    LinkMonitor,
    attributes,
    messages,
)


def rtattr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def nlmsg(kind: int, body: bytes) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def test_messages_split_a_datagram_and_ignore_a_truncated_tail() -> None:
    link = struct.pack("=BxHiII", 0, 1, 7, 0x10043, 0) + rtattr(IFLA_IFNAME, b"mn0\0")
    addr = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 7) + rtattr(IFA_ADDRESS, bytes([10, 0, 0, 9]))
    data = nlmsg(RTM_NEWLINK, link) + nlmsg(RTM_NEWADDR, addr)
    assert list(messages(data)) == [(RTM_NEWLINK, link), (RTM_NEWADDR, addr)]
    assert list(messages(data + nlmsg(RTM_NEWLINK, link)[:20])) == [(RTM_NEWLINK, link), (RTM_NEWADDR, addr)]
    assert list(messages(struct.pack("=IHHII", 8, RTM_NEWLINK, 0, 0, 0))) == []  # a length below the header


def test_attributes_by_type_first_wins_and_padding_is_skipped() -> None:
    data = (rtattr(IFA_LOCAL, bytes([10, 0, 0, 5])) + rtattr(IFLA_IFNAME, b"a\0")
            + rtattr(IFA_LOCAL | 0x8000, bytes([10, 0, 0, 6])))  # NLA_F_NESTED stripped; a repeat ignored
    assert attributes(data) == {IFA_LOCAL: bytes([10, 0, 0, 5]), IFLA_IFNAME: b"a\0"}
    assert attributes(data + struct.pack("=HH", 40, 1)) == attributes(data)  # an overlong tail is dropped


def test_snapshot_reads_the_kernel_before_start() -> None:
    assert LinkMonitor("mipd-no-such-if").snapshot() == (False, [])
    up, addresses = LinkMonitor("lo").snapshot()
    assert up and IPv4Interface("127.0.0.1/8") in addresses
