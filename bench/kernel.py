"""The kernel data path under user-mode Linux: boots linux.uml once and runs bench/uml_routes.py.

The boot follows tests/support/uml.py (its init script, the host root through hostfs, modules
from /usr/lib/uml/modules) but keeps hold of the UML process group until it is gone: on a
timeout, an error or Ctrl-C the whole group is killed and the temporary directory removed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.tools import tool
from tests.support.uml import _INIT, REPOSITORY, UML_MODULES, uml_available

SCRIPT = Path(__file__).resolve().parent / "uml_routes.py"
MODULES = ("ipip", "ip_gre", "veth")


def run(count: int, *, dataplane: bool = True, timeout: float = 300.0) -> dict[str, Any]:
    """Boot UML, measure ``count`` routes (and the whole home-agent data plane unless ``dataplane``
    is false); the script's JSON plus ``boot_s`` (boot to power-off)."""
    why = uml_available()
    if why is not None:
        raise RuntimeError(why)
    out = Path(tempfile.mkdtemp(prefix="mipd-bench-uml-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        init = out / "init.sh"
        init.write_text(_INIT.format(
            repo=shlex.quote(str(REPOSITORY)), modules=shlex.quote(str(UML_MODULES)),
            module_list=" ".join(MODULES), modprobe=shlex.quote(tool("modprobe")), out=shlex.quote(str(out)),
            python=shlex.quote(sys.executable), script=shlex.quote(str(SCRIPT)),
            args=str(count) if dataplane else f"{count} --tunnels-only"))
        init.chmod(0o755)
        for name in ("stdout", "stderr"):
            (out / name).write_text("")
        started = time.monotonic()
        process = subprocess.Popen(
            [tool("linux.uml"), "mem=512M", "rootfstype=hostfs", "rw", f"init={init}", f"uml_dir={out}",
             "con=null", "con0=fd:0,fd:1", "quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        console, _ = process.communicate(timeout=timeout)
        seconds = time.monotonic() - started
        rc = out / "rc"
        stdout, stderr = (out / "stdout").read_text(), (out / "stderr").read_text()
        if not rc.exists() or rc.read_text().strip() != "0":
            raise RuntimeError(f"the UML script failed: {stderr[-1500:] or console.decode(errors='replace')[-1500:]}")
        result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        result["boot_s"] = seconds
        return result
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        shutil.rmtree(out, ignore_errors=True)
