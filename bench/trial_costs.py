"""Where campaigns' trial time went, by each API's trial index: first trials (eager first trials,
compilations, traces) against the warm ones that follow.

    python bench/trial_costs.py CAMPAIGN_DIR [CAMPAIGN_DIR ...]

Reads each campaign's observation log (`<campaign dir>/observations.jsonl`, e.g.
`.nablafuzz/campaigns/tensorflow-20min-night1`) and prints its trials, and per index bucket
(each API's first trial, its second, indices 2-4, 5-24, 25 and later) the count, the seconds per
trial (each trial's round trip as the campaign timed it, judging included) and the bucket's share
of all trial seconds.  Campaigns are listed side by side in the order given.

With two campaigns of the same seed and store, `--paired` also prints, per bucket, the median
over APIs of the second campaign's time over the first's on the trials both ran identically (the
same index and trial key).  On a machine whose speed drifts, the eager first trials (index 0),
whose code a change to staging does not touch, show the drift; the other buckets' ratios are to
be read against theirs.
"""
from __future__ import annotations

import argparse
import statistics
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
    parser.add_argument("--paired", action="store_true", help="the per-API time ratios of two campaigns' identical trials")
    a = parser.parse_args()
    if a.paired and len(a.campaigns) != 2:
        raise SystemExit("--paired compares two campaign directories (fix: name exactly two)")
    rows, logs = [], []
    for folder in a.campaigns:
        log = folder / "observations.jsonl"
        if not log.is_file():
            raise SystemExit(f"{log}: no observation log (fix: name a campaign directory, "
                             f"e.g. .nablafuzz/campaigns/<campaign id>)")
        obs = read_observations(log)
        logs.append(obs)
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
    if a.paired:
        paired(*logs)
    return 0


def paired(old, new) -> None:
    """Per bucket: the median over APIs of new / old seconds on the trials both ran identically."""
    first = {(o.api, o.index): o for o in old}
    both = [(first[(o.api, o.index)], o) for o in new if (o.api, o.index) in first and first[(o.api, o.index)].trial == o.trial]
    print()
    print("| identical trials | APIs | median over APIs of the second's time / the first's |")
    print("|---|---|---|")
    for label, lo, hi in BUCKETS:
        sums = {}
        for o, n in both:
            if lo <= o.index < hi:
                was, now = sums.get(o.api, (0.0, 0.0))
                sums[o.api] = (was + o.seconds, now + n.seconds)
        ratios = [now / was for was, now in sums.values() if was > 0]
        print(f"| {label} | {len(ratios)} | {statistics.median(ratios):.3f} |" if ratios else f"| {label} | 0 | |")


if __name__ == "__main__":
    sys.exit(main())
