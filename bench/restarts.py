"""What a crash costs a campaign's lane in worker restarts, with 0-3 standby workers (Note
[standby worker] in nablafuzz/runtime/process.py), and for a library whose worker forks its
children (Note [forked worker] in nablafuzz/worker/main.py), forked and unforked.

    python bench/restarts.py [--library oneflow] [--crash oneflow.nn.functional.adaptive_max_pool1d]
                             [--fine oneflow.sin] [--cycles 12] [--standbys 1 2] [--rounds 2]
                             [--unforked]

One runner finds a trial of `--crash` that kills its worker, then runs `--cycles` times what a
lane runs around a new crash: the crash, its confirmation in a fresh worker (a restart, and the
crash again), a fresh worker for the next trial, and five trials of `--fine`.  Printed: the wall
seconds of the cycles for each number of standbys (with `--unforked`, each also with the worker
unforked), the settings alternating over `--rounds` (machines are noisy: compare within one run).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.core.config import Config  # noqa: E402
from nablafuzz.libraries import scenarios_for  # noqa: E402
from nablafuzz.libraries.descriptor import UNFORKED  # noqa: E402
from nablafuzz.runtime import process  # noqa: E402
from nablafuzz.runtime.registry import resolve_runtime  # noqa: E402
from nablafuzz.runtime.runner import Runner  # noqa: E402
from nablafuzz.specs.generate import generate  # noqa: E402
from throughput import campaign_specs  # noqa: E402 - bench/throughput.py, beside this script


def cycles(library: str, crash_api: str, fine_api: str, n: int, standbys: int, unforked: bool) -> float:
    process.STANDBYS = standbys
    specs = {s.name: s for s in campaign_specs(library)}
    crash, fine = specs[crash_api], specs[fine_api]
    scenarios = scenarios_for(Config(libraries=(library,)), library, fine.capabilities)
    with tempfile.TemporaryDirectory() as tmp:
        runtime = resolve_runtime(library, [str(ROOT)])
        if unforked:
            runtime = replace(runtime, env=runtime.env + ((UNFORKED, "1"),))
        runner = Runner(runtime, Path(tmp) / "worker.log", 30.0)
        try:
            runner.run(generate(fine, 0, 0), fine, scenarios)
            trial = next((t for t in (generate(crash, 1, i) for i in range(200))
                          if runner.run(t, crash, scenarios).death), None)
            if trial is None:
                raise SystemExit(f"no trial of {crash_api} among its first 200 kills the worker")
            runner.versions  # a worker, and the standbys the crash above started, before the clock
            time.sleep(3)
            began = time.perf_counter()
            for _ in range(n):
                runner.run(trial, crash, scenarios)  # the crash
                runner.restart()  # its confirmation, in a fresh worker (Note [confirmation])
                runner.run(trial, crash, scenarios)
                runner.versions  # the lane's next trial needs a worker
                for i in range(5):
                    runner.run(generate(fine, 0, i), fine, scenarios)
            return time.perf_counter() - began
        finally:
            runner.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--library", default="oneflow")
    parser.add_argument("--crash", default="oneflow.nn.functional.adaptive_max_pool1d")
    parser.add_argument("--fine", default="oneflow.sin")
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--standbys", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--unforked", action="store_true")
    args = parser.parse_args()
    for r in range(args.rounds):
        for k in args.standbys:
            for unforked in (False, True) if args.unforked else (False,):
                s = cycles(args.library, args.crash, args.fine, args.cycles, k, unforked)
                print(f"round {r + 1}, {k} standby worker(s){', unforked' if unforked else ''}: {s:.1f} s for "
                      f"{args.cycles} cycles (a crash, its confirmation, 5 trials), {s / args.cycles:.2f} s each",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
