"""Run a Python script under a real Linux kernel that has ipip, ip_gre, veth, tun and sch_netem.

The host kernel has none of those (README, "Development"), so the kernel-tunnel tests, the demo's
kernel tour, the lossy link and ``make bench``'s kernel section boot a kernel of their own through
this one API::

    result = run_in_kernel(SCRIPT, ["--flag"], modules=("ipip", "veth"), timeout=300)
    result.returncode, result.stdout, result.stderr   # what the script printed, and its exit status
    result.runner, result.why                         # which kernel ran it, and why that one

Two runners, chosen once per process (:func:`choose_runner`):

- **user-mode Linux** (``linux.uml``, Debian's user-mode-linux): about 2 s to boot where it works, so
  it is tried first, with a probe boot that runs ``true``. The host's root comes through hostfs, as
  the lower layer of a tmpfs overlay the guest pivots into, so that, as under QEMU, nothing on the host
  is written but the run's own directory. It does not boot on every CPU: on an Intel
  Xeon with AMX, UML 6.1 panics before init ("ptrace set fp regs failed"), because it cannot hold
  that CPU's larger XSAVE state.
- **QEMU** (``qemu-system-x86_64``) with Debian's own kernel (linux-image-amd64): works on any x86-64
  host. KVM is used only where it is real (the kvm_intel or kvm_amd module loaded); otherwise TCG,
  whose emulated CPU (``-cpu max``) does not depend on the host's. A ``/dev/kvm`` without either
  module (a paravirtual hypervisor) crashes stock kernels early in boot, and QEMU then pauses the
  guest instead of exiting. The guest has no network device (``-nic none``); the host's root file
  system is shared read-only over 9p under a tmpfs overlay, so this checkout and its virtual
  environment are visible and nothing on the host is written but the run's own directory, which is
  shared writable at the same path. A small initramfs (busybox-static, the virtio/9p/overlay
  modules) mounts all that, runs the script as root with a clean environment, writes its exit
  status there and powers the guest off. A hand-written command line rather than virtme-ng: it
  needs no extra package and boots in about 3 s under TCG where virtme-ng took 20-30 s.

``MIPD_KERNEL_RUNNER=uml`` or ``=qemu`` forces one runner (e.g. to try QEMU where UML boots).
Every launch runs under a timeout, in its own process group, which is killed on a timeout, an error
or Ctrl-C; the run's temporary directory is removed afterwards. When no runner works,
:func:`kernel_unavailable` says what is missing and the tests that need a kernel fail with it.
"""

from __future__ import annotations

import atexit
import functools
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.tools import ToolError, tool

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_MODULES = ("ipip", "ip_gre", "veth", "bridge")
UML_MODULES = Path("/usr/lib/uml/modules")
BOOT = Path("/boot")
HOST_MODULES = Path("/lib/modules")
# What the initramfs loads to reach the host's root over 9p and lay a tmpfs overlay on it.
INITRAMFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
PROBE_TIMEOUT = 20.0
# What a script inside sees as MIPD_TEST_SLOWDOWN (tests/support/daemon.py scales its waits by it):
# under TCG a Python start takes seconds.
SLOWDOWN_TCG = 4


@dataclass(frozen=True)
class KernelResult:
    """What the script left behind, and the kernel's console for diagnosis."""

    returncode: int | None  # None: the script never finished (the kernel crashed or timed out)
    stdout: str
    stderr: str
    console: str
    seconds: float  # boot to power-off, as the host saw it
    runner: str  # "uml", "qemu-tcg" or "qemu-kvm"
    why: str  # why that runner was chosen
    kernel: str  # the guest kernel's release, e.g. "6.1.0-57-amd64"

    def describe(self) -> str:
        return f"{self.runner} ({self.why}), kernel {self.kernel}, boot to power-off {self.seconds:.1f} s"


@dataclass(frozen=True)
class Runner:
    name: str  # "uml", "qemu-tcg" or "qemu-kvm"
    why: str
    kernel: str


# --- choosing -----------------------------------------------------------------------------------


def _uml_kernel() -> str | None:
    """The UML kernel's release (its module directory), or None if user-mode-linux is missing."""
    if shutil.which("linux.uml", path="/usr/bin:/usr/local/bin") is None or not UML_MODULES.is_dir():
        return None
    releases = sorted(p.name for p in UML_MODULES.iterdir() if p.is_dir())
    return releases[-1] if releases else None


def _release_key(release: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"[.-]", release)]


def qemu_kernel() -> str | None:
    """The newest Debian generic kernel (linux-image-amd64) with its modules and 9p, or None."""
    releases = []
    for image in BOOT.glob("vmlinuz-*"):
        release = image.name.removeprefix("vmlinuz-")
        # The cloud flavour has no 9p; it is not used.
        if release.endswith("-cloud-amd64"):
            continue
        if (HOST_MODULES / release / "kernel" / "fs" / "9p" / "9p.ko").exists():
            releases.append(release)
    return max(releases, key=_release_key) if releases else None


def _kvm_is_real() -> bool:
    """KVM with the kernel's own Intel or AMD module, not a paravirtual stand-in."""
    return (Path("/sys/module/kvm_intel").is_dir() or Path("/sys/module/kvm_amd").is_dir()) \
        and os.access("/dev/kvm", os.R_OK | os.W_OK)


def _qemu_missing() -> str | None:
    for program in ("qemu-system-x86_64", "busybox"):
        try:
            tool(program)
        except ToolError as error:
            return str(error)
    if qemu_kernel() is None:
        return "no Debian generic kernel with 9p under /boot (Debian package linux-image-amd64)"
    return None


def _qemu_runner(prefix: str) -> Runner | str:
    missing = _qemu_missing()
    if missing is not None:
        return f"{prefix}; QEMU: {missing}"
    release = qemu_kernel()
    assert release is not None
    if _kvm_is_real():
        return Runner("qemu-kvm", f"{prefix}; KVM is real here (kvm_intel/kvm_amd loaded)", release)
    kvm = "/dev/kvm has no kvm_intel/kvm_amd behind it" if Path("/dev/kvm").exists() else "no /dev/kvm"
    return Runner("qemu-tcg", f"{prefix}; {kvm}, so QEMU emulates the CPU (TCG)", release)


@functools.cache
def choose_runner() -> Runner | str:
    """The runner this process uses, or why there is none. Probes UML once (about 2 s)."""
    if os.geteuid() != 0:
        return "a real-kernel run needs root (namespaces and modules inside the guest)"
    forced = os.environ.get("MIPD_KERNEL_RUNNER", "").strip()
    if forced not in ("", "auto", "uml", "qemu"):
        return f"MIPD_KERNEL_RUNNER={forced!r}: use uml, qemu or auto"
    if forced == "qemu":
        return _qemu_runner("MIPD_KERNEL_RUNNER=qemu")
    release = _uml_kernel()
    if release is None:
        why = "user-mode Linux is not installed (Debian package user-mode-linux)"
    else:
        failure = _probe_uml()
        if failure is None:
            reason = "MIPD_KERNEL_RUNNER=uml" if forced == "uml" else "user-mode Linux boots on this CPU"
            return Runner("uml", reason, release)
        why = f"user-mode Linux does not boot on this CPU ({failure})"
    if forced == "uml":
        return f"MIPD_KERNEL_RUNNER=uml, but {why}"
    return _qemu_runner(why)


def kernel_unavailable() -> str | None:
    """Why no real kernel can run here, or None if one can."""
    chosen = choose_runner()
    return chosen if isinstance(chosen, str) else None


def require_kernel() -> Runner:
    """The runner, or an AssertionError saying what is missing (a test fails with it: never a skip)."""
    chosen = choose_runner()
    if isinstance(chosen, str):
        raise AssertionError(f"no real Linux kernel to run the check under: {chosen}")
    return chosen


# --- running ------------------------------------------------------------------------------------


def run_in_kernel(script: Path, args: Sequence[str] = (), *, modules: Sequence[str] = DEFAULT_MODULES,
                  timeout: float = 300.0, memory: str = "512M") -> KernelResult:
    """Boot the chosen kernel once, run ``python script args`` as root inside, return what it printed.

    ``memory`` is a size such as ``512M``. The script runs with the interpreter of this process
    (``sys.executable``: CI checks out elsewhere) from the repository root, with the repository on
    ``PYTHONPATH``; it finds the modules asked for loaded."""
    runner = require_kernel()
    command = [shlex.quote(sys.executable), shlex.quote(str(script)), *(shlex.quote(a) for a in args)]
    return _boot(runner, " ".join(command), modules, timeout, memory)


def _boot(runner: Runner, command: str, modules: Sequence[str], timeout: float, memory: str) -> KernelResult:
    out = Path(tempfile.mkdtemp(prefix="mipd-kernel-"))
    try:
        for name in ("stdout", "stderr"):
            (out / name).write_text("")
        if runner.name == "uml":
            argv = [tool("linux.uml"), *_uml_args(out, command, modules, memory)]
        else:
            argv = [tool("qemu-system-x86_64"), *_qemu_args(out, runner, command, modules, memory)]
        started = time.monotonic()
        console = _run_group(argv, timeout)
        seconds = time.monotonic() - started
        rc_file = out / "rc"
        returncode = int(rc_file.read_text().strip()) if rc_file.exists() else None
        return KernelResult(returncode, (out / "stdout").read_text(errors="replace"),
                            (out / "stderr").read_text(errors="replace"), console, seconds,
                            runner.name, runner.why, runner.kernel)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _run_group(argv: list[str], timeout: float) -> str:
    """Run ``argv`` in its own process group; kill the whole group on a timeout or any exception."""
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        console, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        console, _ = process.communicate()
        console += f"\n[killed after the {timeout:.0f} s timeout]\n".encode()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return console.decode(errors="replace")


# The script's part, the same under both runners: run as root from the repository, record, sync.
_RUN = """\
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={repo} HOME=/root LANG=C.UTF-8 MIPD_TEST_SLOWDOWN={slowdown}
mkdir -p /run/netns
for m in {module_list}; do {modprobe} $m || echo "modprobe $m failed" >>{out}/stderr; done
cd {repo}
{command} >>{out}/stdout 2>>{out}/stderr
echo $? >{out}/rc.partial
mv {out}/rc.partial {out}/rc
sync
"""


# --- user-mode Linux ----------------------------------------------------------------------------

# PID 1 of a user-mode Linux kernel. The host's root comes through hostfs; like the QEMU guest's, it is
# only the lower layer of an overlay whose upper layer is a tmpfs, so the script may write anywhere and
# only the run's directory (bound in at the same path) reaches the host. The first stage (on hostfs)
# builds the overlay and pivots into it; the second mounts /proc, /sys and /run there, sees its modules
# at /run/kroot/lib/modules/$(uname -r) (``modprobe -d``) and powers off. UML's pid and mconsole files go
# to the run's directory (``uml_dir``).
_UML_INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t tmpfs -o mode=755 run /run
mkdir -p /run/kroot/lib/modules/$(uname -r) /run/layer/upper /run/layer/work /run/layer/root
mount --bind {modules}/$(uname -r) /run/kroot/lib/modules/$(uname -r)
{modprobe} overlay || echo "modprobe overlay failed" >>{out}/stderr
mount -t overlay overlay -o lowerdir=/,upperdir=/run/layer/upper,workdir=/run/layer/work /run/layer/root \
    || echo "no overlay" >>{out}/stderr
mount --bind {out} /run/layer/root{out}
cd /run/layer/root
mkdir -p .host
pivot_root . .host || echo "pivot_root failed" >>{out}/stderr
exec chroot . /bin/sh {out}/inner.sh
"""
_UML_INNER = """mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=755 run /run
umount -l /.host
mkdir -p /run/kroot/lib/modules/$(uname -r)
mount --bind {modules}/$(uname -r) /run/kroot/lib/modules/$(uname -r)
{run}
poweroff -f --no-wtmp 2>/dev/null
echo o >/proc/sysrq-trigger
"""


def _uml_args(out: Path, command: str, modules: Sequence[str], memory: str) -> list[str]:
    modprobe = f"{shlex.quote(tool('modprobe'))} -d /run/kroot"
    run = _RUN.format(repo=shlex.quote(str(REPOSITORY)), out=shlex.quote(str(out)), command=command, slowdown=1,
                      module_list=" ".join(shlex.quote(m) for m in modules), modprobe=modprobe)
    quoted = {"modules": shlex.quote(str(UML_MODULES)), "out": shlex.quote(str(out))}
    init = out / "init.sh"
    init.write_text(_UML_INIT.format(modprobe=modprobe, **quoted))
    init.chmod(0o755)
    (out / "inner.sh").write_text(_UML_INNER.format(run=run, **quoted))
    return [f"mem={memory}", "rootfstype=hostfs", "rw", f"init={init}", f"uml_dir={out}",
            "con=null", "con0=fd:0,fd:1", "quiet"]


def _probe_uml() -> str | None:
    """Boot UML with a script that only records its exit; None if it came back, else what went wrong."""
    out = Path(tempfile.mkdtemp(prefix="mipd-kernel-probe-"))
    try:
        for name in ("stdout", "stderr"):
            (out / name).write_text("")
        argv = [tool("linux.uml"), *_uml_args(out, "true", (), "128M")]
        console = _run_group(argv, PROBE_TIMEOUT)
        if (out / "rc").exists():
            return None
        # The first lines that say what happened, not the stack trace after them.
        lines = [line.strip() for line in console.splitlines() if line.strip() and "[<" not in line]
        telling = [line for line in lines if re.search(r"ptrace|panic", line, re.IGNORECASE)]
        return "; ".join((telling or lines or ["no output"])[:2])[:300]
    finally:
        shutil.rmtree(out, ignore_errors=True)


# --- QEMU ---------------------------------------------------------------------------------------

# /init of the guest's initramfs (busybox). The host root, read-only over 9p, is the lower layer of an
# overlay whose upper layer is a tmpfs: the script may write anywhere, and only the run's directory,
# shared writable at the same path, reaches the host. /tmp stays the host's (under the overlay): the
# checkout may live there (CI clones anywhere).
_QEMU_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /host /layer /root
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {initramfs_modules}; do insmod /modules/$m.ko || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /host || echo "no 9p root"
mount -t tmpfs -o mode=755 layer /layer
mkdir -p /layer/upper /layer/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/layer/upper,workdir=/layer/work /root || echo "no overlay"
mount -t proc proc /root/proc
mount -t sysfs sys /root/sys
mount -t devtmpfs dev /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts devpts /root/dev/pts
mount -t tmpfs shm /root/dev/shm
mount -t tmpfs run /root/run
mkdir -p /root{out}
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /root{out} || echo "no out share"
umount /proc /sys /dev
# switch_root, not chroot: the overlay becomes the real root, so that unshare --mount works inside.
exec switch_root /root /usr/bin/env -i /bin/sh {out}/run.sh
"""


@functools.cache
def _vmlinux(release: str) -> Path:
    """Debian's kernel image unpacked once per process: TCG spends seconds unpacking xz itself.

    A bzImage carries the kernel as a compressed ELF; QEMU boots the ELF directly (its PVH entry)."""
    image = (BOOT / f"vmlinuz-{release}").read_bytes()
    start = image.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise RuntimeError(f"/boot/vmlinuz-{release}: no xz-compressed kernel inside")
    elf = lzma.LZMADecompressor().decompress(image[start:])
    if not elf.startswith(b"\x7fELF"):
        raise RuntimeError(f"/boot/vmlinuz-{release}: the unpacked kernel is not an ELF file")
    directory = Path(tempfile.mkdtemp(prefix="mipd-vmlinux-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "vmlinux"
    path.write_bytes(elf)
    return path


def _module_order(release: str, names: Sequence[str]) -> list[Path]:
    """The module files for ``names`` and what they depend on, dependencies first (modules.dep)."""
    base = HOST_MODULES / release
    deps: dict[str, list[str]] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[Path(target).name.removesuffix(".ko")] = [Path(d).name.removesuffix(".ko") for d in rest.split()]
    paths = {Path(line.partition(":")[0]).name.removesuffix(".ko"): base / line.partition(":")[0]
             for line in (base / "modules.dep").read_text().splitlines()}
    order: list[str] = []

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        key = key if key in deps else name
        if key not in deps:  # built into the kernel
            return
        for dependency in reversed(deps[key]):
            visit(dependency)
        if key not in order:
            order.append(key)

    for name in names:
        visit(name)
    return [paths[name] for name in order]


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed newc cpio archive of (path, mode, data) entries (the kernel's initramfs format)."""
    blob = bytearray()
    for number, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (number, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        blob += b"070701" + b"".join(b"%08x" % field for field in fields) + encoded
        blob += b"\0" * (-len(blob) % 4) + data
        blob += b"\0" * (-len(blob) % 4)
    return bytes(blob)


def _initramfs(out: Path, release: str) -> Path:
    regular = stat.S_IFREG | 0o755
    directory = stat.S_IFDIR | 0o755
    modules = _module_order(release, INITRAMFS_MODULES)
    entries: list[tuple[str, int, bytes]] = [("bin", directory, b""), ("modules", directory, b"")]
    entries.append(("bin/busybox", regular, Path(tool("busybox")).read_bytes()))
    entries += [(f"modules/{path.name}", stat.S_IFREG | 0o644, path.read_bytes()) for path in modules]
    init = _QEMU_INIT.format(out=shlex.quote(str(out)),
                             initramfs_modules=" ".join(path.name.removesuffix(".ko") for path in modules))
    entries.append(("init", regular, init.encode()))
    path = out / "initramfs.cpio"
    path.write_bytes(_cpio(entries))
    return path


def _qemu_args(out: Path, runner: Runner, command: str, modules: Sequence[str], memory: str) -> list[str]:
    # The script runs as PID 1 there: it powers the guest off itself (busybox: no init to ask).
    (out / "run.sh").write_text(_RUN.format(
        repo=shlex.quote(str(REPOSITORY)), out=shlex.quote(str(out)), command=command,
        slowdown=SLOWDOWN_TCG if runner.name == "qemu-tcg" else 1,
        module_list=" ".join(shlex.quote(m) for m in modules), modprobe="/sbin/modprobe")
        + f"{shlex.quote(tool('busybox'))} poweroff -f\necho o >/proc/sysrq-trigger\n")
    accel = ["-accel", "kvm", "-cpu", "host"] if runner.name == "qemu-kvm" else \
        ["-accel", "tcg,thread=multi", "-cpu", "max"]
    cpus = max(1, min(2, os.cpu_count() or 1))
    return [*accel, "-m", memory, "-smp", str(cpus), "-nodefaults", "-no-user-config", "-display", "none",
            "-vga", "none", "-no-reboot", "-nic", "none", "-serial", "stdio",
            "-kernel", str(_vmlinux(runner.kernel)), "-initrd", str(_initramfs(out, runner.kernel)),
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={out},mount_tag=out,security_model=none,multidevs=remap",
            "-append", "console=ttyS0 panic=-1 quiet loglevel=3"]


# --- checks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelChecks:
    """The named checks a script printed inside the kernel, one JSON line each:
    ``{"check": NAME, "ok": true|false, "detail": ...}``. ``failure`` says why there are none
    (no kernel here, or the run gave no result); :meth:`assert_ok` then fails with it."""

    result: KernelResult | None
    failure: str | None
    entries: dict[str, dict[str, Any]]

    def assert_ok(self, name: str) -> None:
        if self.failure is not None:
            raise AssertionError(self.failure)
        entry = self.entries.get(name)
        stderr = self.result.stderr[-3000:] if self.result is not None else ""
        assert entry is not None, f"check {name!r} never ran; stderr:\n{stderr}"
        assert entry["ok"], f"{name}: {entry['detail']}"


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects printed one per line in ``text`` (other lines are passed over)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def run_checks(script: Path, args: Sequence[str] = (), **options: Any) -> KernelChecks:
    """Boot once and run a checks script (:func:`run_in_kernel`'s options); never raises for a
    missing kernel or a crashed run, so that each test built on it fails with the reason."""
    chosen = choose_runner()
    if isinstance(chosen, str):
        return KernelChecks(None, f"no real Linux kernel to run {script.name} under: {chosen}", {})
    result = run_in_kernel(script, args, **options)
    print(f"\n{script.name}: {result.describe()}")
    entries = {entry["check"]: entry for entry in json_lines(result.stdout) if "check" in entry}
    failure = None
    if result.returncode is None or not entries:
        failure = (f"{script.name} gave no result under {result.runner} (exit {result.returncode}, "
                   f"{result.seconds:.0f} s)\nconsole tail:\n{result.console[-2000:]}\n"
                   f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-3000:]}")
    return KernelChecks(result, failure, entries)
