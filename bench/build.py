"""Compile the benchmark's C programs (bench/c) with gcc, and check their HMAC-MD5 against Python's.

MD5 (RFC 1321) and HMAC (RFC 2104) are the project's own code (bench/c/md5hmac.h); no libcrypto.
Every build is checked against :func:`hmac.digest` on RFC 2202's test cases and on random keys
and messages of the sizes the benchmark uses before any number is measured with it.
"""

from __future__ import annotations

import hmac
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "c"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-std=gnu11")

# RFC 2202 section 2, HMAC-MD5 test cases 1, 2, 3 and 6 (key longer than a block): (key, data, digest)
RFC2202 = (
    (bytes([0x0B] * 16), b"Hi There", "9294727a3638bb1c13f48ef8158bfc9d"),
    (b"Jefe", b"what do ya want for nothing?", "750c783e6ab0b503eaa86e310a5db738"),
    (bytes([0xAA] * 16), bytes([0xDD] * 50), "56be34521d144c88dbb8c733f0e8b3f6"),
    (bytes([0xAA] * 80), b"Test Using Larger Than Block-Size Key - Hash Key First",
     "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"),
)


class BuildError(RuntimeError):
    """gcc failed, or a program computes HMAC-MD5 wrongly."""


@dataclass(frozen=True)
class Programs:
    loadgen: Path
    floor: Path


def compile_all(directory: Path) -> Programs:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildError("gcc is not installed (debian-packages.txt lists it; `make bootstrap` installs it)")
    built = {}
    for name in ("loadgen", "floor"):
        target = directory / name
        result = subprocess.run([gcc, *CFLAGS, "-o", str(target), str(SOURCES / f"{name}.c"), "-lm"],
                                capture_output=True, text=True, check=False, timeout=120)
        if result.returncode:
            raise BuildError(f"gcc {name}.c: {result.stderr.strip()}")
        built[name] = target
    programs = Programs(built["loadgen"], built["floor"])
    check_hmac(programs.loadgen)
    return programs


def check_hmac(loadgen: Path) -> None:
    cases = [(key, data, digest) for key, data, digest in RFC2202]
    for size in (0, 30, 26, 55, 56, 63, 64, 65, 200):
        key, data = os.urandom(16), os.urandom(size)
        cases.append((key, data, hmac.digest(key, data, "md5").hex()))
    for key, data, expected in cases:
        out = subprocess.run([str(loadgen), "hmac", key.hex(), data.hex()], capture_output=True, text=True,
                             check=False, timeout=10)
        if out.stdout.strip() != expected:
            raise BuildError(f"the C HMAC-MD5 is wrong for a {len(key)}-byte key and {len(data)} bytes: "
                             f"{out.stdout.strip()!r}, expected {expected}")
