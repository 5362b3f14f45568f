"""Which mobile router serves an address: the accepted Mobile Network Prefixes of every away
router (RFC 5177 6.5), for the userspace data planes' per-packet decisions. No I/O."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

_ALL = 0xFFFFFFFF


class PrefixOwners:
    """Prefixes by home address, and the longest-match lookup of an address's router."""

    __slots__ = ("_lengths", "_owners", "prefixes")

    def __init__(self) -> None:
        self.prefixes: dict[IPv4Address, tuple[IPv4Network, ...]] = {}
        self._owners: dict[tuple[int, int], IPv4Address] = {}  # (network as int, length) -> home address
        self._lengths: list[int] = []  # the prefix lengths held, longest first

    def set(self, home: IPv4Address, prefixes: tuple[IPv4Network, ...]) -> tuple[IPv4Network, ...]:
        """The node's prefixes are now ``prefixes``; returns those it had and no longer has."""
        before = self.prefixes.pop(home, ())
        for prefix in before:
            self._owners.pop((int(prefix.network_address), prefix.prefixlen), None)
        if prefixes:
            self.prefixes[home] = prefixes
            for prefix in prefixes:
                self._owners[int(prefix.network_address), prefix.prefixlen] = home
        if before or prefixes:
            self._lengths = sorted({length for _, length in self._owners}, reverse=True)
        return tuple(p for p in before if p not in prefixes)

    def clear(self) -> None:
        self.prefixes.clear()
        self._owners.clear()
        self._lengths = []

    def owner(self, address: IPv4Address) -> IPv4Address | None:
        """The home address of the router whose prefix holds ``address`` (longest match), or None."""
        if not self._lengths:
            return None
        value = int(address)
        for length in self._lengths:
            home = self._owners.get((value & (_ALL << (32 - length)) & _ALL, length))
            if home is not None:
                return home
        return None
