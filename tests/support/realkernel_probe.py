"""Run INSIDE a real kernel by tests/integration/test_realkernel.py: what the guest offers a check.

Prints one JSON line per named check (tests/support/realkernel.py ``run_checks``) and exits with
status 3, so that the host can tell the script's own exit status from a default.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.tools import tool

MODULES = ("ipip", "ip_gre", "veth", "tun", "sch_netem")
MARKER = Path("/etc/mipd-realkernel-probe")


def check(name: str, ok: bool, detail: object) -> None:
    print(json.dumps({"check": name, "ok": ok, "detail": detail}), flush=True)


def main() -> int:
    loaded = {line.split()[0] for line in Path("/proc/modules").read_text().splitlines()}
    check("modules_loaded", all(m in loaded for m in MODULES), sorted(loaded & set(MODULES)))
    check("root", os.geteuid() == 0, os.geteuid())
    link = subprocess.run([tool("ip"), "link", "add", "probe0", "type", "ipip", "local", "10.9.0.1",
                           "remote", "10.9.0.2"], capture_output=True, text=True, timeout=30, check=False)
    check("ipip_link", link.returncode == 0, link.stderr.strip())
    # The guest's root is a real root: a program in a new mount namespace has, seen from outside, the
    # path it has inside (under a chroot it had not, and tests/support/journal.py's namespaces broke).
    sleep = tool("sleep")
    holder = subprocess.Popen([tool("unshare"), "--mount", "--propagation", "private", "--", sleep, "30"])
    seen = ""
    for _ in range(200):
        with contextlib.suppress(OSError):
            seen = os.readlink(f"/proc/{holder.pid}/exe")
        if seen == os.path.realpath(sleep):
            break
        time.sleep(0.05)
    holder.kill()
    holder.wait()
    check("mount_namespace", seen == os.path.realpath(sleep), seen)
    # The host's root is read-only under a writable layer of the guest's own: this must not reach the host.
    MARKER.write_text("written inside the guest\n")
    check("root_writable_in_guest", MARKER.read_text() == "written inside the guest\n", str(MARKER))
    check("release", True, os.uname().release)
    print("to stderr", file=sys.stderr)
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
