"""Engine overhead per trial on numpy_ref: orchestrator + protocol time against backend time.

    python bench/overhead.py [--trials 300]

Prints, per API, the wall time per trial split into: generation, the worker round trip (of
which time inside backend calls, as the worker measured it), and judging (compare + filters).
Machines are noisy: read the ratios, not the absolute numbers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nablafuzz.core.quantities import ALL  # noqa: E402
from nablafuzz.oracle.verdict import judge  # noqa: E402
from nablafuzz.runtime.process import Runtime  # noqa: E402
from nablafuzz.runtime.runner import Runner  # noqa: E402
from nablafuzz.specs.generate import generate  # noqa: E402
from nablafuzz.specs.spec import load_specs  # noqa: E402


def measure(spec, runner: Runner, trials: int) -> dict:
    gen, rtt, backend, judged = [], [], [], []
    for i in range(trials):
        t0 = time.perf_counter()
        trial = generate(spec, 1, i)
        t1 = time.perf_counter()
        ex = runner.run(trial, spec, ALL)
        t2 = time.perf_counter()
        judge(ex, spec, runner)
        t3 = time.perf_counter()
        gen.append(t1 - t0)
        rtt.append(t2 - t1)
        backend.append(sum(r.seconds for r in ex.results))
        judged.append(t3 - t2)
    return {k: statistics.median(v) * 1e3 for k, v in
            (("generate", gen), ("round trip", rtt), ("inside backend", backend), ("judge", judged))}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--apis", default="sin,multiply,matmul,sum")
    args = parser.parse_args()
    specs = load_specs(Path(__file__).resolve().parents[1] / "api_specs", ["numpy_ref"])
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(Runtime("numpy_ref", sys.executable), Path(tmp) / "worker.log", 30.0)
        print(f"{'api':10} {'total ms':>9} {'generate':>9} {'round trip':>10} {'backend':>8} {'judge':>7}"
              f" {'overhead/backend':>17}")
        for name in args.apis.split(","):
            m = measure(specs.get("numpy_ref", name), runner, args.trials)
            total = m["generate"] + m["round trip"] + m["judge"]
            overhead = total - m["inside backend"]
            print(f"{name:10} {total:9.3f} {m['generate']:9.3f} {m['round trip']:10.3f} "
                  f"{m['inside backend']:8.3f} {m['judge']:7.3f} {overhead / max(m['inside backend'], 1e-9):16.1f}x")
        runner.close()
    print("median milliseconds per trial; overhead = everything outside backend calls "
          "(generation, framing, pipes, judging)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
