"""Run one fuzz harness of fuzz/targets.py under atheris (libFuzzer).

    python -m fuzz.harness TARGET [libFuzzer options] [CORPUS_DIR...]

TARGET is a name of fuzz.targets.TARGETS, or ``MODULE:FUNCTION`` for any other function of bytes
(the tests use that to check that a crash is caught and reported).

mipd.core is imported under atheris's instrumentation, so the fuzzer is guided by the coverage of
the code under test. The harness's invariant failing, or any exception other than the ones it allows,
is a crash: libFuzzer prints the traceback, writes the input to ``<artifact_prefix>crash-<sha1>`` and
exits non-zero. ``-runs=N`` bounds the number of inputs, ``-max_total_time=S`` the seconds.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["mipd", "fuzz.targets"]):
    from fuzz.targets import TARGETS


def _target(name: str) -> Callable[[bytes], None] | None:
    if ":" in name:
        module, _, function = name.partition(":")
        found: Callable[[bytes], None] = getattr(importlib.import_module(module), function)
        return found
    return TARGETS.get(name)


def main(argv: list[str]) -> None:
    target = _target(argv[1]) if len(argv) > 1 else None
    if target is None:
        print(f"usage: python -m fuzz.harness {{{','.join(TARGETS)}}} [libFuzzer options] [CORPUS...]",
              file=sys.stderr)
        raise SystemExit(2)
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
