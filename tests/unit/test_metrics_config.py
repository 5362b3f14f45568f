"""``metrics: {listen: ...}`` in every role's profile: what ``mipd check`` accepts, how it normalises the
address, and the YAML path it names for a bad one (mip.yaml(5) ``metrics``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mipd.config import load_profile
from mipd.config.types import METRICS_PORT
from tests.unit.test_config_check import FOREIGN_AGENT, HOME_AGENT, MOBILE_NODE, mipd, write

PROFILES = {"home-agent": HOME_AGENT, "foreign-agent": FOREIGN_AGENT, "mobile-node": MOBILE_NODE}


@pytest.mark.parametrize(("written", "normalised"), [
    ("127.0.0.1:9100", "127.0.0.1:9100"),
    ("0.0.0.0", f"0.0.0.0:{METRICS_PORT}"),
    ("[::1]:80", "[::1]:80"),
    ("[::]", f"[::]:{METRICS_PORT}"),
    ("::1", f"[::1]:{METRICS_PORT}"),
])
@pytest.mark.parametrize("role", sorted(PROFILES))
def test_every_role_takes_a_listen_address(tmp_path: Path, role: str, written: str, normalised: str) -> None:
    (tmp_path / "fa-ha.key").write_text("00112233445566778899aabbccddeeff\n")
    (tmp_path / "fa-ha.key").chmod(0o600)
    path = write(tmp_path / "p.yaml", PROFILES[role] + f'metrics: {{listen: "{written}"}}\n')
    profile = load_profile(path)
    assert profile.metrics is not None and profile.metrics.listen == normalised


def test_without_the_key_there_is_no_endpoint(tmp_path: Path) -> None:
    assert load_profile(write(tmp_path / "p.yaml", HOME_AGENT)).metrics is None


@pytest.mark.parametrize(("written", "says"), [
    ('"localhost:9100"', "'localhost' is not an IP address"),
    ('"10.0.0.1:0"', "port '0' is not a number from 1 to 65535"),
    ('"10.0.0.1:65536"', "port '65536' is not a number from 1 to 65535"),
    ('"10.0.0.1:http"', "port 'http' is not a number"),
    ('"[10.0.0.1]:9100"', "only an IPv6 address is written in brackets"),
    ("9100", "Input should be a valid string"),
])
def test_a_bad_listen_address_is_an_error_at_its_yaml_path(tmp_path: Path, written: str, says: str) -> None:
    path = write(tmp_path / "p.yaml", HOME_AGENT + f"metrics:\n  listen: {written}\n")
    out = mipd("check", str(path))
    assert out.returncode == 1
    line = HOME_AGENT.count("\n") + 2
    assert f"{path}:{line}: metrics.listen: {says}" in out.stdout, out.stdout + out.stderr


def test_an_unknown_metrics_key_is_refused(tmp_path: Path) -> None:
    out = mipd("check", str(write(tmp_path / "p.yaml", HOME_AGENT + "metrics: {listen: 127.0.0.1, port: 1}\n")))
    assert out.returncode == 1 and "metrics.port: unknown key" in out.stdout, out.stdout + out.stderr
