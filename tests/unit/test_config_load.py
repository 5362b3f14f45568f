"""``load_profile`` and the conversion to the engine's settings, on real files."""

from __future__ import annotations

import secrets
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from mipd.config import (
    ForeignAgentProfile,
    HomeAgentProfile,
    MobileNodeProfile,
    ProfileError,
    foreign_agent_settings,
    home_agent_settings,
    load_profile,
    mobile_node_settings,
)
from mipd.core.security import ReplayProtection, ReverseTunneling, SecurityAssociation
from mipd.core.wire.auth import Algorithm
from mipd.core.wire.tunnel import Encapsulation

KEY = "00112233445566778899aabbccddeeff"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


HOME_AGENT = f"""\
role: home-agent
interface: eth1
address: 10.1.0.1
home_network: 10.1.0.0/16
max_lifetime: 600
max_bindings_per_node: 3
reverse_tunneling: required
replay_window: 2.5
mobile_nodes:
  - {{home_address: 10.1.0.10, spi: 256, key: {KEY}, algorithm: keyed-md5, replay: nonce}}
mobile_nodes_file: nodes/list.txt
foreign_agents:
  - {{address: 10.2.0.1, spi: 1000, key_file: keys/fa.key}}
  - {{address: 10.2.0.1, spi: 1001, key: {KEY}}}
  - {{address: 10.3.0.1, spi: 1002, key: {KEY}}}
tunnel: {{backend: userspace, encapsulations: [ipip, gre, minimal]}}
state_directory: state
"""


@pytest.fixture
def home_agent(tmp_path: Path) -> Path:
    (tmp_path / "nodes").mkdir()
    (tmp_path / "keys").mkdir()
    write(tmp_path / "keys" / "fa.key", "ff" * 16 + "\n")
    write(tmp_path / "nodes" / "list.txt", f"10.1.0.11 300 {'aa' * 20} hmac-md5 nonce\n10.1.0.12 301 {'bb' * 16}\n")
    return write(tmp_path / "ha.yaml", HOME_AGENT)


def test_a_home_agent_profile_loads_with_defaults_and_resolved_paths(home_agent: Path) -> None:
    profile = load_profile(home_agent)
    assert isinstance(profile, HomeAgentProfile)
    assert profile.instance == "ha"
    assert profile.control_socket == Path("/run/mip/ha.sock")
    assert profile.state_directory == home_agent.parent / "state"
    assert profile.mobile_nodes_file == home_agent.parent / "nodes" / "list.txt"
    assert (profile.log_level, profile.advertise, profile.advertisement_interval) == ("info", True, 1.0)
    assert profile.foreign_agents[0].secret() == b"\xff" * 16


def test_the_instance_name_sets_the_default_control_socket(home_agent: Path) -> None:
    assert load_profile(home_agent, instance="site-a").control_socket == Path("/run/mip/site-a.sock")


def test_home_agent_settings_merge_both_node_lists_and_group_agents(home_agent: Path) -> None:
    profile = load_profile(home_agent)
    assert isinstance(profile, HomeAgentProfile)
    settings = home_agent_settings(profile)
    assert settings.address == IPv4Address("10.1.0.1")
    assert settings.home_network == IPv4Network("10.1.0.0/16")
    assert settings.mobile_nodes == {
        256: SecurityAssociation(256, bytes.fromhex(KEY), IPv4Address("10.1.0.10"), Algorithm.KEYED_MD5,
                                 ReplayProtection.NONCE),
        300: SecurityAssociation(300, b"\xaa" * 20, IPv4Address("10.1.0.11"), Algorithm.HMAC_MD5,
                                 ReplayProtection.NONCE),
        301: SecurityAssociation(301, b"\xbb" * 16, IPv4Address("10.1.0.12")),
    }
    assert {a: set(by_spi) for a, by_spi in settings.foreign_agents.items()} == {
        IPv4Address("10.2.0.1"): {1000, 1001}, IPv4Address("10.3.0.1"): {1002}}
    assert settings.foreign_agents[IPv4Address("10.2.0.1")][1000].key == b"\xff" * 16
    assert (settings.max_lifetime, settings.max_bindings_per_node, settings.replay_window) == (600, 3, 2.5)
    assert settings.reverse_tunneling is ReverseTunneling.REQUIRED
    assert settings.encapsulations == frozenset(Encapsulation)


def test_default_settings_match_the_documented_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "ha.yaml", "role: home-agent\ninterface: eth1\naddress: 10.1.0.1\n"
                                       "home_network: 10.1.0.0/24\n", 0o644)
    profile = load_profile(path)
    assert isinstance(profile, HomeAgentProfile)
    settings = home_agent_settings(profile)
    assert (settings.max_lifetime, settings.replay_window, settings.max_bindings_per_node) == (1800, 7.0, 1)
    assert settings.reverse_tunneling is ReverseTunneling.ALLOWED
    assert settings.encapsulations == frozenset({Encapsulation.IPIP})
    assert settings.mobile_nodes == {}
    assert profile.state_directory == Path("/var/lib/mip")


def test_mobile_networks_become_the_prefix_table_by_home_address(tmp_path: Path) -> None:
    # RFC 5177 6.2.2: the prefixes each mobile router may serve; nodes without them are no routers.
    path = write(tmp_path / "ha.yaml", "role: home-agent\ninterface: eth1\naddress: 10.1.0.1\n"
                 f"home_network: 10.1.0.0/24\nmobile_nodes:\n  - {{home_address: 10.1.0.10, spi: 256, key: {KEY},\n"
                 "     mobile_networks: [192.168.50.0/24, 192.168.51.0/28]}\n"
                 f"  - {{home_address: 10.1.0.11, spi: 257, key: {KEY}}}\n")
    profile = load_profile(path)
    assert isinstance(profile, HomeAgentProfile)
    settings = home_agent_settings(profile)
    assert settings.mobile_networks == {
        IPv4Address("10.1.0.10"): (IPv4Network("192.168.50.0/24"), IPv4Network("192.168.51.0/28"))}


def test_foreign_agent_and_mobile_node_defaults(tmp_path: Path) -> None:
    fa = load_profile(write(tmp_path / "fa.yaml", "role: foreign-agent\ninterface: eth2\ncare_of_address: 10.2.0.1\n"))
    assert isinstance(fa, ForeignAgentProfile)
    assert (fa.max_lifetime, fa.max_visitors, fa.max_pending_per_node, fa.pending_timeout) == (600, 10000, 5, 7.0)
    assert (fa.advertisement_address, fa.registration_required, fa.tunnel.backend) == ("224.0.0.1", False, "auto")
    mn = load_profile(write(tmp_path / "mn.yaml", (
        f"role: mobile-node\ninterface: wlan0\nhome_address: 10.1.0.10\nhome_network: 10.1.0.0/24\n"
        f"home_agent: 10.1.0.1\nspi: 256\nkey: {KEY}\ncolocated_address: 10.2.0.50/24\n")))
    assert isinstance(mn, MobileNodeProfile)
    assert (mn.lifetime, mn.care_of, mn.reverse_tunneling, mn.deregister_on_stop) == (1800, "auto", False, True)
    assert mn.home_agent_association() == SecurityAssociation(256, bytes.fromhex(KEY), IPv4Address("10.1.0.10"))
    assert str(mn.colocated_address) == "10.2.0.50/24"


def test_problems_carry_path_line_and_yaml_path(tmp_path: Path) -> None:
    path = write(tmp_path / "mn.yaml",
                 "role: mobile-node\ninterface: wlan0\nlifetime: 0\ncolocated_address: 10.2.0.5\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    got = {(p.line, p.yaml_path) for p in caught.value.problems}
    assert {(3, "lifetime"), (4, "colocated_address"), (1, "home_address"), (1, "spi")} <= got
    assert all(p.path == str(path) for p in caught.value.problems)


def test_100000_nodes_load_from_a_mobile_nodes_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = [secrets.token_hex(16) for _ in range(100_000)]
    base = int(IPv4Address("10.0.0.2"))
    lines = [f"{IPv4Address(base + i)} {256 + i} {key}" for i, key in enumerate(keys)]
    lines[7] += " keyed-md5 nonce"
    write(tmp_path / "nodes.txt", "# a large site\n" + "\n".join(lines) + "\n")
    path = write(tmp_path / "ha.yaml", "role: home-agent\ninterface: eth1\naddress: 10.0.0.1\n"
                                       "home_network: 10.0.0.0/8\nmobile_nodes_file: nodes.txt\n")
    start = time.perf_counter()
    profile = load_profile(path)
    loaded = time.perf_counter()
    assert isinstance(profile, HomeAgentProfile)
    settings = home_agent_settings(profile)
    converted = time.perf_counter()
    with capsys.disabled():
        print(f"\n100,000-node mobile_nodes_file: load_profile {loaded - start:.3f} s, "
              f"home_agent_settings {converted - loaded:.3f} s")
    assert len(settings.mobile_nodes) == 100_000
    assert settings.mobile_nodes[256] == SecurityAssociation(256, bytes.fromhex(keys[0]), IPv4Address("10.0.0.2"))
    assert settings.mobile_nodes[263] == SecurityAssociation(263, bytes.fromhex(keys[7]), IPv4Address("10.0.0.9"),
                                                             Algorithm.KEYED_MD5, ReplayProtection.NONCE)
    last = settings.mobile_nodes[256 + 99_999]
    assert (last.peer, last.key) == (IPv4Address(base + 99_999), bytes.fromhex(keys[-1]))
    assert profile.file_nodes[0][0] == 2  # line numbers are kept, after the comment line


def test_foreign_agent_settings_group_associations_by_peer(tmp_path: Path) -> None:
    ha_key, mn_key = secrets.token_hex(16), secrets.token_hex(16)
    path = write(tmp_path / "fa.yaml", f"""\
role: foreign-agent
interface: eth0
care_of_address: 10.2.0.2
max_lifetime: 300
reverse_tunneling: required
max_pending_per_node: 3
pending_timeout: 5
home_agents:
  - {{address: 10.1.0.1, spi: 500, key: "{ha_key}"}}
  - {{address: 10.1.0.1, spi: 501, key: "{ha_key}", algorithm: keyed-md5}}
mobile_nodes:
  - {{home_address: 10.1.0.10, spi: 600, key: "{mn_key}"}}
tunnel: {{backend: userspace, encapsulations: [ipip, minimal]}}
""")
    profile = load_profile(path)
    assert isinstance(profile, ForeignAgentProfile)
    settings = foreign_agent_settings(profile, frozenset({IPv4Address("192.0.2.1")}))
    assert settings.addresses == {IPv4Address("10.2.0.2"), IPv4Address("192.0.2.1")}
    assert sorted(settings.home_agents[IPv4Address("10.1.0.1")]) == [500, 501]
    assert settings.home_agents[IPv4Address("10.1.0.1")][501].algorithm is Algorithm.KEYED_MD5
    assert settings.mobile_nodes[IPv4Address("10.1.0.10")][600].key == bytes.fromhex(mn_key)
    assert (settings.max_lifetime, settings.reverse_tunneling, settings.max_pending_per_node,
            settings.pending_timeout) == (300, ReverseTunneling.REQUIRED, 3, 5.0)
    assert settings.encapsulations == {Encapsulation.IPIP, Encapsulation.MINIMAL}


@pytest.mark.parametrize("written", ["off", '"off"'])
def test_reverse_tunneling_off_unquoted_is_the_word_not_false(tmp_path: Path, written: str) -> None:
    """YAML 1.1 reads an unquoted off as false; mip.yaml(5)'s value is the word."""
    path = write(tmp_path / "fa.yaml", f"role: foreign-agent\ninterface: eth0\ncare_of_address: 10.2.0.2\n"
                                       f"reverse_tunneling: {written}\n")
    profile = load_profile(path)
    assert isinstance(profile, ForeignAgentProfile) and profile.reverse_tunneling is ReverseTunneling.OFF
    bad = write(tmp_path / "bad.yaml", "role: foreign-agent\ninterface: eth0\ncare_of_address: 10.2.0.2\n"
                                       "reverse_tunneling: yes\n")
    with pytest.raises(ProfileError):
        load_profile(bad)  # true is not a policy


def test_mobile_node_settings(tmp_path: Path) -> None:
    key, fa_key = secrets.token_hex(16), secrets.token_hex(16)
    path = write(tmp_path / "mn.yaml", f"""\
role: mobile-node
interface: eth0
home_address: 10.1.0.10
home_network: 10.1.0.0/24
home_agent: 10.1.0.1
spi: 256
key: "{key}"
replay: nonce
lifetime: 600
care_of: colocated
colocated_address: 10.9.0.5/24
reverse_tunneling: true
deregister_on_stop: false
foreign_agents:
  - {{address: 10.2.0.1, spi: 700, key: "{fa_key}"}}
""")
    profile = load_profile(path)
    assert isinstance(profile, MobileNodeProfile)
    settings = mobile_node_settings(profile)
    assert (settings.sa.spi, settings.sa.key, settings.sa.peer, settings.sa.replay) == \
        (256, bytes.fromhex(key), IPv4Address("10.1.0.10"), ReplayProtection.NONCE)
    assert (settings.lifetime, settings.care_of, str(settings.colocated_address), settings.reverse_tunneling,
            settings.deregister_on_stop) == (600, "colocated", "10.9.0.5/24", True, False)
    assert settings.foreign_agents[IPv4Address("10.2.0.1")].key == bytes.fromhex(fa_key)


def test_nat_traversal_keys_default_and_read_the_word_off(tmp_path: Path) -> None:
    """mip.yaml(5): RFC 3519 policies of the three roles; keepalive_interval is 10 to 65535 seconds."""
    ha_text = "role: home-agent\ninterface: eth1\naddress: 10.1.0.1\nhome_network: 10.1.0.0/24\n"
    ha = load_profile(write(tmp_path / "ha.yaml", ha_text))
    assert isinstance(ha, HomeAgentProfile) and (ha.nat_traversal, ha.keepalive_interval) == ("allowed", 110)
    ha = load_profile(write(tmp_path / "ha2.yaml", ha_text + "nat_traversal: off\nkeepalive_interval: 10\n"))
    assert isinstance(ha, HomeAgentProfile) and (ha.nat_traversal, ha.keepalive_interval) == ("off", 10)
    for bad in ("keepalive_interval: 9\n", "keepalive_interval: 65536\n", "nat_traversal: force\n"):
        with pytest.raises(ProfileError):
            load_profile(write(tmp_path / "bad.yaml", ha_text + bad))
    fa_text = "role: foreign-agent\ninterface: eth2\ncare_of_address: 10.2.0.1\n"
    fa = load_profile(write(tmp_path / "fa.yaml", fa_text))
    assert isinstance(fa, ForeignAgentProfile) and fa.nat_traversal == "allowed"
    fa = load_profile(write(tmp_path / "fa2.yaml", fa_text + "nat_traversal: off\n"))
    assert isinstance(fa, ForeignAgentProfile) and fa.nat_traversal == "off"
    with pytest.raises(ProfileError):
        load_profile(write(tmp_path / "bad.yaml", fa_text + "nat_traversal: required\n"))
    mn_text = (f"role: mobile-node\ninterface: wlan0\nhome_address: 10.1.0.10\nhome_network: 10.1.0.0/24\n"
               f"home_agent: 10.1.0.1\nspi: 256\nkey: {KEY}\n")
    for written, expected in (("", "auto"), ("nat_traversal: force\n", "force"), ("nat_traversal: off\n", "off")):
        mn = load_profile(write(tmp_path / "mn.yaml", mn_text + written))
        assert isinstance(mn, MobileNodeProfile) and mn.nat_traversal == expected
    with pytest.raises(ProfileError):
        load_profile(write(tmp_path / "bad.yaml", mn_text + "nat_traversal: allowed\n"))
