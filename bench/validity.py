"""Learned input validity (`--validity-model`): an unguided and a guided campaign side by side.

    python bench/validity.py UNGUIDED GUIDED [--campaign-dir .nablafuzz/campaigns]
    python bench/validity.py --run -l tensorflow --budget 1200 --name tf-validity   # runs both first
    python bench/validity.py --run -l jax --budget 300 --low-from jax-20min-breadth --name jax-low
    python bench/validity.py --run -l tensorflow --budget 300 --api tf.gather --api tf.eye ... --name tf-low

With --run, runs `nablafuzz campaign -l LIB --trials 400 --budget B --api-budget A --workers 2`
twice, named NAME-unguided (--no-validity-model) and NAME-guided (--validity-model): same APIs,
seed and wall time; with --low-from CAMPAIGN only on the APIs whose valid rate in that
(unguided) campaign's log is under 70 %, and --api-budget 60 (the fair share then spreads the
budget over them; 4 otherwise).  Then reads both observation logs and prints:

  * over the APIs whose valid rate in the unguided campaign is under 70 % (LOW): the valid rate
    of each campaign there (the guided one: all its trials, and the model's picks alone);
  * the guided campaign's held-out accuracy per API (every trial its model predicted, before
    the trial ran) and the 5-fold cross-validated accuracy of the same classifier on the
    unguided campaign's trials of the LOW APIs (as the study measured it);
  * the distinct fingerprints (crashes included) each campaign saw, over the LOW APIs and over
    all, and those only one of them saw.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.campaign.validity import KEEP, argument_names, classifier  # noqa: E402
from nablafuzz.campaign.stats import Observation, predicted  # noqa: E402
from nablafuzz.core.model import mean_accuracy  # noqa: E402
from nablafuzz.core.config import make_config  # noqa: E402
from nablafuzz.libraries import staged_for  # noqa: E402
from nablafuzz.reports.store import trial_key  # noqa: E402
from nablafuzz.specs.features import features  # noqa: E402
from nablafuzz.specs.generate import generate  # noqa: E402
from nablafuzz.specs.spec import load_specs  # noqa: E402

LOW = 0.70


def observations(path: Path) -> List[dict]:
    log = path / "observations.jsonl"
    if not log.is_file():
        raise SystemExit(f"{log}: no observation log (fix: name a campaign under --campaign-dir, or use --run)")
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def rate(rows: List[dict]) -> str:
    return f"{sum(r['valid'] for r in rows)}/{len(rows)} ({sum(r['valid'] for r in rows) / len(rows):.1%})" if rows else "0/0"


def cross_validated(rows: List[dict], spec_dir: Path) -> Dict[str, float]:
    """5-fold accuracy of the validity classifier on each API's unguided trials (regenerated)."""
    from sklearn.model_selection import cross_val_score
    by_api: Dict[str, List[dict]] = defaultdict(list)
    for r in rows:
        by_api[r["api"]].append(r)
    libraries = sorted({a.split(":")[0] for a in by_api})
    specs = load_specs(spec_dir, libraries, []).by_id()
    config = make_config("default", libraries=libraries)
    out: Dict[str, float] = {}
    fits: List[tuple] = []
    for api, obs in sorted(by_api.items()):
        labels = [bool(o["valid"]) for o in obs]
        if api not in specs or min(sum(labels), len(labels) - sum(labels)) < 5:
            continue
        spec = specs[api]
        names = argument_names(spec)
        trials = [generate(spec, 0, o["index"], config.max_tensor_size, config.max_rank,
                           regime_share=config.regime_share, pooled=staged_for(config, spec.library),
                           candidate=o.get("candidate", 0)) for o in obs]
        if any(trial_key(t) != o["trial"] for t, o in zip(trials, obs)):
            raise SystemExit(f"{api}: the logged trials do not regenerate (fix: compare campaigns run with "
                             "seed 0 and the default sizes, in their first round)")
        x = [features(t, names) for t in trials]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[api] = float(cross_val_score(classifier(0), x, labels, cv=5).mean())
            began = time.perf_counter()
            classifier(0).fit(x[-KEEP:], labels[-KEEP:])
            fits.append((time.perf_counter() - began, min(len(x), KEEP)))
    if fits:
        print(f"one fit (as a campaign refits, on an API's last {KEEP} trials at most): mean "
              f"{1e3 * sum(f for f, _ in fits) / len(fits):.0f} ms, max {1e3 * max(f for f, _ in fits):.0f} ms "
              f"over {len(fits)} APIs")
    return out


def fingerprints(rows: List[dict]) -> Set[str]:
    return {k for r in rows for k in r["findings"]}


def low_validity(rows: List[dict]) -> Set[str]:
    """The APIs whose valid rate among these observations is under LOW."""
    per_api: Dict[str, List[bool]] = defaultdict(list)
    for r in rows:
        per_api[r["api"]].append(bool(r["valid"]))
    return {a for a, v in per_api.items() if sum(v) / len(v) < LOW}


def run(library: str, budget: int, name: str, campaign_dir: Path, apis: Set[str]) -> None:
    """Both halves, each with a copy of bug_reports/ as its store (the bench writes no report there)
    and without JAX's persistent compilation cache (Note [persistent compilation cache]): the
    second half would load what the first compiled and run more trials in the same time."""
    selection = [x for a in sorted(apis) for x in ("--api", a.split(":", 1)[1])]
    for mode in ("unguided", "guided"):
        if (campaign_dir / f"{name}-{mode}" / "complete").exists():
            continue
        store = campaign_dir / f"{name}-{mode}-store"
        if not store.exists():
            shutil.copytree(ROOT / "bug_reports", store)
        cmd = [sys.executable, "-m", "nablafuzz", "campaign", "-l", library, "--trials", "400", "--budget",
               str(budget), "--api-budget", "60" if apis else "4", "--workers", "2", "--name", f"{name}-{mode}",
               "--campaign-dir", str(campaign_dir), "--store", str(store),
               "--validity-model" if mode == "guided" else "--no-validity-model", *selection]
        print("$", " ".join(cmd[1:]), "  # JAX_COMPILATION_CACHE_DIR=''", flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=dict(os.environ, JAX_COMPILATION_CACHE_DIR=""))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("unguided", nargs="?")
    parser.add_argument("guided", nargs="?")
    parser.add_argument("--campaign-dir", default=".nablafuzz/campaigns")
    parser.add_argument("--spec-dir", default="api_specs")
    parser.add_argument("--run", action="store_true")
    parser.add_argument("-l", "--library")
    parser.add_argument("--budget", type=int, default=1200)
    parser.add_argument("--name", default="validity")
    parser.add_argument("--low-from", help="--run only the APIs under 70 %% valid in this campaign's log")
    parser.add_argument("--api", action="append", default=[],
                        help="--run only these APIs (repeatable; e.g. those an earlier bench output lists)")
    args = parser.parse_args()
    cdir = Path(args.campaign_dir)
    if args.run:
        if not args.library:
            raise SystemExit("--run needs -l LIBRARY")
        apis = {a for a in low_validity(observations(cdir / args.low_from)) if a.startswith(f"{args.library}:")} \
            if args.low_from else {f"{args.library}:{a}" for a in args.api}
        run(args.library, args.budget, args.name, cdir, apis)
        args.unguided, args.guided = f"{args.name}-unguided", f"{args.name}-guided"
    if not (args.unguided and args.guided):
        raise SystemExit("name two campaigns (UNGUIDED GUIDED), or --run -l LIBRARY")
    plain, guided = observations(cdir / args.unguided), observations(cdir / args.guided)
    per_api: Dict[str, List[dict]] = defaultdict(list)
    for r in plain:
        per_api[r["api"]].append(r)
    low = low_validity(plain)
    never = {a for a in low if not any(r["valid"] for r in per_api[a])}
    on_low = lambda rows: [r for r in rows if r["api"] in low]  # noqa: E731
    print(f"unguided {args.unguided}: {len(plain)} trials over {len(per_api)} APIs; guided {args.guided}: "
          f"{len(guided)} trials over {len({r['api'] for r in guided})} APIs")
    print(f"APIs under {LOW:.0%} valid unguided: {len(low)} ({len(never)} with no valid trial at all)")
    print(f"  valid rate there: unguided {rate(on_low(plain))}, guided {rate(on_low(guided))}, "
          f"the model's picks {rate([r for r in on_low(guided) if r.get('pick') == 'model'])}")
    some = low - never
    print(f"  over the {len(some)} of them with a valid unguided trial: unguided "
          f"{rate([r for r in plain if r['api'] in some])}, guided {rate([r for r in guided if r['api'] in some])}")
    print(f"valid rate over all APIs: unguided {rate(plain)}, guided {rate(guided)}")
    held_out = predicted([Observation.from_json(r) for r in guided])  # as the campaign summary counts it
    acc = {api: right / n for api, n, right, _ in held_out}
    if held_out:
        print(f"held-out accuracy of the guided campaign's models (each trial predicted before it ran): "
              f"mean {mean_accuracy(held_out):.1%} over {len(held_out)} APIs, {sum(n for _, n, _, _ in held_out)} trials")
    cv = cross_validated(on_low(plain), Path(args.spec_dir))
    if cv:
        print(f"5-fold cross-validated accuracy on the unguided trials of the low-validity APIs: "
              f"mean {sum(cv.values()) / len(cv):.1%} over {len(cv)} APIs (those with 5 trials of each label)")
    for title, a, b in (("low-validity APIs", on_low(plain), on_low(guided)), ("all APIs", plain, guided)):
        fa, fb = fingerprints(a), fingerprints(b)
        print(f"distinct fingerprints, {title}: unguided {len(fa)}, guided {len(fb)}, both {len(fa & fb)}")
        for who, keys in (("unguided", fa - fb), ("guided", fb - fa)):
            for k in sorted(keys):
                print(f"  only {who}: {k}")
    print("per API (unguided rate -> guided rate, model picks; held-out accuracy; cross-validated accuracy):")
    gper: Dict[str, List[dict]] = defaultdict(list)
    for r in guided:
        gper[r["api"]].append(r)
    for a in sorted(low):
        picks = [r for r in gper[a] if r.get("pick") == "model"]
        print(f"  {a}: {rate(per_api[a])} -> {rate(gper[a])}, picks {rate(picks)}; "
              f"{f'{acc[a]:.0%}' if a in acc else '-'}; {f'{cv[a]:.0%}' if a in cv else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
