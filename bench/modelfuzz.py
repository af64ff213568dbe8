"""Coverage-guided model fuzzing against random search, TensorFuzz's two experiments, and the
shared Keras model across backends.

    python bench/modelfuzz.py [--seeds 5] [--libraries torch,jax] [--out bench/results/modelfuzz.md]

1. NaN: `digits_unsafe` (the shipped MLP with TensorFuzz's unsafe softmax), objective
   `nonfinite`, 300,000 mutations per run, sum-|logits| coverage with the automatic threshold,
   guided and random (`--random`) for each seed and library: mutations to the first hit,
   seconds, corpus size; every report is replayed (`nablafuzz replay`).
2. float16: `digits_safe`, objective `fp16` inside an L-infinity ball of 0.5 around one test
   image per seed (`--seed-inputs 1 --linf 0.5`), guided and random at equal budget: seeds with
   a disagreement within 1,000 / 5,000 / 20,000 mutations.
3. Keras: `keras_digits` on the jax, torch and tensorflow backends: the largest disagreement of
   losses and gradients at 64 seed inputs, and the `cross` objective over 20,000 mutations
   (every hit would be a false report: the weights are identical).
4. With `--sweep T1,T2,..`: the NaN experiment's guided runs at fixed coverage thresholds
   (`--threshold`) instead of the automatic one: seeds with a hit, per library.

Runs write to a scratch report store (never bug_reports/: the planted defects are not library
bugs).  Prints a markdown table and writes it to --out.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nablafuzz.modelfuzz.client import ModelClient  # noqa: E402
from nablafuzz.specs.models import MODELS_FILE, load_model_specs  # noqa: E402


def modelfuzz(scratch: Path, *args: str) -> Dict[str, object]:
    """One `nablafuzz modelfuzz` command; its summary.json (guided, random, reports)."""
    out = scratch / f"out-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "nablafuzz", "modelfuzz", *args, "--store", str(scratch / "store"), "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return json.loads(next(out.glob("*/summary.json")).read_text())


def replays(paths: List[str]) -> int:
    """How many of the reports `nablafuzz replay` reproduces."""
    ok = 0
    for p in paths:
        r = subprocess.run([sys.executable, "-m", "nablafuzz", "replay", p], cwd=ROOT, capture_output=True, text=True)
        ok += r.returncode == 0
    return ok


def first(summary: Dict[str, object], how: str, objective: str):
    return summary[how]["first_hit"][objective]


def nan_experiment(scratch: Path, libraries: List[str], seeds: int) -> List[str]:
    lines = ["## 1. NaN in the unsafe-loss classifier (`digits_unsafe`, objective `nonfinite`, 300,000 mutations)", "",
             "| library | seed | guided: first hit | guided s | corpus | random: first hit | random s | reports replayed |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    totals = {}
    for lib in libraries:
        found = {"guided": 0, "random": 0}
        for seed in range(seeds):
            s = modelfuzz(scratch, "--model", "digits_unsafe", "-l", lib, "--seed", str(seed), "--random")
            g, r = first(s, "guided", "nonfinite"), first(s, "random", "nonfinite")
            found["guided"] += g is not None
            found["random"] += r is not None
            paths = [rep["path"] for rep in s["reports"]]
            lines.append(f"| {lib} | {seed} | {g if g is not None else 'none'} | {s['guided']['seconds']} | "
                         f"{s['guided']['corpus']} | {r if r is not None else 'none'} | {s['random']['seconds']} | "
                         f"{replays(paths)} / {len(paths)} |")
        totals[lib] = found
    lines += [""] + [f"- {lib}: guided found a non-finite loss or gradient in **{f['guided']} / {seeds}** seeds, "
                     f"random in **{f['random']} / {seeds}**" for lib, f in totals.items()] + [""]
    return lines


def fp16_experiment(scratch: Path, libraries: List[str], seeds: int) -> List[str]:
    budgets = (1000, 5000, 20000)
    lines = ["## 2. float32 vs float16 (`digits_safe`, objective `fp16`, L-infinity ball 0.5 around one test image "
             "per seed)", "", "| library | seed | guided: first hit | random: first hit |", "|---|---:|---:|---:|"]
    counts = {}
    for lib in libraries:
        hits = {"guided": [], "random": []}
        for seed in range(seeds):
            s = modelfuzz(scratch, "--model", "digits_safe", "-l", lib, "--objective", "fp16", "--linf", "0.5",
                          "--seed-inputs", "1", "--mutations", str(budgets[-1]), "--seed", str(seed), "--random")
            for how in hits:
                hits[how].append(first(s, how, "fp16"))
            lines.append(f"| {lib} | {seed} | {hits['guided'][-1]} | {hits['random'][-1]} |")
        counts[lib] = hits
    lines += ["", "| library | budget | seeds with a disagreement: guided | random |", "|---|---:|---:|---:|"]
    for lib, hits in counts.items():
        for b in budgets:
            n = {how: sum(h is not None and h <= b for h in hs) for how, hs in hits.items()}
            lines.append(f"| {lib} | {b:,} | {n['guided']} / {seeds} | {n['random']} / {seeds} |")
    return lines + [""]


def sweep_experiment(scratch: Path, libraries: List[str], seeds: int, thresholds: List[float]) -> List[str]:
    lines = ["## 4. Coverage threshold (`digits_unsafe`, `nonfinite`, 300,000 guided mutations per seed)", "",
             "| library | threshold | seeds with a hit | first hits |", "|---|---:|---:|---|"]
    for lib in libraries:
        for t in thresholds:
            hits = [first(modelfuzz(scratch, "--model", "digits_unsafe", "-l", lib, "--seed", str(seed), "--threshold",
                                    str(t)), "guided", "nonfinite") for seed in range(seeds)]
            found = [h for h in hits if h is not None]
            lines.append(f"| {lib} | {t} | {len(found)} / {seeds} | {', '.join(map(str, found)) or '-'} |")
    return lines + [""]


def keras_experiment(scratch: Path) -> List[str]:
    spec = load_model_specs([ROOT / MODELS_FILE])["keras_digits"]
    clients = [ModelClient(spec, lib, scratch / f"keras-{lib}.log") for lib in ("jax", "torch", "tensorflow")]
    try:
        x, y, _ = clients[0].seeds()
        answers = [c.batch(x[:64], y[:64], list(range(64)), ["cross"], "logits").detail for c in clients]
    finally:
        for c in clients:
            c.close()
    lines = ["## 3. One Keras 3 model, three backends (`keras_digits`, identical weights)", "",
             "| backend vs jax | max loss difference | max rel. <u, dloss/dx> difference | rel. <w, dloss/dparams> difference |",
             "|---|---:|---:|---:|"]
    a = answers[0]
    for c, b in zip(clients[1:], answers[1:]):
        rel = np.max(np.abs(a["rev"] - b["rev"]) / np.maximum(a["scale"], b["scale"]))
        lines.append(f"| {c.library} | {np.max(np.abs(a['loss'] - b['loss'])):.2e} | {rel:.2e} | "
                     f"{abs(a['params'][0] - b['params'][0]) / a['params'][1]:.2e} |")
    s = modelfuzz(scratch, "--model", "keras_digits", "-l", "jax,torch,tensorflow", "--objective", "cross",
                  "--mutations", "20000")
    hit = first(s, "guided", "cross")
    lines += ["", f"`cross` objective over {s['guided']['mutations']:,} guided mutations "
              f"({s['guided']['seconds']} s, corpus {s['guided']['corpus']}): "
              f"{'no disagreement (no report)' if hit is None else f'DISAGREEMENT after {hit} mutations'}", ""]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--libraries", default="torch,jax")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/modelfuzz.md")
    ap.add_argument("--sweep", default="", help="fixed thresholds to compare, e.g. 0.1,0.25,0.5,1.0")
    args = ap.parse_args()
    libraries = [x for x in args.libraries.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        lines = ["# Model fuzzing (`nablafuzz modelfuzz`): coverage guidance vs random search", "",
                 f"`python bench/modelfuzz.py --seeds {args.seeds} --libraries {args.libraries}"
                 + (f" --sweep {args.sweep}`" if args.sweep else "`") + " "
                 f"({time.strftime('%Y-%m-%d')}, this machine kind: 2 cores)", ""]
        lines += nan_experiment(scratch, libraries, args.seeds)
        lines += fp16_experiment(scratch, libraries, args.seeds)
        lines += keras_experiment(scratch)
        if args.sweep:
            lines += sweep_experiment(scratch, libraries, args.seeds, [float(t) for t in args.sweep.split(",")])
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
