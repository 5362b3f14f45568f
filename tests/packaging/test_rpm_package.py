"""``make rpm``: the .rpm's payload (``rpm -qlp``), scriptlets (``rpm -qp --scripts``) and requirements.

The .rpm targets Fedora and RHEL 9-like distributions (packaging/rpm/mipd.spec); it cannot be installed
here, so its file list is checked against what the .deb ships and its scriptlets are checked as text and
run on this host (no systemd as PID 1), in throwaway network and mount namespaces, with each value of ``$1``.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support.package import REPO, build_rpm, shell_code, unguarded_systemctl
from tests.support.tools import tool

EXAMPLES = ("home-agent", "foreign-agent", "mobile-node", "mobile-router")
# Run a scriptlet ($0) with $1 on a private, empty /run that holds a /run/mip; say whether it survived.
SANDBOXED = ('mount -t tmpfs tmpfs /run && mkdir /run/mip && dash -e "$0" "$1" || exit; '
             'if [ -d /run/mip ]; then echo "/run/mip kept"; fi')


@pytest.fixture(scope="module")
def rpm_file() -> Path:
    return build_rpm()


def rpm_query(rpm_file: Path, *args: str) -> str:
    result = subprocess.run([tool("rpm"), "-qp", *args, str(rpm_file)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def scriptlets(rpm_file: Path) -> dict[str, str]:
    """``rpm -qp --scripts`` split into {"postinstall": body, "preuninstall": ..., "postuninstall": ...}."""
    text = rpm_query(rpm_file, "--scripts")
    parts = re.split(r"^(\w+) scriptlet \(using /bin/sh\):\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_rpm_is_named_after_the_project_version(rpm_file: Path) -> None:
    with (REPO / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert re.fullmatch(rf"mipd-{re.escape(version)}-1(\.\w+)?\.x86_64\.rpm", rpm_file.name), rpm_file.name
    assert rpm_query(rpm_file, "--queryformat", "%{NAME} %{VERSION}") == f"mipd {version}"


def test_the_rpm_ships_the_same_payload_as_the_deb(rpm_file: Path) -> None:
    files = set(rpm_query(rpm_file, "--list").splitlines())
    expected = {
        "/usr/bin/mipd", "/usr/bin/mipctl", "/usr/lib/mipd/bin/python", "/usr/lib/mipd/bin/mipd",
        "/usr/lib/mipd/pyvenv.cfg",
        "/usr/lib/systemd/system/mipd@.service", "/usr/lib/systemd/system/mip.target",
        *(f"/usr/share/doc/mipd/examples/{name}.yaml" for name in EXAMPLES),
        "/usr/share/doc/mipd/README.packaging.md",
        "/etc/mip", "/etc/mip/keys",
    }
    if (REPO / "completions" / "mipctl").is_file():
        expected.add("/usr/share/bash-completion/completions/mipctl")
    missing = sorted(expected - files)
    assert not missing, missing
    pages = {path.rsplit("/", 1)[1].removesuffix(".gz") for path in files if path.startswith("/usr/share/man/")}
    assert pages >= {"mipd.8", "mipctl.8", "mip.yaml.5"}
    assert any(re.fullmatch(r"/usr/lib/mipd/lib/python3\.\d+/site-packages/pydantic/__init__\.py", f) for f in files)
    assert not [f for f in files if f.startswith(("/root", "/tmp", "/home", "/usr/local"))]
    # /etc/mip/keys is private; the commands are links into the venv.
    modes = dict(line.rsplit(" ", 1)[::-1] for line in rpm_query(
        rpm_file, "--queryformat", "[%{FILEMODES:perms} %{FILENAMES}\n]").splitlines())
    assert modes["/etc/mip/keys"] == "drwx------"
    assert modes["/usr/bin/mipd"].startswith("l")


def test_the_scriptlets_reload_on_install_stop_and_clean_on_erase_and_restart_on_upgrade(rpm_file: Path) -> None:
    scripts = scriptlets(rpm_file)
    assert set(scripts) == {"postinstall", "preuninstall", "postuninstall"}
    post, preun, postun = (shell_code(scripts[name]) for name in ("postinstall", "preuninstall", "postuninstall"))
    for name, text in scripts.items():
        assert not unguarded_systemctl(text), f"{name}: {unguarded_systemctl(text)}"
        code = shell_code(text).replace("try-restart", "")
        assert not re.search(r"systemctl\b[^\n]*\b(enable|start|restart)\b", code), name
    assert "systemctl daemon-reload" in post and "$1" not in post
    # $1 = how many mipd packages remain: 0 on erase, >= 1 on upgrade.
    erase = re.search(r"if \[ \$1 -eq 0 \]; then(.*?)\nfi", preun, flags=re.DOTALL)
    assert erase, preun
    assert "systemctl stop mip.target 'mipd@*.service'" in erase.group(1)
    assert "/usr/bin/mipd cleanup" in erase.group(1)
    upgrade = re.search(r"if \[ \$1 -ge 1 \]; then(.*?)\n\s*fi", postun, flags=re.DOTALL)
    assert upgrade and "systemctl try-restart 'mipd@*.service'" in upgrade.group(1), postun
    assert "daemon-reload" in postun


def test_the_scriptlets_succeed_without_systemd(rpm_file: Path, tmp_path: Path) -> None:
    assert not Path("/run/systemd/system").exists(), "this test needs a host without systemd as PID 1"
    for name, text in scriptlets(rpm_file).items():
        script = tmp_path / name
        script.write_text(text)
        for count in ("0", "1", "2"):
            # In new network and mount namespaces with an empty /run: the erase scriptlets run
            # `mipd cleanup` (if a mipd is installed here) and remove /run/mip, which must not touch the host's.
            result = subprocess.run(
                [tool("unshare"), "--net", "--mount", "--propagation", "private", tool("dash"), "-c", SANDBOXED,
                 str(script), count],
                capture_output=True, text=True, timeout=60, check=False)
            assert result.returncode == 0, f"{name} {count}: {result.stdout}{result.stderr}"
            erased = name == "postuninstall" and count == "0"  # the only one that removes /run/mip
            assert ("/run/mip kept" in result.stdout) != erased, f"{name} {count}: {result.stdout}"


def test_the_rpm_requires_python_311_and_libsystemd_and_nothing_of_its_own_venv(rpm_file: Path) -> None:
    requires = set(rpm_query(rpm_file, "--requires").splitlines())
    assert "/usr/bin/python3" in requires
    assert any(item.startswith("libsystemd.so.0") for item in requires), requires
    assert "systemd" in requires
    assert not [item for item in requires if "/usr/lib/mipd" in item or item.startswith("python3")], requires
    provides = set(rpm_query(rpm_file, "--provides").splitlines())
    assert not [item for item in provides if ".so" in item], provides  # the venv's modules are private
