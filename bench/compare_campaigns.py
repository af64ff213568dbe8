"""Finding power of two campaigns: the distinct fingerprints each saw, on the APIs both covered.

    python bench/compare_campaigns.py OLD_ID NEW_ID [--store bug_reports]

Reads the two campaign records of the store (`<store>/_campaigns/<id>.json`: the APIs a campaign
covered, the report keys it saw) and prints, over the APIs both covered, the fingerprints only the
old one saw (each with its report's API, verdict and vetting), those only the new one saw, and the
counts.  A fingerprint only the old campaign saw is a loss of finding power unless its report was
vetted a convention or a false positive (a report the newer code rightly no longer makes).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Set

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.reports.store import Store  # noqa: E402
from nablafuzz.reports.vetting import dismissed  # noqa: E402


def record(store: Path, campaign: str) -> Dict:
    path = store / "_campaigns" / f"{campaign}.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no such campaign record (fix: name a campaign of this store: "
                         f"{', '.join(sorted(p.stem for p in (store / '_campaigns').glob('*.json')))})")
    return json.loads(path.read_text())["campaign"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--store", default="bug_reports")
    args = parser.parse_args()
    store = Path(args.store)
    old, new = record(store, args.old), record(store, args.new)
    both = set(old["apis"]) & set(new["apis"])
    reports = {r.key: r for r in Store(store)}

    def on_both(keys) -> Set[str]:
        return {k for k in keys if k in reports and reports[k].fingerprint.task in both}

    seen_old, seen_new = on_both(old["seen"]), on_both(new["seen"])
    print(f"APIs covered: {args.old} {len(old['apis'])}, {args.new} {len(new['apis'])}, both {len(both)}")
    print(f"distinct fingerprints on the APIs both covered: {args.old} {len(seen_old)}, {args.new} {len(seen_new)}, "
          f"both {len(seen_old & seen_new)}")
    for title, keys in ((f"only {args.old}", seen_old - seen_new), (f"only {args.new}", seen_new - seen_old)):
        print(f"{title}: {len(keys)}")
        for k in sorted(keys, key=lambda k: reports[k].fingerprint.api):
            r = reports[k]
            vetting = r.vetted.verdict if r.vetted else "not vetted"
            print(f"  {k}  {r.fingerprint.api}  {r.fingerprint.verdict.value}  ({vetting})")
    lost = [k for k in seen_old - seen_new if not dismissed(reports[k])]
    print(f"lost (seen only by {args.old}, and not vetted a convention or a false positive): {len(lost)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
