"""``mipd check`` on real files, run as the installed console script (mipd(8) check, mip.yaml(5))."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import venv_script

REPO = Path(__file__).resolve().parents[2]
KEY = "00112233445566778899aabbccddeeff"

HOME_AGENT = """\
role: home-agent
interface: eth1
address: 10.1.0.1
home_network: 10.1.0.0/24
mobile_nodes:
  - home_address: 10.1.0.10
    spi: 256
    key: {KEY}
""".replace("{KEY}", KEY)
FOREIGN_AGENT = """\
role: foreign-agent
interface: eth2
care_of_address: 10.2.0.1
home_agents:
  - address: 10.1.0.1
    spi: 1000
    key_file: fa-ha.key
"""
MOBILE_NODE = """\
role: mobile-node
interface: wlan0
home_address: 10.1.0.10
home_network: 10.1.0.0/24
home_agent: 10.1.0.1
spi: 256
key: {KEY}
""".replace("{KEY}", KEY)


def mipd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([venv_script("mipd"), *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=cwd)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text.replace("{KEY}", KEY))
    path.chmod(mode)
    return path


def ha(extra: str = "", replace: tuple[str, str] = ("", "")) -> str:
    return HOME_AGENT.replace(*replace) + extra


# (id, profile text, profile mode, other files {name: (text, mode)}, expected stdout lines)
# where {P} stands for the profile's path and {D} for its directory
# (a profile text of None: no profile file at all; a file name ending in / is made as a directory)
INVALID: list[tuple[str, str | None, int, dict[str, tuple[str, int]], list[str]]] = [
    ("wrong type", ha("max_lifetime: forever\n"), 0o600, {},
     ["{P}:9: max_lifetime: Input should be a valid integer (got 'forever')"]),
    ("boolean for a number", ha("max_bindings_per_node: true\n"), 0o600, {},
     ["{P}:9: max_bindings_per_node: Input should be a valid integer (got True)"]),
    ("lifetime out of range", ha("max_lifetime: 70000\n"), 0o600, {},
     ["{P}:9: max_lifetime: Input should be less than or equal to 65535 (got 70000)"]),
    ("bad address", ha(replace=("10.1.0.1\n", "10.1.0.300\n")), 0o600, {},
     ["{P}:3: address: Input is not a valid IPv4 address (got '10.1.0.300')"]),
    ("bad network", ha(replace=("10.1.0.0/24", "10.1.0.1/24")), 0o600, {},
     ["{P}:4: home_network: Input is not a valid IPv4 network (got '10.1.0.1/24')"]),
    ("address outside the home network", ha(replace=("\naddress: 10.1.0.1\n", "\naddress: 10.9.0.1\n")), 0o600, {},
     ["{P}:3: address: 10.9.0.1 is not inside home_network 10.1.0.0/24"]),
    ("home address outside the home network", ha(replace=("10.1.0.10", "10.1.0.255")), 0o600, {},
     ["{P}:6: mobile_nodes.0.home_address: 10.1.0.255 is the network or broadcast address of 10.1.0.0/24"]),
    ("short key", ha(replace=(KEY, KEY[:30])), 0o600, {},
     ["{P}:8: mobile_nodes.0.key: key is 15 bytes, at least 16 are required"]),
    ("non-hex key", ha(replace=(KEY, "g" + KEY[1:])), 0o600, {},
     ["{P}:8: mobile_nodes.0.key: key must be hexadecimal digits only"]),
    ("key YAML reads as a number", ha(replace=(KEY, "1" * 32)), 0o600, {},
     ["{P}:8: mobile_nodes.0.key: must be hexadecimal digits in a string (quote a key that YAML reads as a number)"]),
    ("SPI below 256", ha(replace=("spi: 256", "spi: 255")), 0o600, {},
     ["{P}:7: mobile_nodes.0.spi: Input should be greater than or equal to 256 (got 255)"]),
    ("duplicate SPIs", ha("foreign_agents:\n  - address: 10.2.0.1\n    spi: 256\n    key: {KEY}\n"), 0o600, {},
     ["{P}:11: foreign_agents.0.spi: SPI 256 is already used by mobile_nodes.0"]),
    ("duplicate home addresses", ha("  - home_address: 10.1.0.10\n    spi: 257\n    key: {KEY}\n"), 0o600, {},
     ["{P}:9: mobile_nodes.1.home_address: home address 10.1.0.10 is already given to mobile_nodes.0"]),
    ("both key and key_file", ha("    key_file: mn.key\n"), 0o600, {"mn.key": (KEY, 0o600)},
     ["{P}:8: mobile_nodes.0.key: give key or key_file, not both"]),
    ("neither key nor key_file", ha(replace=(f"    key: {KEY}\n", "")), 0o600, {},
     ["{P}:6: mobile_nodes.0.key: required key is missing: give key or key_file"]),
    ("unknown key at top level", ha("colour: blue\n"), 0o600, {},
     ["{P}:9: colour: unknown key"]),
    ("unknown key in an SA", ha("    colour: blue\n"), 0o600, {},
     ["{P}:9: mobile_nodes.0.colour: unknown key"]),
    ("missing key names its parent's line", ha(replace=("    spi: 256\n", "")), 0o600, {},
     ["{P}:6: mobile_nodes.0.spi: required key is missing"]),
    ("missing top-level key", ha(replace=("interface: eth1\n", "")), 0o600, {},
     ["{P}:1: interface: required key is missing"]),
    ("missing role", ha(replace=("role: home-agent\n", "")), 0o600, {},
     ["{P}:1: role: required key is missing (home-agent, foreign-agent, mobile-node)"]),
    ("unknown role", ha(replace=("home-agent", "router")), 0o600, {},
     ["{P}:1: role: must be one of home-agent, foreign-agent, mobile-node"]),
    ("YAML syntax error", ha("tunnel: {backend: kernel\n"), 0o600, {},
     ["{P}:10: syntax: expected ',' or '}', but got '<stream end>'"]),
    ("duplicate YAML key", ha("address: 10.1.0.2\n"), 0o600, {},
     ["{P}:9: address: duplicate key (first given on line 3)"]),
    ("group-readable profile with a key", ha(), 0o640, {},
     ["{P}:0: permissions: profile {P} has mode 0640; a file holding keys must not be readable or writable by group "
      "or others (chmod 600 {P})"]),
    ("world-readable key file", ha(replace=(f"key: {KEY}", "key_file: mn.key")), 0o644, {"mn.key": (KEY, 0o604)},
     ["{P}:0: permissions: key file {D}/mn.key has mode 0604; a file holding keys must not be readable or writable "
      "by group or others (chmod 600 {D}/mn.key)"]),
    ("missing key file", ha(replace=(f"key: {KEY}", "key_file: mn.key")), 0o644, {},
     ["{P}:8: mobile_nodes.0.key_file: cannot read key file {D}/mn.key: No such file or directory"]),
    ("minimal with the kernel backend", ha("tunnel: {backend: kernel, encapsulations: [ipip, minimal]}\n"), 0o600, {},
     ["{P}:9: tunnel.encapsulations.1: minimal encapsulation needs the userspace backend (Linux has none); "
      "use backend auto or userspace"]),
    ("ipip left out", ha("tunnel:\n  encapsulations: [gre]\n"), 0o600, {},
     ["{P}:10: tunnel.encapsulations: must include ipip: IP-in-IP is always offered (RFC 5944 4.1)"]),
    ("advertisement interval above a third of the lifetime", ha("advertisement_interval: 1.5\n"), 0o600, {},
     ["{P}:9: advertisement_interval: 1.5 s is more than a third of advertisement_lifetime (3 s): "
      "a single lost advertisement would make mobile nodes lose this agent"]),
    ("bad mobile_nodes_file lines", ha("mobile_nodes_file: nodes.txt\n"), 0o600,
     {"nodes.txt": (f"# nodes\n\n10.1.0.20 300 {KEY}\n10.1.0.21 300 {KEY}\n10.1.0.22 301 {KEY} sha1\n"
                    f"10.1.0.10 302 {KEY}\n10.2.0.1 303 {KEY}\n10.1.0.23 256 {KEY}  # comment\n"
                    f"10.1.0.24 304\n10.1.0.25 305 {KEY[:-2]}\n", 0o600)},
     ["{P}:9: mobile_nodes_file: {D}/nodes.txt:4: SPI 300 is already used on line 3",
      "{P}:9: mobile_nodes_file: {D}/nodes.txt:5: algorithm 'sha1' is not one of hmac-md5, keyed-md5",
      "{P}:9: mobile_nodes_file: {D}/nodes.txt:6: home address 10.1.0.10 is already given to mobile_nodes.0",
      "{P}:9: mobile_nodes_file: {D}/nodes.txt:7: 10.2.0.1 is not a host address of home_network 10.1.0.0/24",
      "{P}:9: mobile_nodes_file: {D}/nodes.txt:8: SPI 256 is already used by mobile_nodes.0",
      "{P}:9: mobile_nodes_file: {D}/nodes.txt:9: expected 'home_address spi hex-key [algorithm] [replay]', "
      "found 2 fields",
      "{P}:9: mobile_nodes_file: {D}/nodes.txt:10: key is 15 bytes, at least 16 are required"]),
    # RFC 5177 (mip.yaml(5) mobile_networks): the prefixes a node may serve as a mobile router.
    ("mobile network with host bits set", ha("    mobile_networks: [192.168.50.1/24]\n"),
     0o600, {}, ["{P}:9: mobile_nodes.0.mobile_networks.0: 192.168.50.1/24 has host bits set; "
                 "the network is 192.168.50.0/24"]),
    ("mobile network of length 0", ha("    mobile_networks: [0.0.0.0/0]\n"), 0o600, {},
     ["{P}:9: mobile_nodes.0.mobile_networks.0: 0.0.0.0/0 has prefix length 0; a mobile network is 1 to 32 bits "
      "long (RFC 5177 6.6)"]),
    ("mobile network overlapping the home network", ha("    mobile_networks:\n      - 192.168.50.0/24\n"
                                                      "      - 10.1.0.128/25\n"), 0o600, {},
     ["{P}:11: mobile_nodes.0.mobile_networks.1: 10.1.0.128/25 overlaps home_network 10.1.0.0/24"]),
    ("mobile networks overlapping between nodes", ha("    mobile_networks: [192.168.50.0/24]\n"
                                                    "  - home_address: 10.1.0.11\n    spi: 257\n    key: {KEY}\n"
                                                    "    mobile_networks: [192.168.60.0/24, 192.168.50.128/25]\n"),
     0o600, {},
     ["{P}:13: mobile_nodes.1.mobile_networks.1: 192.168.50.128/25 overlaps a mobile network of mobile_nodes.0"]),
    ("mobile network listed twice", ha("    mobile_networks: [192.168.50.0/24, 192.168.50.0/24]\n"), 0o600, {},
     ["{P}:9: mobile_nodes.0.mobile_networks.1: 192.168.50.0/24 is listed twice"]),
    ("mobile network without a prefix length", ha("    mobile_networks: [192.168.50.0]\n"), 0o600, {},
     ["{P}:9: mobile_nodes.0.mobile_networks.0: give the address with its prefix length, as in 10.2.0.5/24 "
      "(got '192.168.50.0')"]),
    ("mobile networks in the mobile_nodes_file", ha("mobile_nodes_file: nodes.txt\n"), 0o600,
     {"nodes.txt": (f"10.1.0.20 300 {KEY} 192.168.70.0/24\n", 0o600)},
     ["{P}:9: mobile_nodes_file: {D}/nodes.txt:1: a line carries no mobile_networks (prefixes); list a mobile "
      "router under mobile_nodes in the profile"]),
    ("mobile networks on a foreign agent's mobile node", FOREIGN_AGENT + "mobile_nodes:\n  - home_address: 10.1.0.10\n"
     "    spi: 1001\n    key: {KEY}\n    mobile_networks: [192.168.50.0/24]\n", 0o600, {"fa-ha.key": (KEY, 0o600)},
     ["{P}:12: mobile_nodes.0.mobile_networks: unknown key"]),
    ("readable mobile_nodes_file", ha("mobile_nodes_file: nodes.txt\n"), 0o600, {"nodes.txt": ("", 0o644)},
     ["{P}:0: permissions: mobile_nodes_file {D}/nodes.txt has mode 0644; a file holding keys must not be readable "
      "or writable by group or others (chmod 600 {D}/nodes.txt)"]),
    ("mobile node home address outside its network", MOBILE_NODE.replace("10.1.0.10", "10.3.0.10"), 0o600, {},
     ["{P}:3: home_address: 10.3.0.10 is not inside home_network 10.1.0.0/24"]),
    ("mobile node without a key", MOBILE_NODE.replace(f"key: {KEY}\n", ""), 0o600, {},
     ["{P}:1: key: required key is missing: give key or key_file"]),
    # docs/robustness.md, "bad configuration": every role, every kind of value, and the files around it.
    ("missing profile", None, 0o600, {},
     ["{P}:0: (root): cannot read the profile: No such file or directory"]),
    ("empty profile", "", 0o600, {},
     ["{P}:1: (root): a profile is a mapping of keys to values, starting with role:"]),
    ("profile that is a list", "- role: home-agent\n", 0o600, {},
     ["{P}:1: (root): a profile is a mapping of keys to values, starting with role:"]),
    ("tab indentation", "role: home-agent\n\tinterface: eth1\n", 0o600, {},
     ["{P}:2: syntax: found character '\\t' that cannot start any token"]),
    ("negative duration", ha("max_lifetime: -5\n"), 0o600, {},
     ["{P}:9: max_lifetime: Input should be greater than or equal to 1 (got -5)"]),
    ("unknown tunnel backend", ha("tunnel: {backend: wireguard}\n"), 0o600, {},
     ["{P}:9: tunnel.backend: Input should be 'auto', 'kernel' or 'userspace' (got 'wireguard')"]),
    ("key file that is a directory", ha(replace=(f"key: {KEY}", "key_file: keys")), 0o600, {"keys/": ("", 0o700)},
     ["{P}:8: mobile_nodes.0.key_file: {D}/keys: Is a directory"]),
    ("short key in a key file", ha(replace=(f"key: {KEY}", "key_file: mn.key")), 0o600, {"mn.key": ("00112233", 0o600)},
     ["{P}:8: mobile_nodes.0.key_file: {D}/mn.key: key is 4 bytes, at least 16 are required"]),
    ("non-hex key in a key file", ha(replace=(f"key: {KEY}", "key_file: mn.key")), 0o600,
     {"mn.key": ("zz" + KEY[2:], 0o600)},
     ["{P}:8: mobile_nodes.0.key_file: {D}/mn.key: key must be hexadecimal digits only"]),
    ("foreign agent: bad care-of address", FOREIGN_AGENT.replace("10.2.0.1", "10.2.0"), 0o600,
     {"fa-ha.key": (KEY, 0o600)},
     ["{P}:3: care_of_address: Input is not a valid IPv4 address (got '10.2.0')"]),
    ("foreign agent: advertisement address not all-systems or broadcast",
     FOREIGN_AGENT + "advertisement_address: 10.2.0.255\n", 0o600, {"fa-ha.key": (KEY, 0o600)},
     ["{P}:8: advertisement_address: Input should be '224.0.0.1' or '255.255.255.255' (got '10.2.0.255')"]),
    ("foreign agent: duplicate SPI across home agents and mobile nodes",
     FOREIGN_AGENT + "mobile_nodes:\n  - home_address: 10.1.0.10\n    spi: 1000\n    key: {KEY}\n", 0o600,
     {"fa-ha.key": (KEY, 0o600)},
     ["{P}:10: mobile_nodes.0.spi: SPI 1000 is already used by home_agents.0"]),
    ("foreign agent: unknown reverse tunneling policy", FOREIGN_AGENT + "reverse_tunneling: maybe\n", 0o600,
     {"fa-ha.key": (KEY, 0o600)},
     ["{P}:8: reverse_tunneling: Input should be 'allowed', 'required' or 'off' (got 'maybe')"]),
    ("mobile node: unknown care_of", MOBILE_NODE + "care_of: wifi\n", 0o600, {},
     ["{P}:8: care_of: Input should be 'auto', 'foreign-agent' or 'colocated' (got 'wifi')"]),
    ("mobile node: co-located address without prefix length", MOBILE_NODE + "colocated_address: 10.7.0.20\n",
     0o600, {},
     ["{P}:8: colocated_address: give the address with its prefix length, as in 10.2.0.5/24 (got '10.7.0.20')"]),
    ("mobile node: unknown replay protection", MOBILE_NODE + "replay: counter\n", 0o600, {},
     ["{P}:8: replay: Input should be 'timestamp' or 'nonce' (got 'counter')"]),
    ("mobile node: unknown algorithm", MOBILE_NODE + "algorithm: sha256\n", 0o600, {},
     ["{P}:8: algorithm: Input should be 'hmac-md5' or 'keyed-md5' (got 'sha256')"]),
    # RFC 5177: a mobile router's prefixes (mip.yaml(5) VALIDATION)
    ("mobile router: a prefix with host bits", MOBILE_NODE + "mobile_networks: [192.168.50.1/24]\n", 0o600, {},
     ["{P}:8: mobile_networks.0: 192.168.50.1/24 has host bits set: give the network address, 192.168.50.0/24"]),
    ("mobile router: a prefix without length", MOBILE_NODE + "mobile_networks: [192.168.50.0]\n", 0o600, {},
     ["{P}:8: mobile_networks.0: give the address with its prefix length, as in 10.2.0.5/24 (got '192.168.50.0')"]),
    ("mobile router: a prefix of length 0", MOBILE_NODE + "mobile_networks: [0.0.0.0/0]\n", 0o600, {},
     ["{P}:8: mobile_networks.0: a prefix of length 0 is not a mobile network (RFC 5177 6.6)"]),
    ("mobile router: a prefix overlapping the home network", MOBILE_NODE + "mobile_networks:\n  - 10.1.0.128/25\n",
     0o600, {}, ["{P}:9: mobile_networks.0: 10.1.0.128/25 overlaps home_network 10.1.0.0/24"]),
    ("mobile router: overlapping prefixes",
     MOBILE_NODE + "mobile_networks:\n  - 192.168.50.0/24\n  - 192.168.0.0/16\n", 0o600, {},
     ["{P}:10: mobile_networks.1: 192.168.0.0/16 overlaps mobile_networks.0 (192.168.50.0/24)"]),
    ("mobile router: reverse tunnelling switched off",
     MOBILE_NODE + "reverse_tunneling: false\nmobile_networks: [192.168.50.0/24]\n", 0o600, {},
     ["{P}:8: reverse_tunneling: a mobile router (mobile_networks) always reverse-tunnels (RFC 5177 section 5: "
      "without it the LAN's packets meet ingress filtering); remove reverse_tunneling: false"]),
    ("mobile router: unknown mode", MOBILE_NODE + "mobile_network_mode: dynamic\n", 0o600, {},
     ["{P}:8: mobile_network_mode: Input should be 'explicit' or 'implicit' (got 'dynamic')"]),
    ("unknown log level", "log_level: loud\n" + MOBILE_NODE, 0o600, {},
     ["{P}:1: log_level: Input should be 'debug', 'info', 'notice', 'warning' or 'error' (got 'loud')"]),
    ("unknown durability", HOME_AGENT + "durability: fsync-sometimes\n", 0o600, {},
     ["{P}:9: durability: Input should be 'power-loss' or 'process-crash' (got 'fsync-sometimes')"]),
    ("durability not a word", "durability: [process-crash]\n" + FOREIGN_AGENT, 0o600, {},
     ["{P}:1: durability: Input should be 'power-loss' or 'process-crash'"]),
]


@pytest.mark.parametrize(("text", "mode", "files", "expected"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_an_invalid_profile_is_reported_at_its_line_and_path(
    tmp_path: Path, text: str | None, mode: int, files: dict[str, tuple[str, int]], expected: list[str]
) -> None:
    for name, (content, file_mode) in files.items():
        if name.endswith("/"):
            (tmp_path / name).mkdir(mode=file_mode)
        else:
            write(tmp_path / name, content, file_mode)
    profile = tmp_path / "profile.yaml" if text is None else write(tmp_path / "profile.yaml", text, mode)
    result = mipd("check", str(profile))
    lines = [line.replace("{D}", str(tmp_path)).replace("{P}", str(profile)) for line in expected]
    assert result.stdout.splitlines() == lines
    assert result.returncode == 1
    assert KEY not in result.stdout + result.stderr  # keys are never printed


def valid_profiles(directory: Path) -> list[Path]:
    write(directory / "fa-ha.key", KEY + "\n")
    return [write(directory / "ha.yaml", HOME_AGENT), write(directory / "fa.yaml", FOREIGN_AGENT, 0o644),
            write(directory / "mn.yaml", MOBILE_NODE)]


def test_each_durability_of_each_role_is_ok(tmp_path: Path) -> None:
    write(tmp_path / "fa-ha.key", KEY + "\n")
    paths = [write(tmp_path / f"{n}-{value}.yaml", f"durability: {value}\n" + text)
             for n, text in enumerate((HOME_AGENT, FOREIGN_AGENT, MOBILE_NODE))
             for value in ("power-loss", "process-crash")]
    result = mipd("check", *map(str, paths))
    assert result.stdout.splitlines() == [f"{path}: ok" for path in paths]
    assert result.returncode == 0, result.stderr


def test_valid_profiles_of_all_three_roles_are_ok(tmp_path: Path) -> None:
    paths = valid_profiles(tmp_path)
    result = mipd("check", *map(str, paths))
    assert result.stdout.splitlines() == [f"{path}: ok" for path in paths]
    assert result.returncode == 0, result.stderr


def test_paths_are_printed_as_given(tmp_path: Path) -> None:
    valid_profiles(tmp_path)
    result = mipd("check", "./ha.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "./ha.yaml: ok\n")


def test_one_invalid_profile_among_several_exits_1_with_lines_for_each(tmp_path: Path) -> None:
    good = valid_profiles(tmp_path)
    bad = write(tmp_path / "bad.yaml", HOME_AGENT + "colour: blue\n")
    result = mipd("check", str(good[0]), str(bad), str(good[2]))
    assert result.stdout.splitlines() == [f"{good[0]}: ok", f"{bad}:9: colour: unknown key", f"{good[2]}: ok"]
    assert result.returncode == 1


def test_check_without_paths_is_a_usage_error() -> None:
    result = mipd("check")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: mipd check ")


def test_keygen_prints_a_fresh_128_bit_hex_key() -> None:
    first, second = mipd("keygen"), mipd("keygen")
    assert first.returncode == second.returncode == 0
    assert re.fullmatch(r"[0-9a-f]{32}\n", first.stdout)
    assert re.fullmatch(r"[0-9a-f]{32}\n", second.stdout)
    assert first.stdout != second.stdout


def test_schema_is_json_covering_the_three_roles() -> None:
    result = mipd("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert set(schema["discriminator"]["mapping"]) == {"home-agent", "foreign-agent", "mobile-node"}
    home_agent = schema["$defs"]["HomeAgentProfile"]
    assert home_agent["additionalProperties"] is False
    assert home_agent["properties"]["max_lifetime"]["default"] == 1800


def test_the_examples_pass_once_their_key_files_exist(tmp_path: Path) -> None:
    """etc/mip/*.yaml, copied with mode 0600, their /etc/mip/keys/ files made with mipd keygen in tmp_path."""
    checked = []
    for example in sorted((REPO / "etc" / "mip").glob("*.yaml")):
        text = example.read_text()
        assert "key:" not in re.sub(r"#.*", "", text), "examples ship no key"
        for key_file in set(re.findall(r"^\s*-?\s*key_file: (/etc/mip/keys/\S+)", text, re.MULTILINE)):
            local = tmp_path / Path(key_file).name
            write(local, mipd("keygen").stdout)
            text = text.replace(key_file, str(local))
        checked.append(write(tmp_path / example.name, text))
    assert [p.name for p in checked] == ["foreign-agent.yaml", "home-agent.yaml", "mobile-node.yaml",
                                         "mobile-router.yaml"]
    result = mipd("check", *map(str, checked))
    assert result.stdout.splitlines() == [f"{path}: ok" for path in checked]
    assert result.returncode == 0


def test_the_examples_fail_while_their_key_files_are_missing(tmp_path: Path) -> None:
    copy = tmp_path / "home-agent.yaml"
    shutil.copy(REPO / "etc" / "mip" / "home-agent.yaml", copy)
    result = mipd("check", str(copy))
    assert result.returncode == 1
    assert "cannot read key file /etc/mip/keys/mn-10.key" in result.stdout
