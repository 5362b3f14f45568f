"""A real systemd as PID 1 of a new PID + mount + network namespace, for tests of the installed units.

The recipe of ENVIRONMENT.md: ``unshare --pid --net --fork --mount --propagation private --mount-proc``
runs a boot script that mounts a private tmpfs over ``/run`` (so the host's /run, its journal and its
sockets are never touched), masks there every boot unit that would act on the host (tmpfiles would empty
the host's /tmp; enabled services would start on the host's file systems), keeps journald's journal in
that tmpfs only, and execs ``/lib/systemd/systemd --system`` into ``basic.target``. Unit files installed on
the host (``/lib/systemd/system``) are seen inside; the namespace's network is its own and is given a
name with ``ip netns attach`` so that the tests' topology helpers can wire it like any other namespace.

:meth:`Systemd.run` runs a command inside (``nsenter`` into its PID, mount and network namespaces).
Leaving :func:`booted` powers it off; if that does not end it in time, the whole namespace is killed (its
PID 1 dying ends every process in it) and the network name is detached.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.support.tools import tool

# Units that act on the host's shared file systems or network, or wait for things a test namespace lacks.
MASKED = (
    "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service", "systemd-tmpfiles-clean.service",
    "systemd-tmpfiles-clean.timer", "systemd-binfmt.service", "systemd-sysctl.service",
    "systemd-remount-fs.service", "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
    "systemd-pstore.service", "systemd-timesyncd.service", "systemd-modules-load.service",
    "systemd-journal-flush.service", "systemd-networkd.service", "systemd-networkd-wait-online.service",
    "systemd-resolved.service", "NetworkManager.service", "NetworkManager-wait-online.service",
    "e2scrub_reap.service", "postgresql.service", "uml-utilities.service", "getty.target",
    "console-getty.service", "getty@tty1.service", "timers.target", "remote-fs.target",
    "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "fstrim.timer", "dpkg-db-backup.timer",
    "e2scrub_all.timer", "logrotate.timer", "systemd-logind.service",
)

BOOT = """#!/bin/sh
# PID 1 of the test's namespaces (tests/support/systemd_boot.py): a private /run, host-touching units masked.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/systemd/system /run/lock /run/systemd/journald.conf.d
for u in {masked}; do ln -sf /dev/null /run/systemd/system/$u; done
printf '[Journal]\\nStorage=volatile\\nReadKMsg=no\\nForwardToSyslog=no\\nForwardToWall=no\\n' \\
    >/run/systemd/journald.conf.d/test.conf
exec env container=lxc /lib/systemd/systemd --system --unit=basic.target
"""


class SystemdError(RuntimeError):
    """systemd could not be booted or did not answer."""


class Systemd:
    """One booted systemd; ``name`` is its network namespace's name under ``ip netns``."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.unshare: subprocess.Popen[bytes] | None = None
        self.pid = 0

    # --- inside ---

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the namespaces; raises with its output when ``check`` and it fails."""
        out = subprocess.run([tool("nsenter"), "-t", str(self.pid), "-p", "-m", "-n", "--", *argv],
                             capture_output=True, text=True, timeout=timeout, check=False, input=input)
        if check and out.returncode:
            raise SystemdError(f"{' '.join(argv)} (exit {out.returncode}): {out.stdout}{out.stderr}")
        return out

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([tool("systemctl"), *args], check=check)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.systemctl("show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *matches: str) -> list[dict[str, Any]]:
        """``journalctl -o json MATCHES`` inside, one dict per entry."""
        out = self.run([tool("journalctl"), "--no-pager", "-o", "json", *matches], check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.unshare is not None and self.unshare.poll() is not None:
                raise SystemdError(f"systemd exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise SystemdError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    # --- life cycle ---

    def boot(self, timeout: float = 60) -> None:
        script = self.workdir / f"boot-{self.name}.sh"
        script.write_text(BOOT.format(masked=" ".join(MASKED)))
        script.chmod(0o755)
        self.unshare = subprocess.Popen(
            [tool("unshare"), "--pid", "--net", "--fork", "--mount", "--propagation", "private", "--mount-proc",
             str(script)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

        parent = str(self.unshare.pid)

        def child() -> bool:
            found = subprocess.run([tool("pgrep"), "-P", parent], capture_output=True, text=True,
                                   check=False).stdout.split()
            if found:
                self.pid = int(found[0])
            return bool(found)

        self.wait(child, 10, "the namespace's PID 1")
        subprocess.run([tool("ip"), "netns", "attach", self.name, str(self.pid)], check=True, capture_output=True)

        def running() -> bool:
            state = self.run([tool("systemctl"), "is-system-running"], check=False).stdout.strip()
            if state in ("degraded", "maintenance"):
                failed = self.run([tool("systemctl"), "--failed", "--no-legend"], check=False).stdout
                raise SystemdError(f"systemd is {state}: {failed}")
            return state == "running"

        self.wait(running, timeout, "systemd to reach running")

    def close(self) -> None:
        if self.unshare is not None and self.pid:
            with contextlib.suppress(Exception):  # whatever fails here, the kill below still ends it
                self.run([tool("systemctl"), "poweroff"], check=False, timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.unshare.wait(timeout=20)
        if self.unshare is not None and self.unshare.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.unshare.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                if self.pid:
                    os.kill(self.pid, signal.SIGKILL)
            self.unshare.wait(timeout=20)
        subprocess.run([tool("ip"), "netns", "delete", self.name], capture_output=True, check=False)


@contextlib.contextmanager
def booted(*names: str) -> Iterator[dict[str, Systemd]]:
    """Boot one systemd per name (each in its own namespaces); all are ended on leaving."""
    workdir = Path(tempfile.mkdtemp(prefix="mipd-systemd-"))
    machines: dict[str, Systemd] = {}
    try:
        for name in names:
            machines[name] = Systemd(name, workdir)
            machines[name].boot()
        yield machines
    finally:
        for machine in machines.values():
            machine.close()
        for script in workdir.iterdir():
            script.unlink()
        workdir.rmdir()
