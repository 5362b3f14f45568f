"""Network namespaces for integration tests: made by the test, removed by it, also on failure.

``Topology`` creates namespaces joined by veth pairs and deletes them (and so their links) on
exit. ``netns_socket`` opens a socket *inside* a namespace and hands it to the test process:
a child started with ``ip netns exec`` creates it and passes the descriptor back over a Unix
socket pair (SCM_RIGHTS). A socket stays in the namespace it was created in, so the test can then
send and receive as a host on that link without running its code in a subprocess.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.support.tools import tool

_CHILD = """
import socket, sys
parent = socket.socket(fileno=int(sys.argv[1]))
family, kind, proto, host, port = (int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
                                   int(sys.argv[6]))
s = socket.socket(family, kind, proto)
if family == socket.AF_PACKET:
    s.bind((host, socket.ntohs(proto)))  # socket() takes network order, bind() host order
else:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    if host:
        s.bind((host, port))
socket.send_fds(parent, [b"fd"], [s.fileno()])
"""


def ip(*args: str) -> None:
    """Run ``ip ARGS`` and fail loudly with its stderr."""
    out = subprocess.run([tool("ip"), *args], check=False, capture_output=True, text=True, timeout=30)
    if out.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")


@dataclass
class Topology:
    """Namespaces named ``<prefix>-<name>``, links between them, all removed by :meth:`close`."""

    prefix: str = field(default_factory=lambda: "mipt" + uuid.uuid4().hex[:6])
    namespaces: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        if full not in self.namespaces:
            ip("netns", "add", full)
            self.namespaces.append(full)
            ip("-n", full, "link", "set", "lo", "up")
        return full

    def link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        """A veth pair: ``a_if`` in namespace ``a`` with ``a_addr`` (CIDR), and likewise for b."""
        ns_a, ns_b = self.ns(a), self.ns(b)
        tmp_a, tmp_b = f"t{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
        ip("link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        for tmp, ns, name, addr in ((tmp_a, ns_a, a_if, a_addr), (tmp_b, ns_b, b_if, b_addr)):
            ip("link", "set", tmp, "netns", ns)
            ip("-n", ns, "link", "set", tmp, "name", name)
            ip("-n", ns, "addr", "add", addr, "dev", name)
            ip("-n", ns, "link", "set", name, "up")

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run([tool("ip"), "netns", "del", ns], check=False, capture_output=True, timeout=30)
        self.namespaces.clear()


@contextmanager
def topology() -> Iterator[Topology]:
    topo = Topology()
    try:
        yield topo
    finally:
        topo.close()


def netns_socket(ns: str, kind: int = socket.SOCK_DGRAM, proto: int = 0, bind: tuple[str, int] | None = None,
                 family: int = socket.AF_INET) -> socket.socket:
    """A socket created inside namespace ``ns`` (optionally bound), usable from this process.

    For ``family=AF_PACKET`` give ``bind=(interface, 0)``; ``proto`` is then the ethertype the
    socket receives (in host byte order; it is converted)."""
    mine, theirs = socket.socketpair()
    if family == socket.AF_PACKET:
        proto = socket.htons(proto)
    with mine, theirs:
        host, port = bind if bind else ("", 0)
        child = subprocess.run(
            [tool("ip"), "netns", "exec", ns, sys.executable, "-c", _CHILD,
             str(theirs.fileno()), str(int(family)), str(int(kind)), str(proto), host, str(port)],
            check=False, pass_fds=(theirs.fileno(),), capture_output=True, text=True, timeout=30,
        )
        if child.returncode:
            raise RuntimeError(f"could not open a socket in {ns}: {child.stderr.strip()}")
        _, fds, _, _ = socket.recv_fds(mine, 16, 1)
    sock = socket.socket(family, kind, proto, fileno=fds[0])
    os.set_inheritable(sock.fileno(), False)
    return sock


def sysctl(ns: str, name: str) -> str:
    """The value of ``/proc/sys/net/ipv4/NAME`` inside namespace ``ns``."""
    out = subprocess.run([tool("ip"), "netns", "exec", ns, sys.executable, "-c",
                          f"print(open('/proc/sys/net/ipv4/{name}').read().strip())"],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def set_sysctl(ns: str, name: str, value: str) -> None:
    """Write ``/proc/sys/net/ipv4/NAME`` inside namespace ``ns``."""
    subprocess.run([tool("ip"), "netns", "exec", ns, sys.executable, "-c",
                    f"open('/proc/sys/net/ipv4/{name}', 'w').write('{value}')"],
                   capture_output=True, text=True, timeout=30, check=True)


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with this thread in namespace ``name``: sockets made there stay there. Quicker than
    :func:`netns_socket` (no child process), which counts where Python starts slowly (a guest kernel)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        if _libc.setns(own, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(own)
        os.close(target)
