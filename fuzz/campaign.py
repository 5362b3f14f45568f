"""Run every fuzz harness for a bounded time or number of inputs, one subprocess each.

    python -m fuzz.campaign [--seconds S | --runs N] [--work DIR] [--json FILE] [TARGET...]

Each target runs ``python -m fuzz.harness TARGET`` under atheris with its seed corpus
(fuzz/corpus/TARGET, read only) and a working corpus (``--work``/TARGET, where the inputs that found
new coverage accumulate from one campaign to the next). A crash stops that target; its input is
written to ``--work``/TARGET/crash-<sha1> and printed here in hex with the traceback. The summary
gives, per target, the inputs executed, the seconds taken and the crashes; the exit status is 1 if
any target crashed. ``make fuzz`` runs this with ``FUZZ_SECONDS`` per target.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "corpus"  # as fuzz/seeds.py writes it
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STATUS = re.compile(r"^#(\d+)\s", re.MULTILINE)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass
class Result:
    """What one target's run gave."""

    target: str
    runs: int
    seconds: float
    crashed: bool
    returncode: int
    crash_file: str | None = None
    crash_input: str | None = None  # hex
    traceback: str = field(default="", repr=False)

    @property
    def per_second(self) -> int:
        return int(self.runs / self.seconds) if self.seconds else 0


def _all_targets() -> list[str]:
    # The target names without importing mipd here (the harness imports it instrumented).
    return sorted(p.name for p in SEEDS.iterdir() if p.is_dir())


def run_target(target: str, work: Path, *, seconds: int | None = None, runs: int | None = None,
               seed: int | None = None, timeout: float | None = None) -> Result:
    """Fuzz ``target`` in a subprocess; ``seconds`` and/or ``runs`` bound it."""
    corpus = work / target.replace(":", "_")
    corpus.mkdir(parents=True, exist_ok=True)
    options = [f"-artifact_prefix={corpus}/", "-timeout=10", "-print_final_stats=1"]
    if seconds is not None:
        options.append(f"-max_total_time={seconds}")
    if runs is not None:
        options.append(f"-runs={runs}")
    if seed is not None:
        options.append(f"-seed={seed}")
    seeds = [str(SEEDS / target)] if (SEEDS / target).is_dir() else []
    command = [sys.executable, "-m", "fuzz.harness", target, *options, str(corpus), *seeds]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    done = _DONE.search(output)
    statuses = _STATUS.findall(output)
    executed = int(done.group(1)) if done else (int(statuses[-1]) if statuses else 0)
    result = Result(target, executed, round(elapsed, 1), proc.returncode != 0, proc.returncode)
    if result.crashed:
        result.traceback = output[-6000:]
        artifact = _ARTIFACT.search(output)
        if artifact:
            path = Path(artifact.group(1))
            result.crash_file = str(path)
            if path.exists():
                result.crash_input = path.read_bytes().hex()
    return result


def report(result: Result) -> str:
    """A crash, readably: the target, the input in hex, how to reproduce it, the traceback."""
    return (f"CRASH in {result.target} (exit {result.returncode})\n"
            f"input ({result.crash_file}): {result.crash_input}\n"
            f"reproduce: python -c \"from fuzz.targets import TARGETS; "
            f"TARGETS['{result.target}'](bytes.fromhex('{result.crash_input}'))\"\n"
            f"{result.traceback}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.campaign", description=__doc__.splitlines()[0])
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument("--seconds", type=int, help="seconds per target (default 30)")
    bound.add_argument("--runs", type=int, help="inputs per target")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mipd-fuzz"), help="working corpora and crashes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("targets", nargs="*", help="default: every target")
    args = parser.parse_args(argv)
    targets = args.targets or _all_targets()
    seconds = args.seconds if args.seconds is not None or args.runs is not None else 30
    results = []
    print(f"{'target':<22}{'runs':>12}{'seconds':>9}{'runs/s':>9}  crashed")
    for target in targets:
        result = run_target(target, args.work, seconds=seconds, runs=args.runs)
        results.append(result)
        print(f"{target:<22}{result.runs:>12}{result.seconds:>9}{result.per_second:>9}  "
              f"{'YES' if result.crashed else 'no'}", flush=True)
    total_runs = sum(r.runs for r in results)
    total_seconds = round(sum(r.seconds for r in results), 1)
    crashed = [r for r in results if r.crashed]
    print(f"{'total':<22}{total_runs:>12}{total_seconds:>9}{'':>9}  {len(crashed)} crashed")
    for result in crashed:
        print(report(result), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 1 if crashed else 0


if __name__ == "__main__":
    raise SystemExit(main())
