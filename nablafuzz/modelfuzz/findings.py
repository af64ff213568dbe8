"""Hits -> reports: minimised toward their seed input, written to the report store.

A model finding's trial is the literal input and label (`x` [1, ...], `y` [1]) under the API
`model:<name>`; its seed is the direction seed of the objective's projections, so the report
replays exactly (replay.py).  Fingerprint: library, model, objective.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from ..core.model import ArgKind, Candidate, Finding, InputValue, Trial
from ..core.objectives import OBJECTIVES
from ..core.tensors import to_record
from ..specs.models import ModelSpec
from .loop import Evaluate, Hit, example

LINE_POINTS = 32  # points on the segment seed -> hit per minimisation batch
CHUNKS = (4, 16, 64)  # coordinate groups tried back at the seed's value, coarse to fine


def hits_at(evaluate: Evaluate, objective: str, xs: np.ndarray, y: int, seed: int) -> np.ndarray:
    b = evaluate(xs.astype(np.float32), np.full(len(xs), y), [seed] * len(xs))
    return b.hits.get(objective, np.zeros(len(xs), bool))


def minimise(evaluate: Evaluate, hit: Hit, root_x: np.ndarray) -> np.ndarray:
    """An input that still hits, as close to the seed input as a line search and then
    resetting groups of coordinates to the seed's values get it (the hit itself at worst)."""
    d = hit.x.astype(np.float64) - root_x
    lo, hi = 0.0, 1.0  # the hit is at t = 1 on root_x + t d
    for _ in range(2):  # the segment, then the interval before its first hit
        ts = np.linspace(lo, hi, LINE_POINTS + 1)[1:]
        xs = root_x[None] + ts.reshape((-1,) + (1,) * root_x.ndim) * d[None]
        ok = np.flatnonzero(hits_at(evaluate, hit.objective, xs, hit.y, hit.mutation))
        if not len(ok):
            break
        k = int(ok[0])
        lo, hi = (float(ts[k - 1]) if k else lo), float(ts[k])
    best = (root_x + hi * d).astype(np.float32).astype(np.float64)
    for n in CHUNKS:
        moved = np.flatnonzero((best != root_x).ravel())
        if len(moved) < 2:
            break
        groups = np.array_split(moved, min(n, len(moved)))
        tries = np.repeat(best.ravel()[None], len(groups), axis=0)
        for j, g in enumerate(groups):
            tries[j, g] = root_x.ravel()[g]
        ok = hits_at(evaluate, hit.objective, tries.reshape((-1,) + best.shape), hit.y, hit.mutation)
        if ok.any():
            merged = best.ravel().copy()
            for j in np.flatnonzero(ok):
                merged[groups[j]] = root_x.ravel()[groups[j]]
            one = merged.reshape(best.shape)
            best = one if hits_at(evaluate, hit.objective, one[None], hit.y, hit.mutation)[0] else \
                tries[int(np.flatnonzero(ok)[0])].reshape(best.shape)
    return best.astype(np.float32)


def model_trial(spec: ModelSpec, library: str, x: np.ndarray, y: int, seed: int) -> Trial:
    return Trial(library, spec.api, int(seed), "float32",
                 (InputValue("x", ArgKind.TENSOR, to_record(np.asarray(x, np.float32)[None]), True),
                  InputValue("y", ArgKind.TENSOR, to_record(np.array([y], dtype=np.int64)))))


def trial_arrays(trial: Trial) -> Tuple[np.ndarray, np.ndarray]:
    """(x [1, ...] float32, y [1] int64) of a model trial."""
    from ..core.tensors import to_array
    named = {i.name: i.value for i in trial.inputs}
    return to_array(named["x"]).astype(np.float32), to_array(named["y"]).astype(np.int64)


def _g(detail: Dict[str, float], k: str) -> str:
    v = detail.get(k)
    return "n/a" if v is None else f"{v:.9g}"


def describe(objective: str, detail: Dict[str, float]) -> str:
    """What the objective saw at one input, in numbers."""
    loss = _g(detail, "loss")
    grad = "finite" if detail.get("grad_finite", 1.0) else "not finite"
    if objective in ("nonfinite", "grad-nonfinite"):
        return f"loss {loss}; its gradient (input and parameters) is {grad}"
    if objective == "rev-fwd-fd":
        return (f"<u, dloss/dx> in float64: reverse mode {_g(detail, 'rev64')}, forward mode {_g(detail, 'fwd')}, "
                f"central differences {_g(detail, 'fd')} (scale sum|u||g| {_g(detail, 'scale')}); <w, dloss/dparams> "
                f"in float64: reverse mode {_g(detail, 'p_rev')}, forward mode {_g(detail, 'p_fwd')}, central "
                f"differences {_g(detail, 'p_fd')}; loss {loss}")
    if objective == "compiled":
        return (f"<u, dloss/dx> in float64: eager {_g(detail, 'rev64')}, compiled {_g(detail, 'compiled')}; "
                f"float32 eager {_g(detail, 'rev')}; loss {loss}")
    if objective in ("fp16", "bf16"):
        return (f"predicted class: float32 {detail.get('pred', -1):.0f}, {objective} {detail.get(objective + '_pred', -1):.0f}; "
                f"<u, dloss/dx>: float32 {_g(detail, 'rev')}, {objective} {_g(detail, objective + '_rev')}")
    return "; ".join(f"{k} {v:.9g}" for k, v in sorted(detail.items()))


def finding(spec: ModelSpec, library: str, hit: Hit, x: np.ndarray, detail: Dict[str, float], how: str,
            root_x: np.ndarray, seed: int, extra: Optional[str] = None) -> Finding:
    obj = OBJECTIVES[hit.objective]
    far = float(np.max(np.abs(x.astype(np.float64) - root_x)))
    found = float(np.max(np.abs(hit.x.astype(np.float64) - root_x)))
    message = (f"model {spec.name} ({library}): {obj.what}: {describe(hit.objective, detail)}. Input: seed input "
               f"#{hit.root} (label {hit.y}) moved by {far:.3g} (L-infinity; the hit was {found:.3g} away), found "
               f"by {how} search after {hit.mutation} mutations (seed {seed})" + (f"; {extra}" if extra else ""))
    trial = model_trial(spec, library, x, hit.y, hit.mutation)
    return Finding(trial, Candidate(obj.verdict, (hit.objective,), 1, message=message), (), obj.severity, message)


def confirmed_detail(evaluate: Evaluate, objective: str, x: np.ndarray, y: int, seed: int) -> Optional[Dict[str, float]]:
    """The numbers at x if the objective holds there (None if it does not)."""
    b = evaluate(x[None].astype(np.float32), np.array([y]), [seed])
    if not b.hits.get(objective, np.zeros(1, bool))[0]:
        return None
    return dict(example(b, 0))
