"""The installed package under a real systemd: ``mipd@<instance>`` for each role, as an operator runs it.

The .deb is built once and installed on the host (tests/support/package.py). Three systemd instances boot,
each as PID 1 of its own PID + mount + network namespace (tests/support/systemd_boot.py): one runs a home agent,
one a foreign agent, one a mobile node, each from ``/etc/mip/<instance>.yaml`` with the unit exactly as
installed. Their networks are wired like a small site (bridges in a switch namespace):

    cn 10.1.0.2 ---- br-home ---- home0 10.1.0.1 [HA] wan0 10.4.0.1 ---- 10.4.0.2 wan0 [FA] visit0 10.2.0.1 -- br-v1
    [MN] eth0 10.1.0.10 (home address): a port of br-home, then of br-v1

The tests run in order: start and READY, a registration through the foreign agent, the journal entries,
``systemctl reload`` (a good profile, a bad one, a key file readable by others), the watchdog, an upgrade's
try-restart, ``systemctl stop`` leaving no tunnel, route or rule, and removal stopping a running instance.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import Topology
from tests.support.package import installed_deb  # noqa: F401 - the fixture
from tests.support.roaming import ip, port
from tests.support.systemd_boot import Systemd, booted
from tests.support.tools import tool

HA, CN, MN, FA = "10.1.0.1", "10.1.0.2", "10.1.0.10", "10.2.0.1"
ETC, KEYS, STATE = Path("/etc/mip"), Path("/etc/mip/keys"), Path("/var/lib/mip")
ROLES = ("ha", "fa", "mn")


def _secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


@dataclass
class Site:
    topo: Topology
    machines: dict[str, Systemd]
    instances: dict[str, str]  # role -> instance name
    deb: Path

    def unit(self, role: str) -> str:
        return f"mipd@{self.instances[role]}.service"

    def profile(self, role: str) -> Path:
        return ETC / f"{self.instances[role]}.yaml"

    def mipctl(self, role: str, *args: str) -> Any:
        out = self.machines[role].run(["/usr/bin/mipctl", "--instance", self.instances[role], *args, "--json"])
        return json.loads(out.stdout)

    def state(self, role: str) -> dict[str, str]:
        return self.machines[role].show(self.unit(role), "ActiveState", "SubState", "MainPID", "StatusText",
                                        "NRestarts", "Result")

    def events(self, role: str, event: str) -> list[dict[str, Any]]:
        return self.machines[role].journal("-u", self.unit(role), f"MIP_EVENT={event}")

    def start(self, role: str) -> None:
        """``systemctl start``; with the unit's journal in the error if it fails."""
        out = self.machines[role].systemctl("start", self.unit(role), check=False)
        if out.returncode:
            log = self.machines[role].run([tool("journalctl"), "--no-pager", "-u", self.unit(role)], check=False)
            raise AssertionError(f"{self.unit(role)} did not start: {out.stderr}\n{log.stdout[-4000:]}")

    def wait_for(self, what: str, condition: Any, timeout: float = 30) -> None:
        self.machines["ha"].wait(condition, timeout, what)

    def mipd_owned(self, role: str) -> list[str]:
        """Links, routes and rules of mipd's in the role's network namespace (what a stop must remove)."""
        ns = self.topo.ns(role)
        run = lambda *a: subprocess.run([tool("ip"), "-n", ns, *a], capture_output=True, text=True,  # noqa: E731
                                        check=True).stdout
        links = [line for line in run("-o", "link").splitlines() if re.search(r": mip\w*[:@]", line)]
        routes = run("route", "show", "table", "all", "proto", "77").splitlines()
        rules = [line for line in run("rule").splitlines() if re.match(r"7[67]\d\d:", line)]
        return links + routes + rules


def _profiles(instances: dict[str, str]) -> dict[str, str]:
    key = {name: KEYS / f"{instances['ha']}-{name}.key" for name in ("mn-ha", "fa-ha")}
    for path in key.values():
        _secret(path, os.urandom(16).hex() + "\n")
    adverts = "advertisement_interval: 0.5\nadvertisement_lifetime: 3\n"
    return {
        "ha": f"role: home-agent\ninterface: home0\naddress: {HA}\nhome_network: 10.1.0.0/24\n{adverts}"
              f"mobile_nodes:\n  - {{home_address: {MN}, spi: 256, key_file: {key['mn-ha']}}}\n"
              f"foreign_agents:\n  - {{address: {FA}, spi: 300, key_file: {key['fa-ha']}}}\n",
        "fa": f"role: foreign-agent\ninterface: visit0\ncare_of_address: {FA}\n{adverts}"
              f"home_agents:\n  - {{address: {HA}, spi: 300, key_file: {key['fa-ha']}}}\n",
        "mn": f"role: mobile-node\ninterface: eth0\nhome_address: {MN}\nhome_network: 10.1.0.0/24\n"
              f"home_agent: {HA}\nspi: 256\nkey_file: {key['mn-ha']}\nlifetime: 300\n",
    }


def _wire(topo: Topology) -> None:
    sw = topo.ns("sw")
    for bridge in ("br-home", "br-v1"):
        ip("-n", sw, "link", "add", bridge, "type", "bridge")
        ip("-n", sw, "link", "set", bridge, "up")
    port(topo, "cn", "eth0", f"{CN}/24", "br-home")
    port(topo, "ha", "home0", f"{HA}/24", "br-home")
    topo.link("ha", "wan0", "10.4.0.1/24", "fa", "wan0", "10.4.0.2/24")
    port(topo, "fa", "visit0", f"{FA}/24", "br-v1")
    port(topo, "mn", "eth0", f"{MN}/24", "br-home", sw_name="mnp")
    for ns, gateway in (("cn", HA), ("mn", HA), ("fa", "10.4.0.1")):
        ip("-n", topo.ns(ns), "route", "add", "default", "via", gateway)
    ip("-n", topo.ns("ha"), "route", "add", "10.2.0.0/24", "via", "10.4.0.2")


@pytest.fixture(scope="module")
def site(installed_deb: Path) -> Iterator[Site]:  # noqa: F811 - the fixture imported above
    topo = Topology()
    instances = {role: f"{topo.prefix}-{role}" for role in ROLES}
    files = [ETC / f"{name}.yaml" for name in instances.values()]
    KEYS.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        for role, text in _profiles(instances).items():
            _secret(ETC / f"{instances[role]}.yaml", text)
        with booted(*(f"{topo.prefix}-{role}" for role in ROLES)) as machines:
            topo.namespaces += [m.name for m in machines.values()]
            by_role = {role: machines[f"{topo.prefix}-{role}"] for role in ROLES}
            _wire(topo)
            yield Site(topo, by_role, instances, installed_deb)
    finally:
        topo.close()
        for path in [*files, *KEYS.glob(f"{instances['ha']}-*.key")]:
            path.unlink(missing_ok=True)
        for name in instances.values():
            for path in STATE.glob(f"{name}.db*"):
                path.unlink()


def test_units_verify_and_the_exposure_is_at_most_3(site: Site) -> None:
    units = ["/lib/systemd/system/mipd@.service", "/lib/systemd/system/mip.target"]
    out = site.machines["ha"].run([tool("systemd-analyze"), "verify", *units], check=False)
    assert out.returncode == 0 and not out.stderr.strip(), out.stdout + out.stderr
    out = site.machines["ha"].run([tool("systemd-analyze"), "security", site.unit("ha")], check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    print(f"systemd-analyze security {site.unit('ha')}: exposure {match[1]}")
    assert float(match[1]) <= 3.0


def test_each_role_starts_and_is_ready(site: Site) -> None:
    for role, status in (("ha", "0 bindings, backend userspace"), ("fa", "0 visitors, backend userspace"),
                         ("mn", "not registered")):
        started = time.monotonic()
        site.start(role)  # Type=notify: returns once READY=1 came
        state = site.state(role)
        assert state["ActiveState"] == "active" and state["SubState"] == "running", state
        assert status in state["StatusText"], state
        print(f"{site.unit(role)}: start to READY {time.monotonic() - started:.2f} s, status {state['StatusText']!r}")
        [entry] = site.events(role, "daemon.started")
        assert entry["SYSLOG_IDENTIFIER"] == "mipd" and entry["MIP_INSTANCE"] == site.instances[role]
        assert entry["_SYSTEMD_UNIT"] == site.unit(role) and "backend" in entry["MIP_REASON"]
    site.wait_for("the node to find itself at home", lambda: site.mipctl("mn", "status")["location"] == "home")
    assert site.state("mn")["StatusText"] == "home, not registered"  # STATUS= follows the node


def test_a_registration_through_the_foreign_agent_is_journalled(site: Site) -> None:
    ip("-n", site.topo.ns("sw"), "link", "set", "mnp", "down")
    ip("-n", site.topo.ns("sw"), "link", "set", "mnp", "master", "br-v1")
    ip("-n", site.topo.ns("sw"), "link", "set", "mnp", "up")
    site.wait_for("the node to register through the foreign agent",
                  lambda: site.mipctl("mn", "status").get("care_of_address") == FA
                  and site.mipctl("mn", "status").get("registered"))
    [binding] = site.mipctl("ha", "bindings")["bindings"]
    assert binding["home_address"] == MN and binding["care_of_address"] == FA
    [visitor] = site.mipctl("fa", "visitors")["visitors"]
    assert visitor["home_address"] == MN and visitor["state"] == "active"
    [added] = site.events("ha", "binding.added")
    assert added["MIP_HOME_ADDRESS"] == MN and added["MIP_CARE_OF_ADDRESS"] == FA
    assert added["MIP_ROLE"] == "home-agent" and added["PRIORITY"] == "6"
    for output in ("short-iso", "verbose"):  # as an operator sees it
        journal = site.machines["ha"].run([tool("journalctl"), "--no-pager", "-u", site.unit("ha"),
                                           "MIP_EVENT=binding.added", "-o", output]).stdout
        print(f"journalctl -u {site.unit('ha')} MIP_EVENT=binding.added -o {output}:\n{journal}")
    assert [e["MIP_HOME_ADDRESS"] for e in site.events("fa", "visitor.added")] == [MN]
    assert site.events("mn", "registration.accepted")
    site.wait_for("the home agent's status to count the binding", lambda: site.state("ha")["StatusText"].startswith(
        "1 bindings"))
    ping = subprocess.run([tool("ip"), "netns", "exec", site.topo.ns("cn"), tool("ping"), "-c", "3", "-i", "0.2",
                           "-W", "2", MN], capture_output=True, text=True, timeout=30, check=False)
    assert ping.returncode == 0, ping.stdout  # the correspondent reaches the node through the tunnel


def refused_reload(site: Site, role: str) -> str:
    """``systemctl reload`` must fail and leave the instance running as it was; the rejection's reason."""
    before = site.state(role)
    rejected = len(site.events(role, "config.rejected"))
    out = site.machines[role].systemctl("reload", site.unit(role), check=False)
    assert out.returncode != 0, out.stdout  # the reload job fails: mipctl reload was refused
    after = site.state(role)
    assert after["ActiveState"] == "active" and after["MainPID"] == before["MainPID"], after
    events = site.events(role, "config.rejected")
    assert len(events) == rejected + 1
    return str(events[-1]["MIP_REASON"])


def test_reload_keeps_the_state_and_a_bad_profile_is_refused(site: Site) -> None:
    for role in ROLES:
        pid = site.state(role)["MainPID"]
        site.machines[role].systemctl("reload", site.unit(role))
        assert site.state(role)["MainPID"] == pid and site.state(role)["ActiveState"] == "active"
        assert site.events(role, "daemon.reloaded")
        good = site.profile(role).read_text()
        try:  # a profile that does not validate: the running one stays
            _secret(site.profile(role), good + "no_such_key: 1\n")
            assert "no_such_key" in refused_reload(site, role)
        finally:
            _secret(site.profile(role), good)
    key = KEYS / f"{site.instances['ha']}-mn-ha.key"
    try:  # a key file that has become readable by others: refused too
        key.chmod(0o644)
        assert "permissions" in refused_reload(site, "ha")
    finally:
        key.chmod(0o600)
    assert [b["home_address"] for b in site.mipctl("ha", "bindings")["bindings"]] == [MN]
    assert site.mipctl("fa", "visitors")["visitors"][0]["state"] == "active"
    assert site.mipctl("mn", "status")["registered"]


def test_the_watchdog_is_fed_by_the_event_loop(site: Site) -> None:
    machine = site.machines["fa"]
    dropin = Path("/run/systemd/system") / f"{site.unit('fa')}.d"
    machine.run(["sh", "-c", f"mkdir -p {dropin} && printf '[Service]\\nWatchdogSec=2\\n' > {dropin}/w.conf"])
    machine.systemctl("daemon-reload")
    machine.systemctl("restart", site.unit("fa"))
    before = machine.show(site.unit("fa"), "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    time.sleep(5)  # without a ping every second systemd would have killed it after 2 s
    state = site.state("fa") | machine.show(site.unit("fa"), "WatchdogTimestampMonotonic", "WatchdogUSec")
    assert state["ActiveState"] == "active" and state["NRestarts"] == "0", state
    assert state["WatchdogUSec"] == "2s" and int(state["WatchdogTimestampMonotonic"]) > int(before), state
    assert site.mipctl("fa", "visitors")["visitors"]  # restored from its state file
    machine.run(["rm", "-r", str(dropin)])
    machine.systemctl("daemon-reload")


def test_an_upgrade_try_restarts_the_running_instance(site: Site) -> None:
    machine = site.machines["ha"]
    pid = site.state("ha")["MainPID"]
    machine.run([tool("dpkg"), "-i", str(site.deb)], timeout=120)  # the upgrade path of the maintainer scripts
    site.wait_for("the restarted home agent", lambda: site.state("ha")["ActiveState"] == "active"
                  and site.state("ha")["MainPID"] not in (pid, "0"))
    [binding] = site.mipctl("ha", "bindings")["bindings"]
    assert binding["home_address"] == MN and binding["care_of_address"] == FA  # restored from the state file


def test_stop_leaves_no_tunnel_route_or_rule(site: Site) -> None:
    assert site.mipd_owned("ha") and site.mipd_owned("fa")  # something to remove
    for role in ("mn", "fa", "ha"):  # the node first: it deregisters on stop
        site.machines[role].systemctl("stop", site.unit(role))
        state = site.state(role)
        assert state["ActiveState"] == "inactive" and state["Result"] == "success", state
        assert site.mipd_owned(role) == [], role
        assert site.events(role, "daemon.stopping")
    [removed] = site.events("ha", "binding.removed")
    assert removed["MIP_REASON"] == "deregistered"


def test_removing_the_package_stops_running_instances(site: Site) -> None:
    machine = site.machines["ha"]
    site.start("ha")
    assert site.mipd_owned("ha")
    try:
        machine.run([tool("dpkg"), "-r", "mipd"], timeout=120)
        assert site.state("ha")["ActiveState"] in ("inactive", "failed")
        assert site.mipd_owned("ha") == []
        assert not Path("/usr/lib/mipd").exists()
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run([tool("dpkg"), "-i", str(site.deb)], capture_output=True, check=True, timeout=120)
