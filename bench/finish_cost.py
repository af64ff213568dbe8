"""What the replays at a campaign's end cost (Note [finishing budget]): every report of a store
for one library, replayed as a campaign's end replays the reports of the APIs it covered.

    python bench/finish_cost.py -l tensorflow --store COPY_OF_STORE [--workers 1,2]

Each run starts `workers` warm runner sets (as a campaign's lanes hand theirs over), then times
`Campaign._replays` over the library's open, new and flaky reports: hangs given one trial
timeout, eagerly, on every set at once.  Prints, per worker count, the seconds, the replays and
their outcomes, then each report that did not reproduce.  The store is only read: what the replays find is not saved.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.campaign import oracle_for  # noqa: E402
from nablafuzz.campaign.loop import Campaign  # noqa: E402
from nablafuzz.core.config import make_config  # noqa: E402
from nablafuzz.core.model import ReportStatus  # noqa: E402
from nablafuzz.reports.replay import ReplayOutcome  # noqa: E402
from nablafuzz.specs.spec import load_specs  # noqa: E402


def run(library: str, store: Path, workers: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config("default", libraries=[library], store_dir=str(store), campaign_dir=tmp,
                             workers=workers, budget_s=1200, name="finish-cost")
        specs = load_specs(ROOT / "api_specs", [library], [])
        c = Campaign(config, specs, oracle_for(config))
        try:
            todo = [r for r in c.store if c.oracle.covers(r, {s.id for s in c.oracle.specs})
                    and r.status is not ReportStatus.FIXED]
            c.handed = [{} for _ in range(workers)]
            for n, runners in enumerate(c.handed):  # warm, as a lane hands them over
                c.runner(runners, library, n).worker.ensure()
            c.deadline = time.monotonic() + config.budget_s / 10
            began = time.monotonic()
            results = c._replays(todo)
            took = time.monotonic() - began
        finally:
            c.close_runners()
    outcomes = collections.Counter(res.outcome.name.lower() if hasattr(res, "outcome") else "not replayed"
                                   for _, res in results)
    others = [f"  {r.fingerprint.api} {r.key}: {res.message() if hasattr(res, 'message') else 'not replayed in time'}"
              for r, res in results if getattr(res, "outcome", None) is not ReplayOutcome.REPRODUCED]
    return f"{library}: {workers} worker(s): {took:.1f} s for {len(todo)} replays " \
           f"({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))})" + "".join("\n" + o for o in others)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-l", "--library", required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--workers", default="1,2")
    a = parser.parse_args()
    if not a.store.is_dir():
        raise SystemExit(f"--store {a.store}: no such report store (fix: name a copy of bug_reports/)")
    for n in (int(w) for w in a.workers.split(",")):
        print(run(a.library, a.store, n), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
