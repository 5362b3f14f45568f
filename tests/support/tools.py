"""The external programs the tests run, and the Debian package each one comes from.

Tests start an external program only as ``subprocess.run([tool("tshark"), ...])``: ``tool`` refuses a
program that is not registered in ``DEBIAN_PACKAGES`` below, and tests/unit/test_tools_packaged.py checks
that each registered program really comes from the named package and that the package is listed in
debian-packages.txt, which ``make`` installs. To use a new program: register it here and list its package
there.

The project's own console scripts (``mipd``, ``mipctl``) and the Python tools installed in the same virtual
environment (``lint-imports``, ...) are not Debian programs: run them through ``venv_script``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# program name -> the Debian package that installs it
DEBIAN_PACKAGES: dict[str, str] = {
    "bash": "bash",
    "busybox": "busybox-static",
    "dash": "dash",
    "date": "coreutils",
    "dpkg": "dpkg",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "env": "coreutils",
    "groff": "groff-base",
    "ip": "iproute2",
    "journalctl": "systemd",
    "linux.uml": "user-mode-linux",
    "make": "make",
    "modprobe": "kmod",
    "mount": "mount",
    "nft": "nftables",
    "nsenter": "util-linux",
    "openssl": "openssl",
    "pgrep": "procps",
    "ping": "iputils-ping",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "qemu-system-x86_64": "qemu-system-x86",
    "rpm": "rpm",
    "setpriv": "util-linux",
    "sleep": "coreutils",
    "ss": "iproute2",
    "systemctl": "systemd",
    "systemd-analyze": "systemd",
    "systemd-journald": "systemd",
    "tc": "iproute2",
    "tcpdump": "tcpdump",
    "tshark": "tshark",
    "unshare": "util-linux",
}

# sbin directories are searched too, whatever PATH says; /lib/systemd holds systemd-journald.
_SYSTEM_DIRECTORIES = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/lib/systemd"]
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), *_SYSTEM_DIRECTORIES])


class ToolError(RuntimeError):
    """A test asked for a program it may not or cannot run."""


def tool(name: str) -> str:
    """The absolute path of the registered external program ``name``."""
    package = DEBIAN_PACKAGES.get(name)
    if package is None:
        raise ToolError(
            f"{name!r} is not a registered test tool: add it with its Debian package to DEBIAN_PACKAGES in "
            f"tests/support/tools.py and list the package in debian-packages.txt"
        )
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise ToolError(
            f"{name!r} is not installed: it comes from the Debian package {package!r}, "
            f"which `make test` installs from debian-packages.txt"
        )
    return path


def venv_script(name: str) -> str:
    """The path of a console script installed in the running virtual environment (mipd, lint-imports...)."""
    # Not resolved: the venv's python may be a symlink to /usr/bin/python3; its scripts sit next to the link.
    path = Path(sys.executable).parent / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolError(f"{name!r} is not in the virtual environment {path.parent}: run `make test`")
    return str(path)
