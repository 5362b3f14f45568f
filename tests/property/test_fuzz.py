"""A short fuzzing run of every decoder harness (fuzz/targets.py) under atheris.

Invariant (mipd.core.wire.errors): every decoder either succeeds or raises DecodeError, and what decodes
survives its round trip. Each harness runs in its own subprocess for a fixed number of inputs with a
fixed seed, starting from its seed corpus (fuzz/corpus); a crash fails the test and prints the input
in hex and the traceback. ``make fuzz`` runs the same harnesses for longer (docs/robustness.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.campaign import report, run_target
from fuzz.seeds import DEFAULT as SEEDS
from fuzz.seeds import corpora
from fuzz.targets import TARGETS

# Inputs per harness: the engine harnesses run about 2,000 inputs a second, the codecs 5,000 to 60,000.
RUNS = {"home_agent": 1000, "foreign_agent_node": 1000, "foreign_agent_reply": 800, "mobile_node_reply": 800}
DEFAULT_RUNS = 3000


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_short_fuzzing_run_finds_no_crash(target: str, tmp_path: Path) -> None:
    result = run_target(target, tmp_path, runs=RUNS.get(target, DEFAULT_RUNS), seed=5944, timeout=120)
    assert not result.crashed, report(result)
    assert result.runs >= RUNS.get(target, DEFAULT_RUNS), f"{target} ran {result.runs} inputs"


def test_every_target_has_seeds() -> None:
    """fuzz/seeds.py makes seeds for every target, and each has a committed corpus to start from."""
    generated = corpora()
    assert set(generated) == set(TARGETS)
    for target, seeds in generated.items():
        assert seeds, target
        assert any((SEEDS / target).iterdir()), f"fuzz/corpus/{target} is empty: run python -m fuzz.seeds"


def test_every_seed_passes_its_harness() -> None:
    for target, harness in TARGETS.items():
        for path in sorted((SEEDS / target).iterdir()):
            harness(path.read_bytes())


def crash_canary(data: bytes) -> None:
    """A harness that breaks its invariant on any input of two or more bytes starting with 0x01."""
    if len(data) >= 2 and data[0] == 1:
        raise AssertionError("the canary's invariant broke")


def test_a_crash_is_caught_and_its_input_reported(tmp_path: Path) -> None:
    result = run_target("tests.property.test_fuzz:crash_canary", tmp_path, runs=100000, seed=1, timeout=120)
    assert result.crashed
    assert result.crash_input is not None and result.crash_input.startswith("01")
    text = report(result)
    assert "the canary's invariant broke" in text and result.crash_input in text
