"""The real-kernel runner (tests/support/realkernel.py) itself: what a script gets inside, and what comes back.

One boot per runner this machine has: the runner that is chosen (user-mode Linux where it boots, else
QEMU) and QEMU as well where user-mode Linux was chosen, so QEMU is tried on every machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import realkernel
from tests.support.realkernel import KernelChecks, choose_runner, run_checks

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "realkernel_probe.py"
MODULES = ("ipip", "ip_gre", "veth", "tun", "sch_netem")
CHECKS = ["modules_loaded", "root", "ipip_link", "mount_namespace", "root_writable_in_guest"]


@contextlib.contextmanager
def forced(runner: str) -> Iterator[None]:
    saved = os.environ.get("MIPD_KERNEL_RUNNER")
    os.environ["MIPD_KERNEL_RUNNER"] = runner
    choose_runner.cache_clear()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MIPD_KERNEL_RUNNER", None)
        else:
            os.environ["MIPD_KERNEL_RUNNER"] = saved
        choose_runner.cache_clear()


@pytest.fixture(scope="module", params=["chosen", "qemu"])
def probe(request: pytest.FixtureRequest) -> Iterator[KernelChecks]:
    # Where QEMU is the chosen runner, it boots twice: the boot is the cheap part of this test.
    with forced("qemu") if request.param == "qemu" else contextlib.nullcontext():
        yield run_checks(SCRIPT, modules=MODULES, timeout=180)


@pytest.mark.parametrize("name", CHECKS)
def test_the_guest_offers(probe: KernelChecks, name: str) -> None:
    probe.assert_ok(name)


def test_exit_status_output_and_runner_come_back(probe: KernelChecks) -> None:
    assert probe.failure is None, probe.failure
    result = probe.result
    assert result is not None
    assert result.returncode == 3
    assert result.stderr.strip().endswith("to stderr")
    assert "to stderr" not in result.stdout
    assert result.runner in ("uml", "qemu-tcg", "qemu-kvm") and result.why
    assert probe.entries["release"]["detail"] == result.kernel
    assert result.seconds > 0


def test_the_guest_does_not_write_the_host(probe: KernelChecks) -> None:
    assert probe.failure is None, probe.failure
    assert probe.entries["root_writable_in_guest"]["ok"]
    assert not Path("/etc/mipd-realkernel-probe").exists()


def test_an_unknown_runner_is_refused_with_the_choices() -> None:
    with forced("bochs"):
        chosen = choose_runner()
        assert chosen == "MIPD_KERNEL_RUNNER='bochs': use uml, qemu or auto"
        with pytest.raises(AssertionError, match="no real Linux kernel to run the check under: MIPD_KERNEL_RUNNER"):
            realkernel.require_kernel()


def test_the_generic_kernel_has_9p_and_the_modules_resolve() -> None:
    release = realkernel.qemu_kernel()
    assert release is not None and not release.endswith("-cloud-amd64")
    order = [path.name for path in realkernel._module_order(release, realkernel.INITRAMFS_MODULES)]
    # Every module comes after what it depends on, and each once.
    assert len(order) == len(set(order))
    for first, then in (("9pnet.ko", "9pnet_virtio.ko"), ("9pnet.ko", "9p.ko"), ("virtio_ring.ko", "virtio.ko"),
                        ("virtio.ko", "virtio_pci.ko"), ("netfs.ko", "9p.ko")):
        assert order.index(first) < order.index(then), order
    assert "overlay.ko" in order
