"""Reports a campaign created, by the oracle scenario that made them visible (issue: references
and scenarios).

    python bench/oracle_findings.py CAMPAIGN [CAMPAIGN ...] [--store bug_reports]

A report counts for a campaign when the campaign's name is the first in its list of campaigns.
Its class is the new scenario it needs: where every culprit is a new scenario, `entry point`
(a torch.func / jax / TensorFlow transform), `third order` (a three-step composition) or
`kernels` (the other kernels' worker); else `reference` (a plain mode judged against the
50-digit mpmath reference), `undeclared mode` (an error in a mode the spec does not declare),
`non-finite derivative` (kept by the non-finite filter now), or `other` (what the oracle saw
before).  Prints one table per campaign: class, reports, APIs.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nablafuzz.core.model import Verdict  # noqa: E402
from nablafuzz.core.quantities import ENTRY_POINTS, KERNELS  # noqa: E402
from nablafuzz.reports.store import Store  # noqa: E402

CLASSES = ("entry point", "third order", "kernels", "reference", "undeclared mode", "non-finite derivative", "other")


def oracle_class(report) -> str:
    """The new scenario a report needs: a culprit only a new scenario computes, else what judged a
    plain mode (the 50-digit reference), else the verdict the oracle now keeps."""
    fp = report.fingerprint
    culprits = set(fp.scenarios)
    plain = {s for s in culprits if s not in ENTRY_POINTS and s != KERNELS and s.count(".") < 2}
    judged = {s for d in report.evidence.disagreements for s in d.scenarios[1:]}
    if not plain:
        if culprits & set(ENTRY_POINTS):
            return "entry point"
        if any(s.count(".") == 2 for s in culprits):
            return "third order"
        if KERNELS in culprits:
            return "kernels"
    if any(s.split(".")[0] == "mp" for s in judged):
        return "reference"
    if fp.verdict is Verdict.STATUS_MISMATCH and "does not declare" in report.evidence.message:
        return "undeclared mode"
    if fp.verdict is Verdict.NONFINITE_DERIVATIVE:
        return "non-finite derivative"
    return "other"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("campaigns", nargs="+")
    ap.add_argument("--store", default="bug_reports")
    args = ap.parse_args()
    reports, errors = Store(Path(args.store)).load_all()
    for e in errors:
        print(f"unreadable: {e}", file=sys.stderr)
    for name in args.campaigns:
        mine = [r for r in reports if r.campaigns and r.campaigns[0] == name]
        by = defaultdict(list)
        for r in mine:
            by[oracle_class(r)].append(r)
        print(f"## {name}: {len(mine)} new reports\n\n| class | reports | APIs |\n|---|---|---|")
        for c in CLASSES:
            rs = by.get(c, [])
            print(f"| {c} | {len(rs)} | {len({r.fingerprint.api for r in rs})} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
