"""The results of ``mipctl --json`` (mipctl(8) JSON OUTPUT) built from core objects."""

from __future__ import annotations

import math
from collections import Counter
from ipaddress import IPv4Address, IPv4Network

import pytest

from mipd.control.shapes import binding_json, bindings_json, stats_json, status_json, visitor_json
from mipd.core.bindings import Binding
from mipd.core.home_agent import Counters
from mipd.core.planes import UdpTunnelEndpoint
from mipd.core.wire.registration import RequestFlags

HOME = IPv4Address("10.1.0.10")
CARE_OF = IPv4Address("10.2.0.1")


def binding(**changes: object) -> Binding:
    fields: dict[str, object] = {
        "home_address": HOME, "care_of_address": CARE_OF, "lifetime_granted": 600, "expires": 1412.0,
        "identification": 0xE8FE6F8012345678, "flags": RequestFlags.T, "spi": 256, "foreign_agent": CARE_OF,
    }
    fields.update(changes)
    return Binding(**fields)  # type: ignore[arg-type]


def test_binding_json_is_the_man_page_example() -> None:
    assert binding_json(binding(), now=1000.0) == {
        "home_address": "10.1.0.10", "care_of_address": "10.2.0.1", "lifetime_granted": 600,
        "lifetime_remaining": 412, "flags": "T", "spi": 256, "identification": "e8fe6f8012345678",
        "foreign_agent": "10.2.0.1", "udp_tunnel": False,
    }


def test_a_udp_tunnelled_binding_shows_its_outer_endpoint() -> None:
    entry = binding_json(binding(outer=UdpTunnelEndpoint(IPv4Address("192.0.2.7"), 61000)), now=1000.0)
    assert (entry["udp_tunnel"], entry["outer_address"], entry["outer_port"]) == (True, "192.0.2.7", 61000)


def test_a_mobile_routers_binding_lists_its_prefixes_and_others_have_no_such_field() -> None:
    entry = binding_json(binding(prefixes=(IPv4Network("192.168.50.0/24"), IPv4Network("192.168.60.0/28"))), 1000.0)
    assert entry["mobile_networks"] == ["192.168.50.0/24", "192.168.60.0/28"]  # RFC 5177, mipctl(8)
    assert "mobile_networks" not in binding_json(binding(), now=1000.0)


@pytest.mark.parametrize(
    ("flags", "letters"),
    [
        (RequestFlags(0), ""),
        (RequestFlags.T | RequestFlags.S, "ST"),
        (RequestFlags.G | RequestFlags.M | RequestFlags.D | RequestFlags.B | RequestFlags.S | RequestFlags.T, "SBDMGT"),
        (RequestFlags.r | RequestFlags.x | RequestFlags.D, "D"),
    ],
)
def test_flags_are_rfc_letters_in_rfc_order(flags: RequestFlags, letters: str) -> None:
    assert binding_json(binding(flags=flags), now=1000.0)["flags"] == letters


def test_binding_json_edge_values() -> None:
    entry = binding_json(
        binding(identification=1, foreign_agent=None, expires=math.inf, lifetime_granted=0xFFFF), now=5.0
    )
    assert entry["identification"] == "0000000000000001"
    assert entry["foreign_agent"] is None
    assert (entry["lifetime_granted"], entry["lifetime_remaining"]) == (0xFFFF, 0xFFFF)
    assert binding_json(binding(expires=999.5), now=1000.0)["lifetime_remaining"] == 0


def test_bindings_are_ordered_by_address_not_by_text() -> None:
    table = [binding(home_address=IPv4Address("10.1.0.10")), binding(home_address=IPv4Address("10.1.0.9")),
             binding(home_address=IPv4Address("10.1.0.9"), care_of_address=IPv4Address("10.2.0.0"))]
    result = bindings_json(table, now=1000.0)
    assert [(b["home_address"], b["care_of_address"]) for b in result["bindings"]] == [
        ("10.1.0.9", "10.2.0.0"), ("10.1.0.9", "10.2.0.1"), ("10.1.0.10", "10.2.0.1"),
    ]


def test_stats_json_of_fresh_counters_shows_the_always_present_drops() -> None:
    assert stats_json(Counters()) == {
        "counters": {
            "requests_received": 0, "accepted": 0, "denied": {},
            "dropped": {"malformed": 0, "no_sa": 0, "unknown_extension": 0}, "relayed": 0, "renewals": 0,
        }
    }


def test_stats_json_names_codes_as_strings_and_reasons_with_underscores() -> None:
    counters = Counters(
        requests_received=20, accepted=9,
        denied=Counter({133: 2, 131: 1, 129: 0}),
        dropped=Counter({"unknown-extension": 3, "no-auth": 1, "fa-ha-without-sa": 2, "malformed": 1}),
    )
    counters_json = stats_json(counters, relayed=4)["counters"]
    assert list(counters_json["denied"].items()) == [("131", 1), ("133", 2)]
    assert list(counters_json["dropped"].items()) == [
        ("malformed", 1), ("no_sa", 0), ("unknown_extension", 3), ("fa_ha_without_sa", 2), ("no_auth", 1),
    ]
    assert counters_json["relayed"] == 4


def test_visitor_json_shape_and_state() -> None:
    entry = visitor_json(
        home_address=HOME, home_agent=IPv4Address("10.1.0.1"), care_of_address=CARE_OF,
        link_address="02:00:00:00:00:0A", state="active", lifetime_granted=600, lifetime_remaining=598,
        flags=RequestFlags.T,
    )
    assert entry == {
        "home_address": "10.1.0.10", "home_agent": "10.1.0.1", "care_of_address": "10.2.0.1",
        "link_address": "02:00:00:00:00:0a", "state": "active", "lifetime_granted": 600,
        "lifetime_remaining": 598, "flags": "T", "udp_tunnel": False,
    }
    assert visitor_json(home_address=HOME, home_agent=IPv4Address("10.1.0.1"), care_of_address=CARE_OF,
                        link_address="02:00:00:00:00:0A", state="active", lifetime_granted=600,
                        lifetime_remaining=598, flags=RequestFlags.T, udp_tunnel=True)["udp_tunnel"] is True
    with pytest.raises(ValueError, match="pending or active"):
        visitor_json(
            home_address=HOME, home_agent=HOME, care_of_address=CARE_OF, link_address="", state="gone",  # type: ignore[arg-type]
            lifetime_granted=1, lifetime_remaining=1, flags=RequestFlags(0),
        )


def test_status_json_of_a_mobile_node() -> None:
    assert status_json(
        role="mobile-node", instance="mn", uptime=59.99, backend="userspace", location="away",
        agent=IPv4Address("10.2.0.1"), care_of_address=IPv4Address("10.2.0.1"), lifetime_remaining=300,
        registered=True,
    ) == {
        "role": "mobile-node", "instance": "mn", "uptime": 59, "backend": "userspace", "location": "away",
        "agent": "10.2.0.1", "care_of_address": "10.2.0.1", "lifetime_remaining": 300, "registered": True,
    }
