"""The relay socket for real: replies from a home agent, and ICMP errors turned into (payload, type, code).

    fa (10.2.0.1) --fa0-- router (10.2.0.254 | 10.3.0.254) --ha0-- ha (10.3.0.10)

The RelaySocket runs in ``fa`` (tests/support/foreign_link_driver.py). The router forwards, has
``unreachable 10.9.1.0/24`` and ``prohibit 10.9.2.0/24`` routes and no route at all for 10.9.3.0/24,
so it answers datagrams to those with ICMP host unreachable (3/1), communication administratively
prohibited (3/13) and network unreachable (3/0). ``ha`` has nothing on port 4340: port unreachable (3/3).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.foreign_link import LinkDriver
from tests.support.netns import Topology, ip, netns_socket, topology
from tests.support.tools import tool

FA, ROUTER_FA, ROUTER_HA, HA = "10.2.0.1", "10.2.0.254", "10.3.0.254", "10.3.0.10"


def enable_forwarding(ns: str) -> None:
    subprocess.run([tool("ip"), "netns", "exec", ns, sys.executable, "-c",
                    "open('/proc/sys/net/ipv4/ip_forward', 'w').write('1')"],
                   check=True, capture_output=True, timeout=30)


@pytest.fixture
def relay() -> Iterator[tuple[Topology, LinkDriver, int]]:
    with topology() as topo:
        topo.link("fa", "fa0", f"{FA}/24", "router", "r0", f"{ROUTER_FA}/24")
        topo.link("ha", "ha0", f"{HA}/24", "router", "r1", f"{ROUTER_HA}/24")
        fa, ha, router = topo.ns("fa"), topo.ns("ha"), topo.ns("router")
        ip("-n", fa, "route", "add", "default", "via", ROUTER_FA)
        ip("-n", ha, "route", "add", "default", "via", ROUTER_HA)
        ip("-n", router, "route", "add", "unreachable", "10.9.1.0/24")
        ip("-n", router, "route", "add", "prohibit", "10.9.2.0/24")
        enable_forwarding(router)
        driver = LinkDriver(fa)
        try:
            port = driver("relay", care_of_address=FA)["port"]
            yield topo, driver, port
        finally:
            driver.stop()


def test_a_reply_comes_back_to_the_variable_source_port(relay: tuple[Topology, LinkDriver, int]) -> None:
    topo, driver, port = relay
    assert port != 0  # RFC 5944 3.7.2.2: the relayed request's source port is variable, chosen by the kernel
    with netns_socket(topo.ns("ha"), bind=(HA, 434)) as home_agent:
        home_agent.settimeout(5)
        driver("send", payload=b"relayed request".hex(), destination=HA, destination_port=434)
        request, (source, source_port) = home_agent.recvfrom(65535)
        assert (request, source, source_port) == (b"relayed request", FA, port)
        home_agent.sendto(b"reply one", (source, source_port))
        home_agent.sendto(b"reply two", (source, source_port))
        replies = driver.wait_events("reply", 2)
    assert [bytes.fromhex(r["payload"]) for r in replies] == [b"reply one", b"reply two"]
    assert {(r["source"], r["source_port"], r["destination"], r["destination_port"]) for r in replies} == \
        {(HA, 434, FA, port)}
    assert driver("counters")["relay"] == {"sent": 1, "replies": 2}


@pytest.mark.parametrize(("destination", "port", "code"), [
    (HA, 4340, 3),  # port unreachable, from the host itself
    ("10.9.1.1", 434, 1),  # host unreachable: an "unreachable" route at the router
    ("10.9.2.1", 434, 13),  # administratively prohibited: a "prohibit" route
    ("10.9.3.1", 434, 0),  # network unreachable: no route at all at the router
], ids=["port", "host", "prohibited", "net"])
def test_icmp_errors_arrive_with_the_payload_type_and_code(relay: tuple[Topology, LinkDriver, int],
                                                           destination: str, port: int, code: int) -> None:
    _, driver, _ = relay
    payload = bytes(range(40))  # as long as a registration request's fixed part and then some
    driver("send", payload=payload.hex(), destination=destination, destination_port=port)
    (error,) = driver.wait_events("icmp", 1)
    assert (bytes.fromhex(error["payload"]), error["type"], error["code"]) == (payload, 3, code)
    # The error made the socket readable; nothing else came of it: no reply, no error counted.
    counters = driver("counters")["relay"]
    assert counters == {"sent": 1, "icmp_errors": 1}
    assert [e for e in driver.events if e["event"] == "reply"] == []


def test_a_local_routing_failure_is_counted_not_raised(relay: tuple[Topology, LinkDriver, int]) -> None:
    topo, driver, _ = relay
    ip("-n", topo.ns("fa"), "route", "add", "unreachable", "10.9.4.0/24")
    driver("send", payload=b"x".hex(), destination="10.9.4.1", destination_port=434)
    assert driver("counters")["relay"] == {"send_errors": 1}
    driver("send", payload=b"y".hex(), destination=HA, destination_port=4340)  # and the socket still works
    assert len(driver.wait_events("icmp", 1)) == 1
