"""Trials per second of one library, and where a trial's time goes: inside the library calls (as
the worker times each scenario), the rest of the round trip (pipe, encoding, adapter glue), and the
orchestrator (generation, judging).  The baseline for issue 18's throughput work.

    python bench/throughput.py --library torch --seconds 60 [--apis 'torch.*'] [--max-apis 40]

Trials run one after another in one worker, over the library's specs taking turns (seeded), with
the default scenarios (no minimisation, no confirmation restarts): an upper bound on what a
campaign's trial loop can do.  Machines are noisy: compare ratios within one run.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.core.config import Config  # noqa: E402
from nablafuzz.libraries import scenarios_for  # noqa: E402
from nablafuzz.oracle.verdict import judge  # noqa: E402
from nablafuzz.runtime.registry import resolve_runtime  # noqa: E402
from nablafuzz.runtime.runner import BudgetExhausted, Runner  # noqa: E402
from nablafuzz.specs.generate import generate  # noqa: E402
from nablafuzz.specs.spec import load_specs  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--apis", default="*")
    parser.add_argument("--max-apis", type=int, default=40)
    args = parser.parse_args()
    specs = [s for s in load_specs(ROOT / "api_specs", [args.library]).specs
             if fnmatch.fnmatchcase(s.name, args.apis) and not s.module][: args.max_apis]
    config = Config(libraries=(args.library,))
    wall = {"generate": 0.0, "round trip": 0.0, "inside library": 0.0, "judge": 0.0}
    trials = 0
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(resolve_runtime(args.library, [str(ROOT)]), Path(tmp) / "worker.log", 60.0)
        try:
            runner.run(generate(specs[0], 0, 0), specs[0], ("direct",))  # the worker's start is not a trial
            start = time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                spec = specs[trials % len(specs)]
                t0 = time.perf_counter()
                trial = generate(spec, 7, trials // len(specs))
                t1 = time.perf_counter()
                try:
                    ex = runner.run(trial, spec, scenarios_for(config, spec.library, spec.capabilities))
                except BudgetExhausted:
                    continue
                t2 = time.perf_counter()
                judge(ex, spec, runner)
                t3 = time.perf_counter()
                wall["generate"] += t1 - t0
                wall["round trip"] += t2 - t1
                wall["inside library"] += sum(r.seconds for r in ex.results)
                wall["judge"] += t3 - t2
                trials += 1
            elapsed = time.perf_counter() - start
        finally:
            runner.close()
    print(f"{args.library}: {trials} trials over {len(specs)} APIs in {elapsed:.0f} s: {trials / elapsed:.1f} trials/s")
    for part, seconds in wall.items():
        print(f"  {part:15} {seconds / max(trials, 1) * 1e3:8.1f} ms/trial  {seconds / elapsed:6.1%} of wall time")
    print(f"  {'pipe and glue':15} {(wall['round trip'] - wall['inside library']) / max(trials, 1) * 1e3:8.1f} ms/trial"
          f"  {(wall['round trip'] - wall['inside library']) / elapsed:6.1%} of wall time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
