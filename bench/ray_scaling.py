"""Trials per second of one campaign run with 1 and 2 workers on the Ray executor (and, for
comparison, on worker threads), and the ratio 2 workers : 1; one run, one table.

    python bench/ray_scaling.py [--library torch] [--apis 'torch.a*'] [--trials 20] [--workers 1,2]
                                [--address HOST:PORT] [--out bench/results/ray-scaling.md]

Every configuration runs the same campaign (same APIs, seed and trials per API, no time limit
that binds) into a fresh store, so the trials are the same and only the executor and the number
of workers differ; the report keys and occurrence counts of each run are compared with the first
run's (they must be equal).  Without --address each Ray run starts a private cluster on this
machine (loopback only; its start is inside the timed run, as a user meets it).

On a cluster: start the head and the workers with the custom resource of each runtime installed
there, one unit per worker it may run, e.g.

    ray start --head --port 6379 --resources '{"nablafuzz-torch": 8}'          # on the head
    ray start --address HEAD:6379 --resources '{"nablafuzz-torch": 16}'       # on each machine
    python bench/ray_scaling.py --address HEAD:6379 --workers 1,8,24

(each machine needs nablafuzz and `nablafuzz install` for its libraries; the driver's paths for the
campaign directory should be writable there or on a shared file system).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.campaign import run_campaign  # noqa: E402
from nablafuzz.core.config import make_config  # noqa: E402
from nablafuzz.reports.store import Store  # noqa: E402


def _run(executor: str, workers: int, args, tmp: Path) -> Tuple[float, int, float, Dict[str, int]]:
    """(seconds, trials, trials/s, report key -> occurrences) of one campaign."""
    where = tmp / f"{executor}-{workers}"
    config = make_config("default", libraries=[args.library], apis=args.apis, trials_per_api=args.trials,
                         budget_s=3600.0, api_budget_s=600.0, workers=workers, seed=args.seed,
                         store_dir=str(where / "store"), campaign_dir=str(where / "campaigns"),
                         executor=executor, address=args.address, name="scaling")
    began = time.monotonic()
    summary = run_campaign(config)
    seconds = time.monotonic() - began
    reports, _ = Store(where / "store").load_all()
    return seconds, summary.trials, summary.trials / seconds, {r.key: r.occurrences for r in reports}


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--library", default="torch")
    p.add_argument("--apis", action="append", help="API globs (default: torch.a* and torch.s*)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--address", default="", help="a Ray cluster to join (default: a private one on this machine)")
    p.add_argument("--no-threads", action="store_true", help="Ray runs only")
    p.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = p.parse_args(argv)
    args.apis = args.apis or ["torch.a*", "torch.s*"]
    counts = [int(w) for w in args.workers.split(",")]
    executors = ["ray"] + ([] if args.no_threads or args.address else ["threads"])
    rows, first = [], None
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        for executor in executors:
            base = None
            for w in counts:
                seconds, trials, rate, reports = _run(executor, w, args, Path(tmp))
                first = first if first is not None else reports
                base = base or rate
                rows.append((executor, w, trials, seconds, rate, rate / base, reports == first, len(reports)))
                print(f"{executor:<8} workers {w}: {trials} trials in {seconds:.1f} s = {rate:.1f} trials/s "
                      f"(x{rate / base:.2f}); reports {len(reports)}, same as the first run: {reports == first}",
                      flush=True)
    lines = [f"# Ray scaling: `python bench/ray_scaling.py {' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             f"library {args.library}, APIs {', '.join(args.apis)}, {args.trials} trials per API, seed {args.seed}, "
             f"machine: {os.cpu_count()} CPUs{', cluster ' + args.address if args.address else ''}", "",
             "| executor | workers | trials | seconds | trials/s | ratio to 1 worker | reports | same keys and counts |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {e} | {w} | {t} | {s:.1f} | {r:.1f} | {x:.2f} | {n} | {same} |" for e, w, t, s, r, x, same, n in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if all(row[6] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
