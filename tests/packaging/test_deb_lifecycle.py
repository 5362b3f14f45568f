"""The .deb's life on a host without systemd as PID 1: install, upgrade, remove, purge.

Removal runs in a throwaway network namespace holding what a crashed mipd leaves behind (its TUN device,
a protocol-77 route, a rule in its priorities) next to things that are not mipd's: the prerm's
``mipd cleanup`` must take the former and leave the latter. The systemd branches of the same scripts run
under a real systemd in tests/system.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from tests.support.package import PACKAGE, deb_installed, dpkg, package_status, scratch_netns
from tests.support.tools import tool

STATE = Path("/var/lib/mip")
RUNTIME = Path("/run/mip")
CONFIGURATION = Path("/etc/mip")
SHIPPED = [Path("/usr/lib/mipd"), Path("/usr/bin/mipd"), Path("/usr/bin/mipctl"),
           Path("/lib/systemd/system/mipd@.service"), Path("/lib/systemd/system/mip.target")]


def ip_json(netns: str, *args: str) -> list[dict[str, object]]:
    out = subprocess.run([tool("ip"), "-n", netns, "-j", *args], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return list(json.loads(out or "[]"))


def ip(netns: str, *args: str) -> None:
    subprocess.run([tool("ip"), "-n", netns, *args], check=True, capture_output=True, timeout=30)


def leave_crash_leftovers(netns: str) -> None:
    ip(netns, "tuntap", "add", "mip0", "mode", "tun")
    ip(netns, "link", "set", "mip0", "up")
    ip(netns, "route", "add", "10.1.0.10/32", "dev", "mip0", "proto", "77")
    ip(netns, "rule", "add", "priority", "7700", "from", "10.1.0.10", "lookup", "770001", "proto", "77")
    # Not mipd's: another TUN device with a static route, a rule of someone else's.
    ip(netns, "tuntap", "add", "vpn0", "mode", "tun")
    ip(netns, "link", "set", "vpn0", "up")
    ip(netns, "route", "add", "10.9.0.0/24", "dev", "vpn0", "proto", "static")
    ip(netns, "rule", "add", "priority", "1000", "lookup", "100")


def test_install_upgrade_remove_purge_without_systemd(deb_file: Path) -> None:
    assert not Path("/run/systemd/system").exists(), "this test needs a host without systemd as PID 1"
    configuration_existed = CONFIGURATION.exists()
    user_profile = CONFIGURATION / f"test-{uuid.uuid4().hex[:8]}.yaml"
    try:
        with deb_installed(deb_file):
            assert package_status() == "installed"
            # A reinstallation runs the upgrade path (postinst configure with the old version as $2).
            dpkg("--install", str(deb_file))
            assert package_status() == "installed"

            STATE.mkdir(mode=0o700, exist_ok=True)
            (STATE / "home-agent.db").write_bytes(b"state")
            RUNTIME.mkdir(exist_ok=True)
            user_profile.write_text("role: home-agent\n")

            with scratch_netns() as netns:
                leave_crash_leftovers(netns)
                removal = dpkg("--remove", PACKAGE, netns=netns)
                links = {str(link["ifname"]) for link in ip_json(netns, "link", "show")}
                routes = ip_json(netns, "route", "show", "table", "all")
                rules = ip_json(netns, "rule", "show")
            assert "removed link mip0" in removal.stdout, removal.stdout
            assert "mip0" not in links and "vpn0" in links
            assert not [route for route in routes if route.get("protocol") in ("77", 77)], routes
            assert [route for route in routes if route.get("dst") == "10.9.0.0/24"], routes
            priorities = {int(str(rule["priority"])) for rule in rules}
            assert 7700 not in priorities and 1000 in priorities

            assert package_status() == "config-files"
            assert not [path for path in SHIPPED if path.exists() or path.is_symlink()]
            assert (STATE / "home-agent.db").exists(), "removing (not purging) keeps the state"

            with scratch_netns() as netns:
                dpkg("--purge", PACKAGE, netns=netns)
            assert package_status() in ("", "not-installed")
            assert not STATE.exists() and not RUNTIME.exists()
            assert user_profile.exists(), "purging leaves the administrator's files in /etc/mip"
    finally:
        user_profile.unlink(missing_ok=True)
        if not configuration_existed:
            for directory in (CONFIGURATION / "keys", CONFIGURATION):
                if directory.is_dir() and not any(directory.iterdir()):
                    directory.rmdir()
