"""A real ``mipd run`` home agent for integration tests, in a network namespace.

The topology: the home agent's namespace ``ha`` has the home link ``home0`` (10.1.0.1/24, shared
with namespace ``home``, 10.1.0.2) and a link ``visit0`` (10.2.0.1/24) to the visited network
``visited``, where the foreign agent (10.2.0.2) and a mobile node's co-located care-of address
(10.2.0.50) live, and a link ``far0`` (10.3.0.1/24) to a correspondent beyond the home agent
(namespace ``far``, 10.3.0.2). The daemon runs inside the journal fixture's mount namespace, so its events
reach that journald. Everything is stopped and removed by :meth:`HomeAgentDaemon.close`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.journal import Journald
from tests.support.netns import Topology, netns_socket
from tests.support.tools import tool, venv_script

HA, HOME_PEER, FA, COLOCATED, FAR = "10.1.0.1", "10.1.0.2", "10.2.0.2", "10.2.0.50", "10.3.0.2"
# How many times slower than on the host everything runs: tests/support/realkernel.py sets it in an
# emulated guest kernel (QEMU's TCG), where starting a Python takes seconds.
SLOWDOWN = float(os.environ.get("MIPD_TEST_SLOWDOWN", "1"))
NODES = {f"10.1.0.{10 + i}": (256 + i, bytes([i + 1]) * 16) for i in range(8)}  # home address -> (spi, key)
NONCE_NODE = "10.1.0.30"
NONCE_SA = (300, bytes(range(100, 116)))
FA_SA = (400, bytes(range(200, 216)))


def build_topology(topo: Topology) -> None:
    topo.link("ha", "home0", f"{HA}/24", "home", "eth0", f"{HOME_PEER}/24")
    topo.link("ha", "visit0", "10.2.0.1/24", "visited", "eth0", f"{FA}/24")
    visited = topo.ns("visited")
    subprocess.run([tool("ip"), "-n", visited, "addr", "add", f"{COLOCATED}/24", "dev", "eth0"], check=True)
    topo.link("ha", "far0", "10.3.0.1/24", "far", "eth0", f"{FAR}/24")  # a correspondent beyond the HA
    for ns, gateway in ((visited, "10.2.0.1"), (topo.ns("home"), HA), (topo.ns("far"), "10.3.0.1")):
        subprocess.run([tool("ip"), "-n", ns, "route", "add", "default", "via", gateway], check=True)


def profile_text(state: Path, sock: Path, extra_nodes: str = "", **overrides: Any) -> str:
    nodes = "".join(f"  - {{home_address: {home}, spi: {spi}, key: \"{key.hex()}\"}}\n"
                    for home, (spi, key) in NODES.items())
    nodes += (f"  - {{home_address: {NONCE_NODE}, spi: {NONCE_SA[0]}, key: \"{NONCE_SA[1].hex()}\","
              " replay: nonce}\n") + extra_nodes
    settings = {"max_lifetime": 900, **overrides}
    lines = "".join(f"{k}: {v}\n" for k, v in settings.items())
    return (f"role: home-agent\ninterface: home0\naddress: {HA}\nhome_network: 10.1.0.0/24\n"
            f"state_directory: {state}\ncontrol_socket: {sock}\n{lines}"
            f"mobile_nodes:\n{nodes}"
            f"foreign_agents:\n  - {{address: {FA}, spi: {FA_SA[0]}, key: \"{FA_SA[1].hex()}\"}}\n")


class HomeAgentDaemon:
    """``mipd run`` for a profile written into ``workdir``, inside the journal's mount namespace and
    the network namespace ``namespace`` (any role: write its profile with :meth:`write_profile`)."""

    def __init__(self, journal: Journald, topo: Topology, workdir: Path, instance: str, namespace: str = "ha") -> None:
        self.journal = journal
        self.topo = topo
        self.namespace = namespace
        self.instance = instance
        self.profile = workdir / f"{instance}.yaml"
        self.socket = workdir / f"{instance}.sock"
        self.state = workdir / "state"
        self.stderr = workdir / f"{instance}.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.write_profile()

    def write_profile(self, text: str | None = None, **overrides: Any) -> None:
        self.profile.write_text(text if text is not None else profile_text(self.state, self.socket, **overrides))
        os.chmod(self.profile, 0o600)

    def start(self, wait: bool = True) -> None:
        with self.stderr.open("ab") as err:
            # Network namespace first (its /run/netns handle is only valid in the host's mount
            # namespace), then the journal's mount namespace, then mipd.
            self.process = subprocess.Popen(
                [tool("ip"), "netns", "exec", self.topo.ns(self.namespace), tool("nsenter"), "-t",
                 str(self.journal.pid), "-m", "--", venv_script("mipd"), "run", "--profile", str(self.profile),
                 "--instance", self.instance],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )
        if wait:
            deadline = time.monotonic() + 20 * SLOWDOWN
            # The socket first: each mipctl is a Python start, which competes with mipd's own.
            while not self.socket.exists() or self.mipctl("status").returncode != 0:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mipd exited {self.process.returncode}: {self.stderr.read_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mipd did not answer on {self.socket}: {self.stderr.read_text()}")
                time.sleep(0.05)

    def mipctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([venv_script("mipctl"), "--socket", str(self.socket), *args],
                              capture_output=True, text=True, timeout=30, check=False)

    def json(self, *args: str) -> Any:
        out = self.mipctl(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 20) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class Peer:
    """A UDP socket in a namespace, bound to ``address``: a mobile node or foreign agent."""

    def __init__(self, ns: str, address: str) -> None:
        self.sock = netns_socket(ns, socket.SOCK_DGRAM, 0, (address, 0))
        self.port = self.sock.getsockname()[1]

    def ask(self, payload: bytes, to: str = HA, timeout: float = 3.0) -> tuple[bytes, tuple[str, int]] | None:
        """Send ``payload`` to UDP 434 and wait for one answer (None if none comes)."""
        self.sock.sendto(payload, (to, 434))
        self.sock.settimeout(timeout)
        try:
            data, addr = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        return data, addr

    def close(self) -> None:
        self.sock.close()
