"""CPU time per trial, the orchestrator's and the worker's apart, on a fixed set of trials.

    python bench/trial_cpu.py [--library torch] [--apis 'torch.s*'] [--trials 12] [--rounds 3]

A campaign's trials/s on a shared machine varies by 5-10 % from run to run; CPU seconds vary
less, and two workers on two cores are bound by them.  This runs each matching API's trials
0..TRIALS-1 (campaign seed 0, its default scenarios, no --reference) through one worker, as
`bench/throughput.py` does, after one warm-up round (so first-trial costs are left out), ROUNDS
times, and prints per round the CPU milliseconds per trial:

  * orchestrator: generating the trial, the round trip's own work (encoding, reading and
    decoding the answers) and judging (with its probes' round trips), as this thread's CPU time;
  * worker: the worker process's CPU time (user + system, from /proc) over the same trials.

The minimum over rounds is the figure to compare between two versions of the code, run one
after the other on the same machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.core.config import Config  # noqa: E402
from nablafuzz.libraries import scenarios_for  # noqa: E402
from nablafuzz.oracle.verdict import judge  # noqa: E402
from nablafuzz.reports.store import trial_key  # noqa: E402
from nablafuzz.runtime.registry import resolve_runtime  # noqa: E402
from nablafuzz.runtime.runner import Runner  # noqa: E402
from nablafuzz.specs.generate import generate  # noqa: E402
from throughput import campaign_specs  # noqa: E402 - bench/throughput.py, beside this script


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", default="torch")
    ap.add_argument("--apis", default="torch.s*")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    specs = campaign_specs(args.library, args.apis)
    config = Config(libraries=(args.library,))
    work = [(s, i) for s in specs for i in range(args.trials)]
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(resolve_runtime(args.library, [str(ROOT)]), Path(tmp) / "worker.log", 60.0)
        try:
            rows = []
            for r in range(args.rounds + 1):  # round 0 warms up
                runner.worker.ensure()
                pid = runner.worker.proc.pid
                w0, o0, t0 = process_cpu(pid), time.thread_time(), time.perf_counter()
                for spec, index in work:
                    trial = generate(spec, 0, index, regime_share=0.2)
                    ex = runner.run(trial, spec, scenarios_for(config, args.library, spec.capabilities))
                    judge(ex, spec, runner)
                    trial_key(trial)
                if runner.worker.proc is None or runner.worker.proc.pid != pid:
                    print(f"round {r}: the worker restarted; its CPU is not comparable", file=sys.stderr)
                    continue
                n = len(work)
                row = ((time.thread_time() - o0) / n * 1e3, (process_cpu(pid) - w0) / n * 1e3,
                       (time.perf_counter() - t0) / n * 1e3)
                if r:
                    rows.append(row)
                    print(f"round {r}: orchestrator {row[0]:.2f} ms CPU/trial, worker {row[1]:.2f} ms CPU/trial, "
                          f"wall {row[2]:.2f} ms/trial ({n} trials)")
        finally:
            runner.close()
    if rows:
        print(f"{args.library} {args.apis}: {len(specs)} APIs x {args.trials} trials; min over {len(rows)} rounds: "
              f"orchestrator {min(r[0] for r in rows):.2f}, worker {min(r[1] for r in rows):.2f}, "
              f"wall {min(r[2] for r in rows):.2f} ms/trial (median wall {statistics.median(r[2] for r in rows):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
