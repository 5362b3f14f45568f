"""Host settings a home agent needs, set at start, reported, and restored at stop.

- ``net.ipv4.ip_forward = 1``: the home agent forwards intercepted packets into tunnels and
  decapsulated ones out of them; proxy-neighbour entries are only answered when forwarding.
- ``send_redirects = 0`` (``all`` and the home interface; the kernel ORs them): the home agent
  must not tell home-link hosts to bypass it for an away node.
- ``rp_filter``: strict reverse-path filtering is kept on the tunnel devices (only away home
  addresses route back through them), but ``all`` is lowered to 0 and strict interfaces (1) to
  loose (2): an away node that does not reverse-tunnel sends from its home address through its
  visited network (RFC 5944 5.6), and strict filtering on our other interfaces would drop it.
  The kernel uses the larger of ``all`` and the interface's value.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc/sys/net/ipv4")


class HostSettings:
    """Writes the settings, remembers what was there, puts it back on :meth:`restore`."""

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self._saved: dict[Path, str] = {}

    def _set(self, relative: str, value: str) -> None:
        path = self.proc / relative
        old = path.read_text().strip()
        if old != value:
            self._saved.setdefault(path, old)
            path.write_text(value)

    def apply(self, home_interface: str) -> str:
        """Apply the home agent's settings; returns a one-line report for daemon.started."""
        self._set("ip_forward", "1")
        self._set("conf/all/send_redirects", "0")
        self._set(f"conf/{home_interface}/send_redirects", "0")
        self._set("conf/all/rp_filter", "0")
        for conf in sorted((self.proc / "conf").iterdir()):
            if conf.name in ("all", "default") or conf.name.startswith("mip"):
                continue
            if (conf / "rp_filter").read_text().strip() == "1":
                self._set(f"conf/{conf.name}/rp_filter", "2")
        changed = ", ".join(f"{p.relative_to(self.proc)} {old}->{p.read_text().strip()}"
                            for p, old in self._saved.items())
        return f"ip_forward=1, send_redirects=0, rp_filter loose; changed: {changed or 'nothing'}"

    def restore(self) -> None:
        for path, old in reversed(list(self._saved.items())):
            try:
                path.write_text(old)
            except OSError:
                continue  # an interface that went away took its setting with it
        self._saved.clear()
