"""Addresses with a meaning of their own in Mobile IP (RFC 5944, RFC 1122 3.2.1.3)."""

from __future__ import annotations

from ipaddress import IPv4Address

UNSPECIFIED = IPv4Address("0.0.0.0")  # "this host": a home address still to be assigned (3.8.3.2)
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
