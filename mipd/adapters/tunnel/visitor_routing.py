"""The foreign agent's routing state for its visitors, shared by both visitor backends.

Per visitor with home address H on the visited interface IF (RFC 5944 4.2.2, RFC 3024):

- a static neighbour ``H lladdr <its MAC> dev IF nud permanent proto 77``: the FA "MUST NOT"
  ARP for a visitor's home address, and a permanent entry never expires before the visitor does;
- a host route ``H/32 dev IF proto 77 table 770000`` (:data:`VISITOR_TABLE`): decapsulated
  datagrams for H go out on the visited link to that MAC;
- with reverse tunnelling (T): ``ip rule from H iif IF lookup T_H prio 7700`` and, in the
  visitor's own table T_H (:data:`REVERSE_TABLES`), a default route into the tunnel towards
  its home agent -- which route is the backend's business (userspace: ``dev mipv0``; kernel:
  ``encap ip dst HA src CoA dev mipip0|mipgre0``). One table per visitor, because its default
  route carries that visitor's home agent and encapsulation.

Fixed rules, made at start (priorities reserved for mipd: :data:`PRIORITIES`, 7700-7799):

    0:     lookup local                       (the kernel's: packets to the FA itself first)
    7700:  from H iif IF lookup T_H           (per reverse-tunnelled visitor)
    7710:  lookup 770000                      (the visitors' host routes)
    7720:  iif <decapsulating device> blackhole   (4.2.2: a tunnelled datagram whose inner
           destination is no visitor "SHOULD be silently discarded" -- no ICMP, unlike
           unreachable/prohibit; without it the FA would forward it: an open relay)
    32766: lookup main

That is why the host routes live in their own table and not in main: the discard rule must sit
between them and main's default route. Rules and the table carry no source restriction, so the
FA's own packets to a visitor (e.g. relayed replies over UDP) also find H/32.

Ownership (what :meth:`VisitorRouting.reconcile` and :meth:`VisitorRouting.close` may remove;
everything else is left alone): routes with protocol 77 in table 770000 or in the range of
:data:`REVERSE_TABLES`; rules in :data:`PRIORITIES` with protocol 77 (FRA_PROTOCOL, Linux >= 4.17;
no protocol at all on older kernels); neighbour entries that are NUD_PERMANENT with protocol 77
(NDA_PROTOCOL, Linux >= 5.2). Order keeps the no-ARP promise: a neighbour entry is made before
its route and removed after it; the mark makes an entry orphaned by a crash in between findable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network

from mipd.adapters.netlink import calls as netlink
from mipd.adapters.netlink import policy as netlink_policy
from mipd.adapters.netlink.policy import Rule
from mipd.adapters.tunnel.backend import BackendError
from mipd.core.planes import Delivery, VisitorPlane

VISITOR_TABLE = 770_000
REVERSE_TABLES = range(770_001, 770_001 + 65_535)
PRIORITIES = range(7700, 7800)
PRIORITY_REVERSE, PRIORITY_VISITORS, PRIORITY_DISCARD = 7700, 7710, 7720
DEFAULT = IPv4Network("0.0.0.0/0")

ReverseRoute = Callable[[Delivery, int], None]  # (delivery, table): route the table's default into the tunnel


def wanted(desired: Iterable[VisitorPlane]) -> dict[IPv4Address, Delivery]:
    """The last word on each visitor, without those that have none."""
    last = {plane.home_address: plane.delivery for plane in desired}
    return {home: delivery for home, delivery in last.items() if delivery is not None}


class VisitorRouting:
    """Neighbours, host routes, rules and reverse tables for the visitors on one interface."""

    def __init__(self, interface: str, decapsulating: Iterable[str], reverse_route: ReverseRoute) -> None:
        self.interface = interface
        self.decapsulating = tuple(decapsulating)
        self._reverse_route = reverse_route
        self.tables: dict[IPv4Address, int] = {}  # reverse-tunnelled visitor -> its table

    def fixed_rules(self) -> list[Rule]:
        """The rules that do not depend on any visitor (7710 and 7720 above)."""
        return [Rule(PRIORITY_VISITORS, VISITOR_TABLE),
                *(Rule(PRIORITY_DISCARD, iif=device, blackhole=True) for device in self.decapsulating)]

    def reverse_rule(self, home: IPv4Address, table: int) -> Rule:
        """``from H iif IF lookup T_H``."""
        return Rule(PRIORITY_REVERSE, table, IPv4Network(home), self.interface)

    def start(self) -> None:
        """Add the fixed rules. Raises BackendError."""
        with _errors("cannot add the visitor rules"):
            for rule in self.fixed_rules():
                netlink_policy.add_rule(rule)

    def apply(self, plane: VisitorPlane) -> None:
        """Make one visitor's neighbour, route, rule and table match ``plane`` (idempotent)."""
        home, delivery = plane.home_address, plane.delivery
        with _errors(f"visitor {home}"):
            if delivery is None:
                self._remove(home)
                return
            netlink_policy.replace_static_neighbour(home, delivery.link_address, self.interface)
            netlink.replace_route(IPv4Network(home), device=self.interface, table=VISITOR_TABLE)
            if delivery.reverse:
                table = self.tables.get(home) or self._allocate(home)
                self._reverse_route(delivery, table)
                netlink_policy.add_rule(self.reverse_rule(home, table))
            else:
                self._remove_reverse(home)

    def _allocate(self, home: IPv4Address) -> int:
        used = set(self.tables.values())
        table = next((t for t in REVERSE_TABLES if t not in used), None)
        if table is None:
            raise BackendError(f"visitor {home}: all {len(REVERSE_TABLES)} reverse-tunnel tables in use")
        self.tables[home] = table
        return table

    def _remove_reverse(self, home: IPv4Address) -> None:
        table = self.tables.pop(home, None)
        if table is not None:
            netlink_policy.delete_rule(self.reverse_rule(home, table))
            netlink_policy.delete_table_route(DEFAULT, table)

    def _remove(self, home: IPv4Address) -> None:
        self._remove_reverse(home)
        netlink_policy.delete_table_route(IPv4Network(home), VISITOR_TABLE)
        for entry in netlink_policy.owned_neighbours():  # only ours: a foreign static entry stays
            if entry.address == home and entry.device == self.interface:
                netlink_policy.delete_neighbour(home, self.interface)

    def reconcile(self, desired: Iterable[VisitorPlane]) -> None:
        """Exactly the ``desired`` visitors (plus the fixed rules): every other owned rule, route
        and neighbour entry is removed -- also those on another interface, left by an earlier
        configuration. A reverse rule that is still wanted keeps its table (no gap)."""
        want = wanted(desired)
        with _errors("cannot reconcile the visitor routing"):
            self._sweep(want, set(self.fixed_rules()))
            for rule in self.fixed_rules():
                netlink_policy.add_rule(rule)
        for home, delivery in want.items():
            self.apply(VisitorPlane(home, delivery))

    def _sweep(self, want: dict[IPv4Address, Delivery], keep: set[Rule]) -> None:
        self.tables.clear()
        reverse = {home for home, delivery in want.items() if delivery.reverse}
        for rule in netlink_policy.owned_rules(PRIORITIES):
            home = rule.source.network_address if rule.source is not None and rule.source.prefixlen == 32 else None
            if (rule.priority == PRIORITY_REVERSE and rule.iif == self.interface and home in reverse
                    and rule.table in REVERSE_TABLES and home not in self.tables
                    and rule.table not in self.tables.values()):
                assert home is not None
                self.tables[home] = rule.table
            elif rule not in keep:
                netlink_policy.delete_rule(rule)
        adopted = set(self.tables.values())
        for route in netlink_policy.table_routes():
            stale_reverse = route.table in REVERSE_TABLES and route.table not in adopted
            stale_host = route.table == VISITOR_TABLE and not (
                route.destination.prefixlen == 32 and route.device == self.interface
                and route.destination.network_address in want)
            if stale_reverse or stale_host:
                netlink_policy.delete_table_route(route.destination, route.table)
        for entry in netlink_policy.owned_neighbours():
            if entry.device != self.interface or entry.address not in want:
                netlink_policy.delete_neighbour(entry.address, entry.device)

    def close(self) -> None:
        """Remove every owned rule, route and neighbour entry, the fixed rules included."""
        with _errors("cannot remove the visitor routing"):
            self._sweep({}, set())
        self.tables.clear()


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn a netlink/OS error into a BackendError that says what was being done."""
    try:
        yield
    except OSError as exc:
        raise BackendError(f"{what}: {exc}") from exc
