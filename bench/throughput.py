"""Trials per second of each library's trial loop, where a trial's time goes, compilations per
trial, and the ratio to the same calls written by hand; one run, one table.

    python bench/throughput.py --library torch --library jax --seconds 60 [--trials-per-api 50]
                               [--max-apis 40] [--apis 'jax.numpy.*'] [--staged | --no-staged]

Per library: one worker runs the library's first non-layer specs API by API, `--trials-per-api`
consecutive trials each (as a campaign does), with the default scenarios and the library's default
staging (Note [staged scenarios]), judged as a campaign judges them, no minimisation or
confirmation.  Printed per library:

  * trials/s, and the wall time split into generation, the round trips to the worker (the trial's,
    and those of judging's finite-difference probes and re-runs), of which the part inside the
    library calls (as the worker times each scenario and probe), and judging's own time;
  * compilations per trial (XLA compilations for JAX, eager primitives included; tf.function
    traces for TensorFlow; 0 where the library compiles nothing), over all trials and over those
    after each API's first pool round (index >= specs/pool.ROUND);
  * the ratio of nablafuzz's round-trip time to the same calls written by hand
    (bench/handwritten.py, in the library's interpreter, over the same valid trials: the call, VJP,
    JVP, the second-order compositions and the finite differences' evaluations, eagerly).

Machines are noisy: compare ratios within one run.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.core.config import Config  # noqa: E402
from nablafuzz.core.model import ApiSpec  # noqa: E402
from nablafuzz.libraries import scenarios_for, staged_for  # noqa: E402
from nablafuzz.oracle.verdict import judge  # noqa: E402
from nablafuzz.runtime.registry import resolve_runtime  # noqa: E402
from nablafuzz.runtime.runner import BudgetExhausted, Runner, trial_request  # noqa: E402
from nablafuzz.specs import pool  # noqa: E402
from nablafuzz.specs.generate import generate  # noqa: E402
from nablafuzz.specs.reference import flat_only  # noqa: E402
from nablafuzz.specs.spec import load_specs  # noqa: E402
from nablafuzz.worker.main import _inputs  # noqa: E402


def campaign_specs(library: str, apis: str = "*") -> List[ApiSpec]:
    """The library's specs matching `apis`, as a campaign without --reference runs them (layer
    specs left out); shared by the benches that time trials."""
    return [flat_only(s) for s in load_specs(ROOT / "api_specs", [library]).specs
            if fnmatch.fnmatchcase(s.name, apis) and not s.module]


def measure(library: str, seconds: float, per_api: int, max_apis: int, apis: str, staged: Optional[bool]) -> Dict:
    specs = campaign_specs(library, apis)[:max_apis]
    config = Config(libraries=(library,), staged=staged)
    pooled = staged_for(config, library)
    wall = {"generate": 0.0, "round trips": 0.0, "inside library": 0.0, "judge": 0.0}
    trials, later, compiles, later_compiles = 0, 0, 0, 0
    valid: List[tuple] = []  # (request for the hand-written code, nablafuzz's round trip)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(resolve_runtime(library, [str(ROOT)]), Path(tmp) / "worker.log", 60.0, staged=pooled)
        try:
            runner.run(generate(specs[0], 0, 0), specs[0], ("direct",))  # the worker's start is not a trial
            start = time.perf_counter()
            for k in range(len(specs) * per_api):
                if time.perf_counter() - start >= seconds:
                    break
                spec, index = specs[k // per_api], k % per_api
                t0 = time.perf_counter()
                trial = generate(spec, 7, index, pooled=pooled)
                scenarios = scenarios_for(config, library, spec.capabilities)
                t1 = time.perf_counter()
                before, inside = runner.compiles, runner.library_seconds
                try:
                    ex = runner.run(trial, spec, scenarios)
                except BudgetExhausted:
                    continue
                t2 = time.perf_counter()
                rerun = _Timed(runner)
                j = judge(ex, spec, rerun)
                t3 = time.perf_counter()
                made = max(0, runner.compiles - before)
                wall["generate"] += t1 - t0
                wall["round trips"] += t2 - t1 + rerun.seconds
                wall["inside library"] += runner.library_seconds - inside
                wall["judge"] += t3 - t2 - rerun.seconds
                trials, compiles = trials + 1, compiles + made
                if index >= pool.ROUND:
                    later, later_compiles = later + 1, later_compiles + made
                if j.valid and ex.death is None:
                    request = trial_request(trial, spec, scenarios)
                    valid.append(((spec.name, _inputs(request), list(scenarios)), t2 - t1))
            elapsed = time.perf_counter() - start
        finally:
            runner.close()
        hand = by_hand(library, [v[0] for v in valid], Path(tmp))
    both = [(ours, theirs) for (_, ours), theirs in zip(valid, hand) if theirs is not None]
    return {"library": library, "staged": pooled, "trials": trials, "apis": len({*map(lambda v: v[0][0], valid)}),
            "seconds": elapsed, "wall": wall, "compiles": compiles, "later": later, "later_compiles": later_compiles,
            "hand_trials": len(both), "ours": sum(o for o, _ in both), "hand": sum(t for _, t in both)}


class _Timed:
    """The runner as judging sees it, timing its round trips (probes and re-runs)."""

    def __init__(self, runner: Runner):
        self.runner, self.seconds = runner, 0.0

    def __getattr__(self, name: str):
        return getattr(self.runner, name)

    def _timed(self, call, *args, **kwargs):
        began = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - began

    def run(self, *args, **kwargs):
        return self._timed(self.runner.run, *args, **kwargs)

    def probe(self, *args, **kwargs):
        return self._timed(self.runner.probe, *args, **kwargs)


def by_hand(library: str, requests: List[tuple], tmp: Path) -> List[Optional[float]]:
    """bench/handwritten.py's seconds per trial (None where its plain code failed)."""
    path = tmp / "trials.pkl"
    path.write_bytes(pickle.dumps(requests))
    python = resolve_runtime(library, [str(ROOT)]).python
    done = subprocess.run([python, str(ROOT / "bench" / "handwritten.py"), library, str(path)],
                          capture_output=True, text=True, timeout=3600)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        print(f"  (hand-written run failed: {done.stderr[-300:]})")
        return [None] * len(requests)
    return json.loads(lines[-1])


def report(m: Dict) -> None:
    n, elapsed = max(m["trials"], 1), m["seconds"]
    print(f"{m['library']} ({'staged' if m['staged'] else 'eager'}): {m['trials']} trials in {elapsed:.0f} s: "
          f"{m['trials'] / elapsed:.1f} trials/s")
    for part, s in m["wall"].items():
        print(f"  {part:15} {s / n * 1e3:8.1f} ms/trial  {s / elapsed:6.1%} of wall time")
    glue = m["wall"]["round trips"] - m["wall"]["inside library"]
    print(f"  {'pipe and glue':15} {glue / n * 1e3:8.1f} ms/trial  {glue / elapsed:6.1%} of wall time")
    print(f"  compiles/trial  {m['compiles'] / n:.2f} (after each API's first round of {pool.ROUND}: "
          f"{m['later_compiles'] / max(m['later'], 1):.2f} over {m['later']} trials)")
    if m["hand"] > 0:
        print(f"  vs by hand      {m['ours'] / m['hand']:.2f}x the hand-written calls' time "
              f"({m['ours'] / m['hand_trials'] * 1e3:.1f} vs {m['hand'] / m['hand_trials'] * 1e3:.1f} ms/trial "
              f"over {m['hand_trials']} valid trials)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", action="append", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--trials-per-api", type=int, default=50)
    parser.add_argument("--max-apis", type=int, default=40)
    parser.add_argument("--apis", default="*")
    parser.add_argument("--staged", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args()
    for library in args.library:
        report(measure(library, args.seconds, args.trials_per_api, args.max_apis, args.apis, args.staged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
