"""``mobile_nodes_file``: one mobile node per line, for 100,000 nodes and more (mip.yaml(5) MOBILE NODES FILE).

    # home_address  spi  hex-key                           [algorithm] [replay]
    10.1.0.10       256  00112233445566778899aabbccddeeff
    10.1.0.11       257  00112233445566778899aabbccddeef0  keyed-md5   nonce

``#`` starts a comment; blank lines are ignored. Lines are checked directly, not through pydantic
models, so a large file loads in a fraction of a second.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from socket import AF_INET, inet_pton

from mipd.config.types import MIN_KEY_BYTES
from mipd.core.security import MIN_SPI, ReplayProtection, SecurityAssociation
from mipd.core.wire.auth import Algorithm

MAX_PROBLEMS = 20  # a broken file of 100,000 lines reports this many, then a count
_ALGORITHMS = {a.value: a for a in Algorithm}
_REPLAYS = {r.value: r for r in ReplayProtection}


def parse_nodes(text: str, home_network: IPv4Network) -> tuple[list[tuple[int, SecurityAssociation]],
                                                                 list[tuple[int, str]]]:
    """The nodes of the file's ``text`` with their line numbers, and ``(line, message)`` problems.

    Home addresses must be hosts of ``home_network``; SPIs and home addresses must be unique
    within the file (uniqueness against the profile's own lists is the loader's check).
    """
    nodes: list[tuple[int, SecurityAssociation]] = []
    problems: list[tuple[int, str]] = []
    spis: dict[int, int] = {}
    homes: dict[bytes, int] = {}  # by packed address: hashing bytes is cheaper than IPv4Address
    net, mask = int(home_network.network_address), int(home_network.netmask)
    hosts_only = home_network.prefixlen < 31
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            packed, sa = _node(fields)
        except ValueError as exc:
            problems.append((number, str(exc)))
            continue
        host = int.from_bytes(packed, "big")
        if host & mask != net or (hosts_only and host in (net, net | ~mask & 0xFFFFFFFF)):
            problems.append((number, f"{sa.peer} is not a host address of home_network {home_network}"))
        elif (seen := spis.setdefault(sa.spi, number)) != number:
            problems.append((number, f"SPI {sa.spi} is already used on line {seen}"))
        elif (seen := homes.setdefault(packed, number)) != number:
            problems.append((number, f"home address {sa.peer} is already given on line {seen}"))
        else:
            nodes.append((number, sa))
    return nodes, problems


def _node(fields: list[str]) -> tuple[bytes, SecurityAssociation]:
    if any("/" in field for field in fields[1:]):
        raise ValueError("a line carries no mobile_networks (prefixes); list a mobile router under mobile_nodes "
                         "in the profile")
    if not 3 <= len(fields) <= 5:
        raise ValueError(f"expected 'home_address spi hex-key [algorithm] [replay]', found {len(fields)} fields")
    address, spi_text, key_text = fields[:3]
    try:
        packed = inet_pton(AF_INET, address)  # strict dotted quad, much faster than IPv4Address(str)
    except OSError:
        raise ValueError(f"{address!r} is not an IPv4 address") from None
    spi = int(spi_text) if spi_text.isascii() and spi_text.isdigit() else -1
    if not MIN_SPI <= spi <= 0xFFFFFFFF:
        raise ValueError(f"SPI {spi_text!r} is not a number from {MIN_SPI} to 4294967295")
    try:
        key = bytes.fromhex(key_text)
    except ValueError:
        raise ValueError("key must be hexadecimal digits only") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"key is {len(key)} bytes, at least {MIN_KEY_BYTES} are required")
    algorithm = _ALGORITHMS.get(fields[3]) if len(fields) > 3 else Algorithm.HMAC_MD5
    if algorithm is None:
        raise ValueError(f"algorithm {fields[3]!r} is not one of {', '.join(_ALGORITHMS)}")
    replay = _REPLAYS.get(fields[4]) if len(fields) > 4 else ReplayProtection.TIMESTAMP
    if replay is None:
        raise ValueError(f"replay {fields[4]!r} is not one of {', '.join(_REPLAYS)}")
    return packed, SecurityAssociation(spi, key, IPv4Address(packed), algorithm, replay)
