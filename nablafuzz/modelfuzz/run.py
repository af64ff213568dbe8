"""One `nablafuzz modelfuzz` command: guided (and, with --random, unguided) runs of one model
in each library, hits confirmed, minimised and written to the report store, a summary and a
plot under the output directory."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.model import Aspect
from ..oracle.tolerance import CROSS_VALUE, table_tolerance
from ..reports.lock import exclusive
from ..reports.store import Store, now, path_of, remove_leftovers, write_atomic
from ..specs.models import ModelSpec
from .client import Batch, ModelClient
from .findings import confirmed_detail, finding, minimise
from .loop import Evaluate, Run, Settings, fuzz

CURVE_POINTS = 400  # points of a run's curve kept in the summary
CROSS_RTOL = table_tolerance("float32", Aspect.DERIVATIVE).rtol  # libraries' gradient projections compared


@dataclass(frozen=True)
class Reported:
    objective: str
    how: str  # guided / random
    path: str
    created: bool


@dataclass(frozen=True)
class Outcome:
    library: str
    guided: Run
    random: Optional[Run]
    reports: Tuple[Reported, ...]


def cross_evaluate(clients: Sequence[ModelClient], objectives: Sequence[str], coverage: str,
                   rtol: float = CROSS_RTOL) -> Evaluate:
    """All libraries' answers for one batch: the first library's coverage and hits, and `cross`
    where another library's loss differs beyond the cross-library float32 value tolerance
    (its absolute part relative to the logits: a loss near 0 is log-softmax's cancellation), or
    its <u, dloss/dx> or <w, dloss/dparams> beyond the float32 derivative tolerance `rtol`, widened
    where the loss is near 0 (Note [confident gradients])."""
    value = CROSS_VALUE["float32"]
    def evaluate(x: np.ndarray, y: np.ndarray, seeds: Sequence[int]) -> Batch:
        answers = [c.batch(x, y, seeds, objectives, coverage) for c in clients]
        first = answers[0]
        differs = np.zeros(len(x), dtype=bool)
        for other in answers[1:]:
            a, b = first.detail, other.detail
            scale = np.maximum(a["scale"], b["scale"])
            with np.errstate(invalid="ignore"):
                differs |= np.abs(a["rev"] - b["rev"]) > (rtol + confident_rtol(a["loss"], b["loss"])) * scale
                allowed = (value.atol * np.maximum(1.0, np.maximum(a["logit_max"], b["logit_max"]))
                           + value.rtol * np.maximum(np.abs(a["loss"]), np.abs(b["loss"])))
                differs |= np.abs(a["loss"] - b["loss"]) > allowed
                pa, pb = a["params"], b["params"]
                if abs(pa[0] - pb[0]) > rtol * max(pa[1], pb[1]):
                    differs |= True  # which example: each candidate is confirmed alone
        detail = dict(first.detail)
        for c, other in zip(clients[1:], answers[1:]):
            detail.update({f"{k}_{c.library}": v for k, v in other.detail.items() if k in ("loss", "rev")})
        detail.pop("params", None)
        return Batch(first.coverage, dict(first.hits, cross=differs), detail)
    return evaluate


# Note [confident gradients]
# At an input the model classifies with confidence, the loss -log p_y is near 0 and its
# gradient in the logits, p - onehot, is near 0 too: its y entry is p_y - 1, the difference of
# two nearly equal float32 numbers, off by up to eps32 in absolute terms, that is by eps32 / loss
# relatively.  The keras digits model's example 26 (loss 6.1e-6) gives <u, dloss/dx> 2.6e-3 apart
# relatively in torch and JAX, as the same float32 code on different kernels may.  The gradient
# tolerance grows by twice that (each library rounds on its own): by 2.4e-3 at a loss of 1e-4,
# by 2.4e-5 at 1e-2.
def confident_rtol(loss_a: np.ndarray, loss_b: np.ndarray) -> np.ndarray:
    """The relative error of dloss/dx that float32 rounding alone gives at these losses."""
    eps = float(np.finfo(np.float32).eps)
    return 2 * eps / np.maximum(np.minimum(np.abs(loss_a), np.abs(loss_b)), eps)


def single_evaluate(client: ModelClient, objectives: Sequence[str], coverage: str) -> Evaluate:
    return lambda x, y, seeds: client.batch(x, y, seeds, objectives, coverage)


def run_id(spec: ModelSpec, library: str, s: Settings) -> str:
    raw = f"modelfuzz-{spec.name}-{library}-{'+'.join(s.objectives)}-{s.coverage}-s{s.seed}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", raw)


def run_model(spec: ModelSpec, libraries: Sequence[str], s: Settings, store_dir: Path, out_dir: Path,
              with_random: bool, log_dir: Path, say: Callable[[str], None] = print) -> List[Outcome]:
    """Fuzz `spec` in each library (or, with the `cross` objective, in all of them at once)."""
    groups = [list(libraries)] if "cross" in s.objectives else [[lib] for lib in libraries]
    outcomes = []
    with exclusive(Path(store_dir), "report store"):  # the store has one writer at a time
        remove_leftovers(Path(store_dir))
        for group in groups:
            clients = [ModelClient(spec, lib, log_dir / f"modelfuzz-{spec.name}-{lib}.log") for lib in group]
            try:
                outcomes.append(_run_group(spec, clients, s, store_dir, out_dir, with_random, say))
            finally:
                for c in clients:
                    c.close()
    return outcomes


def _run_group(spec: ModelSpec, clients: List[ModelClient], s: Settings, store_dir: Path, out_dir: Path,
               with_random: bool, say: Callable[[str], None]) -> Outcome:
    library = "+".join(c.library for c in clients)
    if len(clients) > 1:
        evaluate = cross_evaluate(clients, s.objectives, s.coverage)
    else:
        evaluate = single_evaluate(clients[0], s.objectives, s.coverage)
    xs, ys, _ = clients[0].seeds()
    runs = {"guided": fuzz(evaluate, xs, ys, spec.input_range, s)}
    if with_random:
        runs["random"] = fuzz(evaluate, xs, ys, spec.input_range, replace(s, random=True))
    for how, r in runs.items():
        hits = ", ".join(f"{h.objective} after {h.mutation}" for h in r.hits) or "no hit"
        say(f"{spec.name} {library} {how}: {r.mutations} mutations in {r.seconds:.1f} s, corpus {r.corpus}, {hits}")
    store, reported = Store(store_dir), []
    versions = tuple(v for c in clients for v in c.versions)
    rid = run_id(spec, library, s)
    for how, r in runs.items():
        for hit in r.hits:
            root_x = xs[hit.root].astype(np.float64)
            x = minimise(evaluate, hit, root_x)
            detail = confirmed_detail(evaluate, hit.objective, x, hit.y, hit.mutation)
            if detail is None:  # not reproducible at the minimised input: report the hit itself
                x, detail = hit.x, dict(hit.detail)
            f = finding(spec, clients[-1].library if hit.objective == "cross" else clients[0].library, hit, x, detail,
                        how, root_x, s.seed, _others(clients, hit.objective))
            report, created = store.record(f, f.trial, versions, rid)
            reported.append(Reported(hit.objective, how, str(path_of(store.root, report)), created))
            say(f"  {hit.objective} ({how}): {'new report' if created else 'seen before'} {path_of(store.root, report)}")
    outcome = Outcome(library, runs["guided"], runs.get("random"), tuple(reported))
    write_summary(out_dir / rid, spec, outcome)
    return outcome


def _others(clients: Sequence[ModelClient], objective: str) -> Optional[str]:
    if objective != "cross":
        return None
    return "compared libraries: " + ", ".join(c.library for c in clients)


def _curve(r: Run) -> List[Tuple[int, int, int]]:
    step = max(1, len(r.curve) // CURVE_POINTS)
    return [list(p) for p in r.curve[::step]] + ([list(r.curve[-1])] if r.curve else [])


def run_record(r: Run) -> Dict[str, object]:
    return {"mutations": r.mutations, "seconds": round(r.seconds, 2), "threshold": r.threshold, "corpus": r.corpus,
            "first_hit": {o: next((h.mutation for h in r.hits if h.objective == o), None) for o in r.settings.objectives},
            "seed_inputs": list(r.roots), "curve": _curve(r)}


def write_summary(directory: Path, spec: ModelSpec, o: Outcome) -> Path:
    """summary.json (settings, both runs' corpus growth and mutations to the first hit, the
    reports) and plot.png."""
    s = o.guided.settings
    data = {"model": spec.name, "library": o.library, "finished": now(),
            "settings": {k: v for k, v in asdict(s).items() if k != "random"},
            "guided": run_record(o.guided), "random": None if o.random is None else run_record(o.random),
            "reports": [asdict(r) for r in o.reports]}
    write_atomic(directory / "summary.json", json.dumps(data, indent=1) + "\n")
    from .plot import plot_runs
    plot_runs(directory / "plot.png", f"{spec.name} ({o.library}): {', '.join(s.objectives)}, coverage {s.coverage}",
              {"guided": o.guided, **({"random": o.random} if o.random else {})})
    return directory


def lines(outcomes: Sequence[Outcome]) -> List[str]:
    out = []
    for o in outcomes:
        for how, r in (("guided", o.guided), ("random", o.random)):
            if r is None:
                continue
            first = ", ".join(f"{k}: {'not found' if v is None else f'{v} mutations'}"
                              for k, v in run_record(r)["first_hit"].items())
            out.append(f"{o.library} {how}: {r.mutations} mutations, {r.seconds:.1f} s, corpus {r.corpus}; first hit: {first}")
    return out

