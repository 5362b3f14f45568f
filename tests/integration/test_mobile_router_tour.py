"""A vehicle LAN behind a mobile router (RFC 5177), end to end: ``mipd demo --mobile-router``'s tour with
every check at every location, on this machine (userspace backend).

The topology is the demo's (mipd/demo/topology.py, ``mobile_router=True``): a LAN namespace behind the node
with a host on the mobile prefix 192.168.50.0/24 (and an address on 192.168.60.0/24, a prefix the home agent
does not serve for the node), a correspondent beyond the home agent, and the operator's at-home route for
the prefix on the home agent (via the node's home address, metric 100). The correspondent pings the LAN host
and keeps a TCP connection sending to it while the router moves home -> visited 1 (foreign agent care-of
address) -> co-located -> behind the NAT (UDP tunnel, RFC 3519) -> home; the node's own traffic (the home
link's correspondent pinging its home address, its TCP connection) runs all the while. The checks, in
tests/support/demo_tour.py and tests/support/vehicle_lan.py, at every location: the node's status and the
home agent's binding name the prefix; captures on the correspondent and on the LAN host show the LAN host's
address and the correspondent's unchanged in both directions; the home agent routes the prefix itself
while the node is away and not at home (the operator's route serves it there), and never routes the refused
prefix. Over the whole tour: each accepted Registration Reply on the node's link acknowledges the prefix
(explicit mode, code 0) and the first also refuses 192.168.60.0/24 with code 2 (MOBNET_UNAUTHORIZED),
decoded from the captured bytes; the binding events carry MIP_MOBILE_NETWORKS; the LAN host's TCP
connection survived every move and saw the correspondent's own address as its peer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mipd.demo.topology import COLOCATED, FA1, LAN_PREFIX, NAT_LEASE, NAT_OUTSIDE
from tests.integration import test_demo_tour
from tests.integration.test_demo_tour import assert_tour, bindings, run_tour

SUMMARY = re.compile(
    test_demo_tour.SUMMARY.pattern + r" "
    r"lan_delivered=(?P<lx>\d+)/(?P<ly>\d+) lan_lost=(?P<llost>\d+) "
    r"lan_handoff_ms_median=(?P<lmedian>\d+\.\d) lan_tcp_survived=(?P<ltcp>yes|no)"
)


def test_vehicle_lan_stays_reachable_with_its_own_address_on_the_whole_tour() -> None:
    result: dict[str, Any] = run_tour(mobile_router=True, refused_network=True, moves=4)
    details = json.dumps({k: result.get(k) for k in ("summary", "lan", "per_move")}, indent=1)[:6000]
    assert_tour(result, 4, "userspace", SUMMARY)
    assert [m["stop"] for m in result["moves"]] == ["v1", "colocated", "nat", "home"]
    found = bindings(result)
    assert [b["care_of_address"] for b in found] == [FA1, COLOCATED, NAT_LEASE]
    assert all("T" in b["flags"] for b in found), found  # a mobile router sets T (RFC 5177)
    assert all(b["mobile_networks"] == [LAN_PREFIX] for b in found), found
    at_nat = result["moves"][2]["seen"]["bindings"][0]
    assert at_nat["udp_tunnel"] is True and at_nat["outer_address"] == NAT_OUTSIDE, at_nat
    # The summary line goes on with the LAN host's reachability.
    match = SUMMARY.fullmatch(result["summary"])
    assert match, result["summary"]
    sent, lost = int(match["ly"]), int(match["llost"])
    assert match["ltcp"] == "yes" and sent > 0 and lost < 0.1 * sent, details
    lan = result["lan"]
    assert lan["tcp_peer"] == "10.8.0.2" and lan["wrong_source"] == {}, details
    # Code 2 for the refused prefix, on the wire, in the first accepted reply; success for the served one.
    accepted = [r for r in lan["replies"] if r[0] in (0, 1) and r[1] > 0]
    assert [1, 2, 24, "192.168.60.0"] in accepted[0][2], details
    assert all([1, 0, 24, "192.168.50.0"] in r[2] for r in accepted), details
    # And at every stop: no route for it at the home agent, the addresses kept, the served prefix routed.
    for move in result["moves"]:
        assert move["seen"]["lan"]["routes"]["refused"] == [], move
        assert move["seen"]["lan"]["far_echo_replies"] == ["192.168.50.10"], move
        assert move["seen"]["lan"]["lan_echo_requests"] == ["10.8.0.2"], move
