"""What a hanging function costs a campaign: wall time against --budget and --timeout.

    python bench/hang_budget.py [--out bench/results/hang-budget.md]

Runs short numpy_ref campaigns over one function whose forward mode never returns
(`helper_crash_ops:hang_jvp`), for a few (timeout, budget) pairs, each in a fresh folder, and
prints the campaign's wall time, its ratio to the budget, the overrun in trial timeouts, and
whether the hang was still reported.  Each hanging trial costs its timeout plus the slow
filter's re-run (4x, or what is left of the budget); a trial the budget cuts short is
abandoned, and a hang the campaign saw is not replayed at its end.  Machines are noisy: read
the ratios.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from nablafuzz.campaign import run_campaign  # noqa: E402
from nablafuzz.core.config import make_config  # noqa: E402
from nablafuzz.reports.store import Store  # noqa: E402

CASES = [(2.0, 10.0), (5.0, 20.0), (5.0, 60.0)]


def one(timeout: float, budget: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "hang.yaml"
        spec.write_text('library: numpy_ref\napis:\n  - name: "helper_crash_ops:hang_jvp"\n    args: [{name: x}]\n')
        config = make_config("default", libraries=["numpy_ref"], apis=["helper_crash_ops:*"], spec_files=[str(spec)],
                             spec_dir=str(ROOT / "api_specs"), store_dir=f"{tmp}/store", campaign_dir=f"{tmp}/c",
                             workers=1, trials_per_api=50, trial_timeout_s=timeout, budget_s=budget)
        start = time.monotonic()
        summary = run_campaign(config)
        took = time.monotonic() - start
        reports, _ = Store(Path(tmp) / "store").load_all()
        verdicts = ", ".join(sorted({r.fingerprint.verdict.value for r in reports})) or "none"
        return (f"| {timeout:.0f} | {budget:.0f} | {took:.1f} | {took / budget:.2f} | {(took - budget) / timeout:.1f} "
                f"| {summary.trials} | {verdicts} |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    lines = ["# A hanging function against --budget (numpy_ref, `helper_crash_ops:hang_jvp`, 1 worker)", "",
             "| timeout s | budget s | wall s | wall / budget | overrun in timeouts | trials | reports |",
             "|---|---|---|---|---|---|---|"]
    for timeout, budget in CASES:
        lines.append(one(timeout, budget))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
