"""A release-vs-release campaign between two runtimes of one library, then a replay of each of
its reports against both runtimes; prints the campaign summary and one line per change.

    python bench/releases.py --versions jax@0.8.0,jax [--budget 900] [--trials 5] [--api GLOB]
                             [--out bench/results/releases-jax-0.8.0.md]

The older runtime is built first if missing (`nablafuzz install --only jax@0.8.0`, ~15 s).  The
store and the campaign directory are temporary unless --store is given.  Each report is
replayed in fresh workers of both releases (`nablafuzz replay` does the same); "reproduced"
means the same fingerprint (API, quantity, class) came out again.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.campaign import run_campaign  # noqa: E402
from nablafuzz.campaign.releases import ReleaseReplayer, release_pair  # noqa: E402
from nablafuzz.core.config import make_config  # noqa: E402
from nablafuzz.reports.store import Store  # noqa: E402
from nablafuzz.runtime.install import install, split_release  # noqa: E402
from nablafuzz.specs.spec import load_specs  # noqa: E402


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--versions", required=True, help="OLD,NEW runtimes of one library, e.g. jax@0.8.0,jax")
    p.add_argument("--budget", type=float, default=900.0)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api", dest="apis", action="append", help="API glob (default: all)")
    p.add_argument("--store", type=Path, help="keep the store here (default: a temporary one)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    names = release_pair(args.versions.split(","))
    library = split_release(names[0])[0]
    install([n for n in names if "@" in n], log=lambda line: print(line, flush=True))
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "store"
        config = make_config("default", libraries=[library], versions=list(names), apis=args.apis or ["*"],
                             trials_per_api=args.trials, budget_s=args.budget, seed=args.seed,
                             store_dir=str(store), campaign_dir=str(Path(tmp) / "campaigns"))
        summary = run_campaign(config)
        reports, _ = Store(store).load_all()
        specs = {s.name: s for s in load_specs(ROOT / "api_specs", [library], []).specs}
        replayer = ReleaseReplayer([str(ROOT)])
        rows = []
        try:
            for r in sorted(reports, key=lambda r: (r.fingerprint.error_type, r.fingerprint.api)):
                result = replayer.replay(r, specs[r.fingerprint.api])
                rows.append((r, result.outcome.name.lower().replace("_", " "), ", ".join(result.versions)))
        finally:
            replayer.close()
    command = "python bench/releases.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# Release against release: `{command}`", "", "```"] + summary.lines() + ["```", "",
             "| class | API | quantities | severity | what | replay (both runtimes) |", "|---|---|---|---|---|---|"]
    for r, outcome, versions in rows:
        fp = r.fingerprint
        lines.append(f"| {fp.error_type} | `{fp.api}` | {', '.join(fp.scenarios)} | {r.evidence.severity} | "
                     f"{r.evidence.message[:240].replace('|', '/')} | {outcome} ({versions}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
