"""The installed ``mipctl`` against a real ControlServer: section 4 shapes, tables, exit codes, discovery."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mipd.cli.mipctl_format import render
from tests.support.control import FakeInstance, dead_socket, serving
from tests.support.tools import venv_script


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="mipctl-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def instance() -> FakeInstance:
    return FakeInstance()


@pytest.fixture
def sock(run_dir: Path, instance: FakeInstance) -> Iterator[Path]:
    path = run_dir / "home-agent.sock"
    with serving(path, instance):
        yield path


def mipctl(*args: str, run_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("MIPD_RUN_DIR", None)
    if run_dir is not None:
        env["MIPD_RUN_DIR"] = str(run_dir)
    return subprocess.run(
        [venv_script("mipctl"), *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def json_of(sock: Path, *command: str) -> str:
    result = mipctl("--socket", str(sock), *command, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


# --- section 4 shapes, byte for byte (key order included) ---

BINDINGS = {
    "bindings": [
        {
            "home_address": "10.1.0.9", "care_of_address": "192.168.77.200", "lifetime_granted": 65535,
            "lifetime_remaining": 65535, "flags": "SDG", "spi": 4096, "identification": "000000000000001f",
            "foreign_agent": None, "udp_tunnel": False,
        },
        {
            "home_address": "10.1.0.10", "care_of_address": "10.2.0.1", "lifetime_granted": 600,
            "lifetime_remaining": 412, "flags": "T", "spi": 256, "identification": "e8fe6f8012345678",
            "foreign_agent": "10.2.0.1", "udp_tunnel": False,
        },
    ]
}
VISITORS = {
    "visitors": [
        {
            "home_address": "10.1.0.2", "home_agent": "10.1.0.1", "care_of_address": "10.2.0.1",
            "link_address": "02:00:00:00:00:02", "state": "pending", "lifetime_granted": 300,
            "lifetime_remaining": 7, "flags": "", "udp_tunnel": False,
        },
        {
            "home_address": "10.1.0.10", "home_agent": "10.1.0.1", "care_of_address": "10.2.0.1",
            "link_address": "02:00:00:00:00:0a", "state": "active", "lifetime_granted": 600,
            "lifetime_remaining": 598, "flags": "T", "udp_tunnel": False,
        },
    ]
}
STATS = {
    "counters": {
        "requests_received": 10, "accepted": 7, "denied": {"131": 1, "133": 1},
        "dropped": {"malformed": 0, "no_sa": 2, "unknown_extension": 0, "not_a_request": 1},
        "relayed": 0, "renewals": 0,
    }
}
STATUS = {"role": "home-agent", "instance": "home-agent", "uptime": 3600, "backend": "kernel", "bindings": 2}


@pytest.mark.parametrize(
    ("command", "expected"),
    [("bindings", BINDINGS), ("visitors", VISITORS), ("stats", STATS), ("status", STATUS)],
)
def test_json_output_is_exactly_the_section_4_shape(sock: Path, command: str, expected: object) -> None:
    assert json_of(sock, command) == json.dumps(expected) + "\n"


def test_json_may_come_before_the_command(sock: Path) -> None:
    result = mipctl("--json", "--socket", str(sock), "stats")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == STATS


# --- readable output ---

def test_bindings_table(sock: Path) -> None:
    result = mipctl("--socket", str(sock), "bindings")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "HOME ADDRESS  CARE-OF ADDRESS  LIFETIME  FLAGS  SPI   FOREIGN AGENT\n"
        "10.1.0.9      192.168.77.200   infinite  SDG    4096  -\n"
        "10.1.0.10     10.2.0.1         412/600   T      256   10.2.0.1\n"
    )


def test_bindings_table_shows_mobile_networks_when_a_binding_has_some() -> None:
    rows = [{"home_address": "10.1.0.10", "care_of_address": "10.2.0.1", "lifetime_granted": 600,
             "lifetime_remaining": 412, "flags": "T", "spi": 256, "foreign_agent": None,
             "mobile_networks": ["192.168.50.0/24", "192.168.60.0/24"]},
            {"home_address": "10.1.0.11", "care_of_address": "10.2.0.1", "lifetime_granted": 600,
             "lifetime_remaining": 412, "flags": "T", "spi": 257, "foreign_agent": None}]
    assert render("bindings", {"bindings": rows}) == (
        "HOME ADDRESS  CARE-OF ADDRESS  LIFETIME  FLAGS  SPI  FOREIGN AGENT  MOBILE NETWORKS\n"
        "10.1.0.10     10.2.0.1         412/600   T      256  -              192.168.50.0/24,192.168.60.0/24\n"
        "10.1.0.11     10.2.0.1         412/600   T      257  -              -")


def test_visitors_table(sock: Path) -> None:
    result = mipctl("--socket", str(sock), "visitors")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "HOME ADDRESS  HOME AGENT  CARE-OF ADDRESS  LINK ADDRESS       STATE    LIFETIME  FLAGS\n"
        "10.1.0.2      10.1.0.1    10.2.0.1         02:00:00:00:00:02  pending  7/300     -\n"
        "10.1.0.10     10.1.0.1    10.2.0.1         02:00:00:00:00:0a  active   598/600   T\n"
    )


def test_stats_lines_name_each_denial_code(sock: Path) -> None:
    result = mipctl("--socket", str(sock), "stats")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "requests_received:                             10\n"
        "accepted:                                      7\n"
        "denied:                                        2\n"
        "  131 HA_MOBILE_NODE_FAILED_AUTHENTICATION:    1\n"
        "  133 HA_REGISTRATION_IDENTIFICATION_MISMATCH: 1\n"
        "dropped:                                       3\n"
        "  malformed:                                   0\n"
        "  no_sa:                                       2\n"
        "  unknown_extension:                           0\n"
        "  not_a_request:                               1\n"
        "relayed:                                       0\n"
        "renewals:                                      0\n"
    )


def test_status_lines(sock: Path) -> None:
    result = mipctl("--socket", str(sock), "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "role:     home-agent\ninstance: home-agent\nuptime:   3600\nbackend:  kernel\nbindings: 2\n"
    )


def test_no_bindings_says_so(sock: Path, instance: FakeInstance) -> None:
    for binding in list(instance.table):
        instance.table.remove(binding.home_address, binding.care_of_address)
    assert mipctl("--socket", str(sock), "bindings").stdout == "no bindings\n"
    assert json_of(sock, "bindings") == '{"bindings": []}\n'


# --- commands that change things; exit 1 for a refusal ---

def test_flush_removes_the_nodes_bindings(sock: Path, instance: FakeInstance) -> None:
    assert json.loads(json_of(sock, "flush", "10.1.0.10")) == {"home_address": "10.1.0.10", "removed": 1}
    remaining = json.loads(json_of(sock, "bindings"))["bindings"]
    assert [b["home_address"] for b in remaining] == ["10.1.0.9"]


def test_a_refusal_exits_1_with_the_reason(sock: Path) -> None:
    result = mipctl("--socket", str(sock), "flush", "10.1.0.77", "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "mipctl: flush: no binding for 10.1.0.77\n"


def test_a_daemon_failure_exits_1(sock: Path, instance: FakeInstance) -> None:
    instance.broken = True
    result = mipctl("--socket", str(sock), "reload")
    assert result.returncode == 1
    assert "internal error in reload" in result.stderr


def test_reload_and_log_level_reach_the_handler(sock: Path, instance: FakeInstance) -> None:
    assert mipctl("--socket", str(sock), "reload").returncode == 0
    result = mipctl("--socket", str(sock), "log-level", "debug")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "log_level: debug\n"
    assert instance.reloads == 1
    assert instance.levels == ["debug"]


# --- usage errors: exit 2, nothing sent ---

@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flush"], "the following arguments are required: HOME_ADDRESS"),
        (["flush", "10.1.0"], "'10.1.0' is not an IPv4 address"),
        (["log-level", "loud"], "invalid choice: 'loud'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["--instance", "x", "status"], "not allowed with argument"),
        (["status", "--instance", "x"], "not allowed with argument"),
        (["--timeout", "0", "status"], "is not a number of seconds"),
    ],
)
def test_usage_errors_exit_2(sock: Path, instance: FakeInstance, args: list[str], message: str) -> None:
    result = mipctl("--socket", str(sock), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert instance.levels == []
    assert len(instance.table) == 2


# --- exit 3: not reachable ---

def test_a_missing_socket_exits_3(run_dir: Path) -> None:
    result = mipctl("--socket", str(run_dir / "nothing.sock"), "status")
    assert result.returncode == 3
    assert "no such socket" in result.stderr


def test_a_socket_nobody_listens_on_exits_3(run_dir: Path) -> None:
    path = run_dir / "dead.sock"
    dead_socket(path)
    result = mipctl("--socket", str(path), "status")
    assert result.returncode == 3
    assert "nobody is listening" in result.stderr


def test_no_answer_in_time_exits_3(sock: Path, instance: FakeInstance) -> None:
    instance.delay = 10
    started = time.monotonic()
    result = mipctl("--socket", str(sock), "status", "--timeout", "0.5")
    assert result.returncode == 3
    assert "no answer within 0.5 s" in result.stderr
    assert time.monotonic() - started < 8


def test_a_listener_that_never_accepts_exits_3(run_dir: Path) -> None:
    path = run_dir / "hung.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(1)
        result = mipctl("--socket", str(path), "--timeout", "0.5", "status")
    assert result.returncode == 3


# --- which instance: MIPD_RUN_DIR, --instance ---

def test_no_instance_running_exits_3(run_dir: Path) -> None:
    (run_dir / "notes.sock").write_text("a file, not a socket")
    result = mipctl("status", run_dir=run_dir)
    assert result.returncode == 3
    assert result.stderr == f"mipctl: no mipd instance is running (no socket in {run_dir})\n"


def test_the_only_instance_is_used(run_dir: Path) -> None:
    with serving(run_dir / "ha.sock", FakeInstance()):
        result = mipctl("status", "--json", run_dir=run_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == STATUS


def test_several_instances_must_be_chosen_between(run_dir: Path) -> None:
    chosen = FakeInstance()
    with serving(run_dir / "ha.sock", FakeInstance()), serving(run_dir / "fa.sock", chosen):
        ambiguous = mipctl("status", run_dir=run_dir)
        assert ambiguous.returncode == 2
        assert ambiguous.stderr == (
            "mipctl: several instances are running (fa, ha): choose one with --instance NAME\n"
        )
        assert mipctl("--instance", "fa", "log-level", "error", run_dir=run_dir).returncode == 0
        assert chosen.levels == ["error"]
        missing = mipctl("--instance", "mn", "status", run_dir=run_dir)
        assert missing.returncode == 3
        assert str(run_dir / "mn.sock") in missing.stderr


def test_an_instance_name_cannot_escape_the_run_directory(run_dir: Path) -> None:
    result = mipctl("--instance", "../etc/x", "status", run_dir=run_dir)
    assert result.returncode == 2
    assert "is not an instance name" in result.stderr


def test_help_documents_the_run_directory_variable_and_exit_codes() -> None:
    result = mipctl("--help")
    assert result.returncode == 0
    assert "MIPD_RUN_DIR" in result.stdout
    for command in ("status", "bindings", "visitors", "stats", "flush", "reload", "log-level"):
        assert command in result.stdout
    assert "3  instance not reachable" in result.stdout
