"""Where campaigns' trial time went, by each API's trial index: first trials (eager first trials,
compilations, traces) against the warm ones that follow.

    python bench/trial_costs.py CAMPAIGN_DIR [CAMPAIGN_DIR ...]

Reads each campaign's observation log (`<campaign dir>/observations.jsonl`, e.g.
`.nablafuzz/campaigns/tensorflow-20min-night1`) and prints its trials, and per index bucket
(each API's first trial, its second, indices 2-4, 5-24, 25 and later) the count, the seconds per
trial (each trial's round trip as the campaign timed it, judging included) and the bucket's share
of all trial seconds.  Campaigns are listed side by side in the order given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.campaign.loop import read_observations  # noqa: E402

BUCKETS = (("first (index 0)", 0, 1), ("second (index 1)", 1, 2), ("indices 2-4", 2, 5),
           ("indices 5-24", 5, 25), ("indices 25+", 25, 10 ** 9))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("campaigns", nargs="+", type=Path)
    a = parser.parse_args()
    rows = []
    for folder in a.campaigns:
        log = folder / "observations.jsonl"
        if not log.is_file():
            raise SystemExit(f"{log}: no observation log (fix: name a campaign directory, "
                             f"e.g. .nablafuzz/campaigns/<campaign id>)")
        obs = read_observations(log)
        total = sum(o.seconds for o in obs) or 1.0
        cells = []
        for _, lo, hi in BUCKETS:
            got = [o.seconds for o in obs if lo <= o.index < hi]
            cells.append(f"{len(got)}, {sum(got) / max(len(got), 1):.3f} s, {100 * sum(got) / total:.0f} %")
        rows.append((folder.name, len(obs), f"{total:.0f}", cells))
    print("| trials | " + " | ".join(name for name, *_ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    print("| all: count, trial seconds | " + " | ".join(f"{n}, {t} s" for _, n, t, _ in rows) + " |")
    for k, (label, _, _) in enumerate(BUCKETS):
        print(f"| {label}: count, s/trial, share | " + " | ".join(cells[k] for *_, cells in rows) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
