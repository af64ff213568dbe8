"""Where a trial's time goes, scenario by scenario, for the first trials of a sample of APIs: the
cost that decides how much of a short campaign is left after every API's first trials.

    python bench/first_trials.py --library tensorflow --apis 12 --trials 3 [--seed 3] [--eager]

One worker runs the first `--trials` trials of `--apis` APIs (drawn with `--seed` from the
library's non-layer specs), pooled and staged as a campaign runs them (`--eager`: as a
TensorFlow campaign runs each signature's first trial, Note [eager first]); each trial is judged
as a campaign judges it (no minimisation or confirmation).  Printed: per trial, its round trip,
judging's, its compilations and each scenario's seconds as the worker times them (the fused AD
scenarios share their kernel's time equally); then the totals per scenario.  JAX's persistent
compilation cache is used as a campaign uses it: set JAX_COMPILATION_CACHE_DIR= (empty) to
measure a cold start.  Machines are noisy: compare runs made one after the other.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.core.config import Config  # noqa: E402
from nablafuzz.libraries import scenarios_for, staged_for  # noqa: E402
from nablafuzz.oracle.verdict import judge  # noqa: E402
from nablafuzz.runtime.registry import resolve_runtime  # noqa: E402
from nablafuzz.runtime.runner import Runner  # noqa: E402
from nablafuzz.specs.generate import generate  # noqa: E402
from throughput import campaign_specs  # noqa: E402 - bench/throughput.py, beside this script


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", required=True)
    parser.add_argument("--apis", type=int, default=12)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--eager", action="store_true")
    a = parser.parse_args()
    specs = campaign_specs(a.library)
    random.Random(a.seed).shuffle(specs)
    specs = specs[:a.apis]
    config = Config(libraries=(a.library,))
    pooled = staged_for(config, a.library)
    totals: Counter = Counter()
    ran = judged = 0.0
    tmp = tempfile.TemporaryDirectory()
    runner = Runner(resolve_runtime(a.library, [str(ROOT)]), Path(tmp.name) / "worker.log", 60.0,
                    staged=pooled and not a.eager)
    try:
        runner.run(generate(specs[0], 0, 0), specs[0], ("direct",))  # the worker's start is not a trial
        for spec in specs:
            for index in range(a.trials):
                trial = generate(spec, 7, index, pooled=pooled)
                before, t0 = runner.compiles, time.perf_counter()
                ex = runner.run(trial, spec, scenarios_for(config, a.library, spec.capabilities))
                t1 = time.perf_counter()
                valid = judge(ex, spec, runner).valid
                t2 = time.perf_counter()
                ran, judged = ran + t1 - t0, judged + t2 - t1
                parts = {r.scenario: r.seconds for r in ex.results}
                totals.update(parts)
                print(f"{spec.name[:40]:40} #{index} run {t1 - t0:6.2f} s  judge {t2 - t1:5.2f} s  "
                      f"compiles {runner.compiles - before:3d}  valid {valid!s:5} "
                      + " ".join(f"{k}={v:.2f}" for k, v in parts.items() if v >= 0.05), flush=True)
    finally:
        runner.close()
        tmp.cleanup()
    print(f"total: trials {ran:.1f} s, judging {judged:.1f} s; per scenario (s):")
    for scenario, seconds in totals.most_common():
        print(f"  {scenario:12} {seconds:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
