"""Throughput through a real home agent's tunnel: iperf3 TCP from a correspondent on the home link to a
co-located mobile node on a visited link, through ``mipd run`` daemons in network namespaces.

    python bench/throughput.py SECONDS BACKEND [udp]

    cn 10.1.0.2 --- br-home --- [ha] v3 10.6.0.1 --- br-v3 --- mn 10.6.0.50 (co-located), home address 10.1.0.10

The topology and profiles are the roaming tests' (tests/support/roaming.py). The home agent runs the
``BACKEND`` tunnel backend (``userspace`` on the host; ``kernel`` inside a real kernel, which
bench/throughput_kernel's caller boots); the node registers with its co-located care-of address and
decapsulates itself. With ``udp`` the node's profile asks for RFC 3519 UDP tunnelling
(``nat_traversal: force``): the measurement counts only when the home agent's binding says
``udp_tunnel: true``, else the reason is printed and the figure is null -- never the IP-in-IP figure
under the UDP name.

Prints one JSON object: ``mbit_s`` (iperf3's receiver side), ``packets_s`` (tunnelled packets the home
agent sent towards the node per second, from its visited link's counters), ``seconds``, ``retransmits``,
or ``error``. Everything it creates is removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mipd.demo.topology import software_checksums
from tests.support import roaming
from tests.support.netns import Topology
from tests.support.tools import tool, venv_script

SLOWDOWN = float(os.environ.get("MIPD_TEST_SLOWDOWN", "1"))


class Daemon:
    """``mipd run`` in a namespace (no journal: its events go to stderr, into a file)."""

    def __init__(self, topo: Topology, work: Path, name: str, text: str) -> None:
        self.socket = work / f"{name}.sock"
        self.profile = work / f"{name}.yaml"
        self.stderr = work / f"{name}.stderr"
        self.profile.write_text(text + f"state_directory: {work / name}\ncontrol_socket: {self.socket}\n")
        os.chmod(self.profile, 0o600)
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [tool("ip"), "netns", "exec", topo.ns(name), venv_script("mipd"), "run", "--profile",
                 str(self.profile), "--instance", f"bench-{name}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 20 * SLOWDOWN
        while not self.socket.exists() or self.mipctl("status").returncode:
            if self.process.poll() is not None:
                first = self.stderr.read_text().splitlines()[:1]
                raise RuntimeError(f"mipd ({name}) exited {self.process.returncode}: {' '.join(first)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mipd ({name}) did not answer: {self.stderr.read_text()[-800:]}")
            time.sleep(0.1)

    def mipctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([venv_script("mipctl"), "--socket", str(self.socket), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    def json(self, *args: str) -> Any:
        out = self.mipctl(*args, "--json")
        if out.returncode:
            raise RuntimeError(f"mipctl {' '.join(args)}: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10 * SLOWDOWN)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def world(backend: str, udp: bool) -> Iterator[tuple[Topology, Daemon, Daemon]]:
    """The roaming topology, a home agent on ``backend`` and a node registered co-located on br-v3."""
    topo = Topology(prefix="mipq" + os.urandom(3).hex())
    daemons: list[Daemon] = []
    with tempfile.TemporaryDirectory(prefix="mipd-throughput-") as temporary:
        work = Path(temporary)
        try:
            roaming.build(topo)
            for ns in ("cn", "mn"):
                software_checksums(topo.ns(ns), "eth0")
            node: dict[str, object] = {"lifetime": 300, "care_of": "auto", "reverse_tunneling": True}
            if udp:
                node["nat_traversal"] = "force"
            ha = Daemon(topo, work, "ha", roaming.home_agent_profile(tunnel=f"{{backend: {backend}}}"))
            daemons.append(ha)
            roaming.move(topo, "br-v3")
            roaming.ip("-n", topo.ns("mn"), "addr", "add", f"{roaming.COLOCATED}/24", "dev", "eth0")
            mn = Daemon(topo, work, "mn", roaming.mobile_node_profile(**node))
            daemons.append(mn)
            deadline = time.monotonic() + 30 * SLOWDOWN
            while not ((s := mn.json("status"))["registered"] and s["care_of_address"] == roaming.COLOCATED):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the node did not register co-located: {s}")
                time.sleep(0.2)
            yield topo, ha, mn
        finally:
            for daemon in reversed(daemons):
                daemon.close()
            topo.close()


def tx_packets(topo: Topology, ns: str, interface: str) -> int:
    path = f"/sys/class/net/{interface}/statistics/tx_packets"
    out = subprocess.run([tool("ip"), "netns", "exec", topo.ns(ns), tool("cat"), path],
                         capture_output=True, text=True, timeout=30, check=True)
    return int(out.stdout)


def iperf(topo: Topology, seconds: int) -> dict[str, Any]:
    """iperf3 TCP from cn to the node's home address; the JSON of the client."""
    server = subprocess.Popen([tool("ip"), "netns", "exec", topo.ns("mn"), tool("iperf3"), "-s", "-1", "-B",
                               roaming.MN], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5 * SLOWDOWN)
        out = subprocess.run([tool("ip"), "netns", "exec", topo.ns("cn"), tool("iperf3"), "-c", roaming.MN,
                              "-t", str(seconds), "-J", "--connect-timeout", str(int(5000 * SLOWDOWN))],
                             capture_output=True, text=True, timeout=60 + 4 * seconds * SLOWDOWN, check=False)
        report: dict[str, Any] = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
        if out.returncode or "end" not in report:
            raise RuntimeError(f"iperf3 exited {out.returncode}: {report.get('error') or out.stderr.strip()}")
        return report
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=10)


def measure(seconds: int, backend: str, udp: bool) -> dict[str, Any]:
    with world(backend, udp) as (topo, ha, _mn):
        binding = next(b for b in ha.json("bindings")["bindings"] if b["home_address"] == roaming.MN)
        if udp and binding.get("udp_tunnel") is not True:
            return {"error": "the home agent did not grant a UDP tunnel (binding without udp_tunnel: true)"}
        before = tx_packets(topo, "ha", "v3")
        report = iperf(topo, seconds)
        sent = tx_packets(topo, "ha", "v3") - before
        received = report["end"]["sum_received"]
        duration = float(received["seconds"])
        return {"mbit_s": received["bits_per_second"] / 1e6, "packets_s": sent / duration, "seconds": duration,
                "retransmits": report["end"]["sum_sent"].get("retransmits"), "backend": backend,
                "udp_tunnel": bool(binding.get("udp_tunnel"))}


def on_host(seconds: int, *, udp: bool) -> dict[str, Any]:
    """This script on the host's kernel, userspace backend (``udp``: through the UDP tunnel)."""
    argv = [sys.executable, "-m", "bench.throughput", str(seconds), "userspace", *(["udp"] if udp else [])]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120 + 4 * seconds, check=False,
                         cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"bench.throughput exited {out.returncode}: {out.stderr.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if udp and "error" in result:
        result["error"] = f"no UDP tunnel ({result['error']})"
    return result


def in_kernel(seconds: int, timeout: float = 420.0) -> dict[str, Any]:
    """This script inside a real kernel (tests/support/realkernel.py), kernel backend."""
    from tests.support.realkernel import json_lines, kernel_unavailable, run_in_kernel  # noqa: PLC0415

    why = kernel_unavailable()
    if why is not None:
        raise RuntimeError(f"no real Linux kernel: {why}")
    result = run_in_kernel(Path(__file__).resolve(), [str(seconds), "kernel"],
                           modules=("ipip", "ip_gre", "veth", "bridge", "tun"), timeout=timeout, memory="1024M")
    lines = json_lines(result.stdout)
    if not lines:
        raise RuntimeError(f"bench/throughput.py under {result.runner} exited {result.returncode}: "
                           f"{result.stderr[-1500:] or result.console[-1500:]}")
    measured: dict[str, Any] = lines[-1]
    measured.update(runner=f"{result.runner} ({result.why})", guest_kernel=f"{result.kernel} ({result.runner})",
                    boot_s=round(result.seconds, 1))
    return measured


def main() -> None:
    seconds, backend = int(sys.argv[1]), sys.argv[2]
    try:
        result = measure(seconds, backend, udp="udp" in sys.argv[3:])
    except (RuntimeError, OSError, ValueError, KeyError, StopIteration, subprocess.SubprocessError) as exc:
        result = {"error": str(exc)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
