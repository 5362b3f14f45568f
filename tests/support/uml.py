"""Run a Python script inside user-mode Linux, for tests that need kernel ipip/gre.

The host kernel has no ipip or gre (ENVIRONMENT.md); Debian's user-mode-linux kernel has them as
modules. :func:`run_in_uml` boots ``linux.uml`` once with the host root as its root file system
(hostfs, so this checkout and its virtual environment are visible inside), with a generated init
script as PID 1 that mounts proc/sys/tmpfs, makes the UML kernel's modules visible at
/run/kroot/lib/modules/$(uname -r) (``modprobe -d``: nothing is created on the host), loads the
modules asked for, runs the script with the interpreter of the running virtual environment
(``sys.executable``: CI checks out elsewhere), writes its stdout,
stderr and exit status to files in a temporary directory and powers off. linux.uml's own exit
status says nothing about the script's, so the host reads those files. The host is not written
outside that directory: UML's pid/mconsole files go there too (``uml_dir``, not ~/.uml), and the
power-off writes no wtmp record (the host's /var/log/wtmp is this kernel's through hostfs).

The temporary directory is removed afterwards; on a timeout the whole UML process group is killed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.tools import tool

REPOSITORY = Path(__file__).resolve().parents[2]
UML_MODULES = Path("/usr/lib/uml/modules")
DEFAULT_MODULES = ("ipip", "ip_gre", "veth", "bridge")

_INIT = """#!/bin/sh
# PID 1 of a user-mode Linux kernel (tests/support/uml.py). Runs one script, records, powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={repo} HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /run
mkdir -p /run/netns
# The modules, seen at /run/kroot/lib/modules/$(uname -r): only tmpfs is written, never the host.
mkdir -p /run/kroot/lib/modules/$(uname -r)
mount --bind {modules}/$(uname -r) /run/kroot/lib/modules/$(uname -r)
for m in {module_list}; do {modprobe} -d /run/kroot $m || echo "modprobe $m failed" >>{out}/stderr; done
cd {repo}
{python} {script} {args} >>{out}/stdout 2>>{out}/stderr
echo $? >{out}/rc.partial
mv {out}/rc.partial {out}/rc
sync
# --no-wtmp: hostfs makes the host's /var/log/wtmp this kernel's; leave it alone.
poweroff -f --no-wtmp 2>/dev/null
echo o >/proc/sysrq-trigger
"""


@dataclass(frozen=True)
class UmlResult:
    """What the script inside UML left behind, and the kernel's console for diagnosis."""

    returncode: int | None  # None: the script never finished (UML crashed or timed out)
    stdout: str
    stderr: str
    console: str
    seconds: float  # boot to power-off, as the host saw it


def uml_available() -> str | None:
    """Why UML tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "user-mode Linux tests need root (hostfs writes, netns inside)"
    if shutil.which("linux.uml", path=os.pathsep.join(["/usr/bin", "/usr/local/bin"])) is None:
        return "linux.uml is not installed (Debian package user-mode-linux; `make test` installs it)"
    if not UML_MODULES.is_dir():
        return f"{UML_MODULES} is missing (Debian package user-mode-linux)"
    return None


def run_in_uml(script: Path, args: Sequence[str] = (), *, modules: Sequence[str] = DEFAULT_MODULES,
               timeout: float = 120.0, memory: str = "512M") -> UmlResult:
    """Boot UML once, run ``python script args`` as root inside it, return what it printed."""
    out = Path(tempfile.mkdtemp(prefix="mipd-uml-"))
    try:
        init = out / "init.sh"
        init.write_text(_INIT.format(
            repo=shlex.quote(str(REPOSITORY)), modules=shlex.quote(str(UML_MODULES)),
            module_list=" ".join(shlex.quote(m) for m in modules), modprobe=shlex.quote(tool("modprobe")),
            out=shlex.quote(str(out)), python=shlex.quote(sys.executable),
            script=shlex.quote(str(script)), args=" ".join(shlex.quote(a) for a in args)))
        init.chmod(0o755)
        for name in ("stdout", "stderr"):
            (out / name).write_text("")
        started = time.monotonic()
        process = subprocess.Popen(
            [tool("linux.uml"), f"mem={memory}", "rootfstype=hostfs", "rw", f"init={init}",
             f"uml_dir={out}", "con=null", "con0=fd:0,fd:1", "quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            console, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            console, _ = process.communicate()
        seconds = time.monotonic() - started
        rc_file = out / "rc"
        returncode = int(rc_file.read_text().strip()) if rc_file.exists() else None
        return UmlResult(returncode, (out / "stdout").read_text(), (out / "stderr").read_text(),
                         console.decode(errors="replace"), seconds)
    finally:
        shutil.rmtree(out, ignore_errors=True)
