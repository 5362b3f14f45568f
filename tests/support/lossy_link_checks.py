"""A lossy visited link (netem), run INSIDE a real kernel (tests/support/realkernel.py): the host kernel has no netem.

The roaming topology of tests/support/roaming.py with three real ``mipd run`` processes (home agent,
foreign agent 1, mobile node; events to a standalone journald in a private mount namespace, as in the
integration tests), all inside that kernel, whose files live in a tmpfs of its own on /mnt only. netem drops a share of
what both ends of visited link 1 send (the foreign agent's advertisements and replies, the node's
solicitations and requests; everything the node sends for its first 2.5 s there). The node is moved there
and must register all the same — its
retransmissions (1 s, then doubling, RFC 5944 3.6.3) converging — and the correspondent must reach it.

Prints one JSON line per check: {"check": name, "ok": bool, "detail": ...}.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORK = Path("/mnt/mipd-lossy")  # on a tmpfs of the guest's own (the journald namespace hides /run)
LOSS = sys.argv[1] if len(sys.argv) > 1 else "30%"


def record(name: str, ok: bool, detail: object) -> None:
    print(json.dumps({"check": name, "ok": bool(ok), "detail": detail}), flush=True)


def main() -> int:
    from tests.support.tools import tool  # noqa: PLC0415

    # This kernel's own mounts, never the host's: a tmpfs for the files, cgroup2 (journald needs it).
    subprocess.run([tool("mount"), "-t", "tmpfs", "lossy", "/mnt"], check=True)
    subprocess.run([tool("mount"), "-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"], check=True)
    WORK.mkdir(mode=0o700, exist_ok=True)
    tempfile.tempdir = str(WORK)  # every temporary file in that tmpfs, never the host's /tmp
    from tests.integration.test_mobile_node_daemon import ping  # noqa: PLC0415
    from tests.support import roaming  # noqa: PLC0415
    from tests.support.journal import running_journald  # noqa: PLC0415
    from tests.support.netns import topology  # noqa: PLC0415

    adverts = {"advertisement_interval": 0.5, "advertisement_lifetime": 3}
    profiles = {
        "ha": roaming.home_agent_profile(**adverts, foreign_agents=[roaming.peer(roaming.FA1, 500, roaming.KF1)]),
        "fa1": roaming.foreign_agent_profile(roaming.FA1, 500, roaming.KF1, **adverts),
        "mn": roaming.mobile_node_profile(lifetime=120),
    }

    def workdir(name: str) -> Path:
        (WORK / name).mkdir()
        return WORK / name

    (WORK / "journal").mkdir()
    with running_journald(WORK / "journal") as journal, topology() as topo:
        roaming.build(topo)
        with roaming.started(journal, topo, profiles, "lossy", workdir) as daemons:
            def status() -> dict[str, Any]:
                result: dict[str, Any] = daemons["mn"].json("status")
                return result

            deadline = time.monotonic() + 30
            while status()["location"] != "home" and time.monotonic() < deadline:
                time.sleep(0.2)
            def netem(ns: str, device: str, verb: str, loss: str) -> None:
                subprocess.run([tool("ip"), "netns", "exec", topo.ns(ns), tool("tc"), "qdisc", verb, "dev", device,
                                "root", "netem", "loss", loss], check=True, capture_output=True)

            netem("fa1", "visit0", "add", LOSS)
            netem("mn", "eth0", "add", "100%")  # the node's first requests are all lost ...
            sent_before = len(journal.entries(count=0, timeout=0, MIP_EVENT="registration.sent",
                                              MIP_INSTANCE="lossy-mn"))
            moved = time.monotonic()
            roaming.move(topo, "br-v1")
            time.sleep(2.5)
            netem("mn", "eth0", "change", LOSS)  # ... then the link is merely lossy both ways
            registered_after = None
            deadline = moved + 120
            while time.monotonic() < deadline:
                state = status()
                if state["registered"] and state["care_of_address"] == roaming.FA1:
                    registered_after = time.monotonic() - moved
                    break
                time.sleep(0.2)
            sent = len(journal.entries(count=0, timeout=0, MIP_EVENT="registration.sent",
                                       MIP_INSTANCE="lossy-mn")) - sent_before
            bindings = daemons["ha"].json("bindings")["bindings"]
            visitors = daemons["fa1"].json("visitors")["visitors"]
            stats = subprocess.run([tool("ip"), "netns", "exec", topo.ns("mn"), tool("tc"), "-s", "qdisc", "show",
                                    "dev", "eth0"], capture_output=True, text=True, check=False).stdout
            record("registers_through_the_lossy_link", registered_after is not None and
                   [b["care_of_address"] for b in bindings] == [roaming.FA1] and
                   [v["state"] for v in visitors] == ["active"],
                   {"loss": LOSS, "seconds": None if registered_after is None else round(registered_after, 1),
                    "requests_sent": sent, "bindings": bindings, "visitors": visitors,
                    "netem_mn": " ".join(stats.split())[:300]})
            record("requests_were_retransmitted", sent >= 3, {"requests_sent": sent})
            reached = any(ping(topo, "cn", roaming.MN, count=5) for _ in range(3))
            record("correspondent_reaches_the_node", reached, {})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
