"""``make deb``: what the .deb contains, its control fields and maintainer scripts, and the installed package.

The package is built once per session (tests/support/package.py) and installed on this host for the tests
below that take ``installed_deb``; it is purged after them. The maintainer scripts' systemd branches run
under a real systemd in tests/system; here the host has no systemd as PID 1, and installing, reinstalling,
removing and purging must work there too (tests/packaging/test_deb_lifecycle.py).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support.package import REPO, shell_code, unguarded_systemctl
from tests.support.tools import tool

PREFIX = Path("/usr/lib/mipd")
EXAMPLES = ("home-agent", "foreign-agent", "mobile-node", "mobile-router")


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def deb_contents(deb: Path) -> dict[str, str]:
    """``dpkg-deb -c``: path (without the leading ".") -> its line (mode, owner, size, link target)."""
    listing = subprocess.run([tool("dpkg-deb"), "--contents", str(deb)], capture_output=True, text=True,
                             check=True, timeout=120).stdout
    contents = {}
    for line in listing.splitlines():
        name = line.split(None, 5)[5].split(" -> ")[0]
        contents[name.removeprefix(".").rstrip("/") or "/"] = line
    return contents


def test_the_deb_ships_commands_units_manuals_examples_and_directories(deb_file: Path) -> None:
    contents = deb_contents(deb_file)
    expected = [
        "/lib/systemd/system/mipd@.service",
        "/lib/systemd/system/mip.target",
        *(f"/usr/share/doc/mipd/examples/{name}.yaml" for name in EXAMPLES),
        "/usr/lib/mipd/bin/python",
        "/usr/lib/mipd/pyvenv.cfg",
        "/etc/mip",
        "/etc/mip/keys",
    ]
    for page in sorted((REPO / "man").glob("*.[1-8]")):
        expected.append(f"/usr/share/man/man{page.suffix[1:]}/{page.name}.gz")
    assert {"mipd.8", "mipctl.8", "mip.yaml.5"} <= {page.name for page in (REPO / "man").iterdir()}
    if (REPO / "completions" / "mipctl").is_file():
        expected.append("/usr/share/bash-completion/completions/mipctl")
    missing = [path for path in expected if path not in contents]
    missing += [name for name in ("README.md", "README.packaging.md")  # compressed by size, as policy says
                if not {f"/usr/share/doc/mipd/{name}", f"/usr/share/doc/mipd/{name}.gz"} & contents.keys()]
    assert not missing, f"not in the .deb: {missing}"
    assert contents["/usr/bin/mipd"].endswith("-> ../lib/mipd/bin/mipd")
    assert contents["/usr/bin/mipctl"].endswith("-> ../lib/mipd/bin/mipctl")
    assert contents["/etc/mip/keys"].startswith("drwx------ root/root")
    # Nothing of the build machine's: nothing under /root, /tmp, /home or /usr/local.
    assert not [path for path in contents if path.startswith(("/root", "/tmp", "/home", "/usr/local"))]


def test_the_control_fields_name_the_version_and_the_runtime_dependencies(deb_file: Path) -> None:
    fields = subprocess.run([tool("dpkg-deb"), "--field", str(deb_file), "Package", "Version", "Architecture",
                             "Depends"], capture_output=True, text=True, check=True, timeout=60).stdout
    parsed = dict(line.split(": ", 1) for line in fields.splitlines())
    architecture = subprocess.run([tool("dpkg"), "--print-architecture"], capture_output=True, text=True,
                                  check=True, timeout=60).stdout.strip()
    assert parsed["Package"] == "mipd"
    assert parsed["Version"] == project_version()
    assert parsed["Architecture"] == architecture
    assert deb_file.name == f"mipd_{project_version()}_{architecture}.deb"
    depends = [item.strip() for item in parsed["Depends"].split(",")]
    assert "python3 (>= 3.11)" in depends
    assert "python3 (<< 3.12)" in depends  # the venv holds python3.11's site-packages
    assert any(item.startswith("libsystemd0") for item in depends)
    # Its own pydantic 2 in the venv, not Debian's python3-pydantic 1.x.
    assert not [item for item in depends if item.startswith("python3-")]


@pytest.fixture(scope="module")
def maintainer_scripts(deb_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    control = tmp_path_factory.mktemp("control")
    subprocess.run([tool("dpkg-deb"), "--control", str(deb_file), str(control)], check=True, timeout=60)
    return {name: (control / name).read_text() for name in ("postinst", "prerm", "postrm")}


def test_the_maintainer_scripts_are_valid_sh_and_call_systemctl_only_under_systemd(
        maintainer_scripts: dict[str, str], tmp_path: Path) -> None:
    for name, text in maintainer_scripts.items():
        script = tmp_path / name
        script.write_text(text)
        syntax = subprocess.run([tool("dash"), "-n", str(script)], capture_output=True, text=True, timeout=30,
                                check=False)
        assert syntax.returncode == 0, f"{name}: {syntax.stderr}"
        assert text.startswith("#!/bin/sh\n") and "set -e" in text, name
        assert not unguarded_systemctl(text), f"{name} runs systemctl without systemd: {unguarded_systemctl(text)}"
        # Installing enables and starts nothing.
        code = shell_code(text).replace("try-restart", "")
        assert not re.search(r"systemctl\b[^\n]*\b(enable|start|restart)\b", code), name


def test_the_maintainer_scripts_restart_on_upgrade_stop_and_clean_on_remove_and_purge_state(
        maintainer_scripts: dict[str, str]) -> None:
    postinst, prerm, postrm = (shell_code(maintainer_scripts[name]) for name in ("postinst", "prerm", "postrm"))
    assert "systemctl daemon-reload" in postinst
    # configure's $2 is the version before: set on an upgrade, empty on a first installation.
    assert re.search(r'if \[ -n "\$2" \]; then\s+systemctl try-restart \'mipd@\*\.service\'', postinst)
    assert re.search(r'if \[ "\$1" = remove \]; then', prerm)
    assert "systemctl stop mip.target 'mipd@*.service'" in prerm
    assert "/usr/bin/mipd cleanup" in prerm
    assert re.search(r'if \[ "\$1" = purge \]; then\s+rm -rf /var/lib/mip /run/mip', postrm)
    assert "/etc/mip" not in postrm  # the administrator's profiles and keys stay


def test_the_installed_commands_run_from_anywhere_with_a_clean_environment(
        installed_deb: Path, tmp_path: Path) -> None:
    files_before = {str(path) for path in PREFIX.rglob("*")}
    version = subprocess.run([tool("env"), "-i", "/usr/bin/mipd", "--version"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, check=False)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"mipd {project_version()}"
    mipctl = subprocess.run([tool("env"), "-i", "/usr/bin/mipctl", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert mipctl.returncode == 0 and "usage: mipctl" in mipctl.stdout, mipctl.stderr
    # It is the package's venv that runs, with Debian's Python, not the development .venv.
    where = subprocess.run([tool("env"), "-i", str(PREFIX / "bin" / "python"), "-c",
                            "import sys, mipd, pydantic, systemd.journal, mipd.runtime.daemon, "
                            "mipd.adapters.netlink.calls; "
                            "print(sys.prefix, mipd.__file__, pydantic.VERSION)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert where.returncode == 0, where.stderr
    prefix, module, pydantic_version = where.stdout.split()
    assert prefix == str(PREFIX) and module.startswith(str(PREFIX / "lib")), where.stdout
    assert pydantic_version.startswith("2."), where.stdout
    assert os.path.realpath(PREFIX / "bin" / "python") == os.path.realpath("/usr/bin/python3")
    # The shipped byte code is valid where it lies: Python wrote none (the service could not: /usr is
    # read-only for it).
    assert {str(path) for path in PREFIX.rglob("*")} == files_before


def test_mipd_check_accepts_the_installed_examples_with_their_key_files(installed_deb: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for name in EXAMPLES:
        text = (Path("/usr/share/doc/mipd/examples") / f"{name}.yaml").read_text()
        for key_file in re.findall(r"^\s*key_file: /etc/mip/keys/(\S+)", text, flags=re.MULTILINE):
            key = subprocess.run([tool("env"), "-i", "/usr/bin/mipd", "keygen"], capture_output=True, text=True,
                                 timeout=60, check=True).stdout.strip()
            assert re.fullmatch(r"[0-9a-f]{32}", key)
            (keys / key_file).write_text(key + "\n")
            (keys / key_file).chmod(0o600)
        profile = tmp_path / f"{name}.yaml"
        profile.write_text(text.replace("/etc/mip/keys/", f"{keys}/"))
        profile.chmod(0o600)
        result = subprocess.run([tool("env"), "-i", "/usr/bin/mipd", "check", str(profile)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60, check=False)
        assert (result.returncode, result.stdout.strip()) == (0, f"{profile}: ok"), result.stdout + result.stderr
    # And it refuses a key file others can read (so the check above could fail).
    loose = next(keys.iterdir())
    loose.chmod(0o644)
    result = subprocess.run([tool("env"), "-i", "/usr/bin/mipd", "check", *map(str, sorted(tmp_path.glob("*.yaml")))],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and str(loose) in result.stdout, result.stdout


def test_the_venv_holds_no_path_into_the_build_tree_or_a_home_directory(installed_deb: Path) -> None:
    offending = []
    for path in PREFIX.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        # The build directories (packaging/build.py's mipd-deb-*, the source tree) appear nowhere;
        # /root/ nowhere in text (upstream wheels' binaries name their own CI builders' directories).
        build_paths = b"/mipd-deb-" in data or str(REPO).encode() + b"/" in data
        if build_paths or (b"\0" not in data and b"/root/" in data):
            offending.append(str(path))
    assert not offending, offending
    for script in (PREFIX / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        first = script.read_bytes().split(b"\n", 1)[0]
        if first.startswith(b"#!"):
            assert first == b"#!/usr/lib/mipd/bin/python", f"{script}: {first!r}"
    config = (PREFIX / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in config and str(PREFIX) in config and "/mipd-deb-" not in config


def test_installing_started_and_enabled_nothing(installed_deb: Path) -> None:
    running = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # it ended meanwhile
            continue
        if command.startswith((b"/usr/lib/mipd/", b"/usr/bin/mipd")) or b" /usr/bin/mipd " in command:
            running.append(command.decode(errors="replace"))
    assert not running, running
    # No unit is enabled: nothing links to the units from a .wants directory.
    wants = [link for link in Path("/etc/systemd/system").rglob("*") if link.is_symlink()
             and os.readlink(link).endswith(("mipd@.service", "mip.target"))]
    assert not wants, wants
    keys = Path("/etc/mip/keys").stat()
    assert stat.S_IMODE(keys.st_mode) == 0o700 and keys.st_uid == 0
    assert shutil.which("mipd", path="/usr/bin") == "/usr/bin/mipd"
