"""Field types shared by the profile models (mip.yaml(5))."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, ip_address
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, Strict

from mipd.core.security import ReverseTunneling

MIN_KEY_BYTES = 16  # keys of at least 16 bytes, mip.yaml(5) (RFC 5944 5.1: 128-bit default keys)
_HEX = re.compile(r"[0-9a-fA-F]*")
_INTERFACE = re.compile(r"[^/\s:]{1,15}")  # Linux IFNAMSIZ is 16 with the NUL


def parse_hex_key(text: str) -> bytes:
    """A key written as hexadecimal digits, at least 16 bytes; ValueError says what is wrong."""
    if not _HEX.fullmatch(text):
        raise ValueError("key must be hexadecimal digits only")
    if len(text) % 2:
        raise ValueError(f"key has an odd number of hex digits ({len(text)})")
    if len(text) < 2 * MIN_KEY_BYTES:
        raise ValueError(f"key is {len(text) // 2} bytes, at least {MIN_KEY_BYTES} are required")
    return bytes.fromhex(text)


def _check_hex(text: str) -> str:
    parse_hex_key(text)
    return text


def _check_interface(name: str) -> str:
    if not _INTERFACE.fullmatch(name):
        raise ValueError("not a Linux interface name (1 to 15 characters, no '/', ':' or white space)")
    return name


def _require_prefix(value: object) -> object:
    if isinstance(value, str) and "/" not in value:
        raise ValueError("give the address with its prefix length, as in 10.2.0.5/24")
    return value


HexKey = Annotated[str, Strict(), AfterValidator(_check_hex),
                   Field(description="the secret as hexadecimal digits, at least 16 bytes (32 digits)")]
Spi = Annotated[int, Strict(), Field(ge=256, le=0xFFFFFFFF,
                                     description="Security Parameter Index; 0-255 are reserved (RFC 5944 1.6)")]
Lifetime = Annotated[int, Strict(), Field(ge=1, le=65535, description="seconds; 65535 means infinity (RFC 5944 3.3)")]
Seconds = Annotated[float, Strict(), Field(gt=0, description="seconds")]
Count = Annotated[int, Strict(), Field(ge=1)]
Flag = Annotated[bool, Strict()]
InterfaceName = Annotated[str, Strict(), AfterValidator(_check_interface)]
Cidr = Annotated[IPv4Interface, BeforeValidator(_require_prefix)]
LogLevel = Literal["debug", "info", "notice", "warning", "error"]
# What a commit of the state file survives before the reply that announces it (mip.yaml(5) durability).
Durability = Literal["power-loss", "process-crash"]


def _off_is_not_false(value: object) -> object:
    """YAML 1.1 reads an unquoted ``off`` as the boolean false; the profile means the word."""
    return "off" if value is False else value


ReverseTunnelingPolicy = Annotated[ReverseTunneling, BeforeValidator(_off_is_not_false)]
TunnelBackend = Literal["auto", "kernel", "userspace"]

# RFC 3519 NAT traversal policies (mip.yaml(5)); YAML's bare ``off`` is the word, as above.
HomeNatTraversal = Annotated[Literal["allowed", "required", "off"], BeforeValidator(_off_is_not_false)]
ForeignNatTraversal = Annotated[Literal["allowed", "off"], BeforeValidator(_off_is_not_false)]
NodeNatTraversal = Annotated[Literal["auto", "force", "off"], BeforeValidator(_off_is_not_false)]
# RFC 3519 3.2: the UDP Tunnel Reply carries it as 16 bits of seconds; RFC 3519 keeps keepalive
# intervals at 10 seconds or more, so a smaller value is refused here.
KeepaliveInterval = Annotated[int, Strict(), Field(ge=10, le=65535, description="seconds, 10 to 65535 (RFC 3519)")]


METRICS_PORT = 9434  # metrics.listen without a port: 9 and Mobile IP's UDP port 434 (mip.yaml(5))
_BRACKETED = re.compile(r"\[([^\]]+)\](?::(.*))?")


def parse_listen(text: str) -> tuple[IPv4Address | IPv6Address, int]:
    """``ADDRESS[:PORT]`` (IPv6 in brackets when a port follows) as (address, port); the port
    defaults to :data:`METRICS_PORT`. ValueError says what is wrong (a host name is refused)."""
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed:
        host, port_text = bracketed.group(1), bracketed.group(2)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None  # an IPv4 address alone, or an IPv6 address without brackets
    try:
        address = ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (give ADDRESS:PORT, e.g. 127.0.0.1:{METRICS_PORT} "
                         f"or [::1]:{METRICS_PORT}; host names are not resolved)") from None
    if bracketed and address.version != 6:
        raise ValueError("only an IPv6 address is written in brackets")
    if port_text is None:
        return address, METRICS_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    return address, int(port_text)


def _check_listen(text: str) -> str:
    address, port = parse_listen(text)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


# ``metrics.listen``, normalised to ``ADDRESS:PORT`` (``[ADDRESS]:PORT`` for IPv6).
ListenAddress = Annotated[str, Strict(), AfterValidator(_check_listen)]
