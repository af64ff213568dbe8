"""The worker's side of `nablafuzz numerics --confirm`, library-neutral (numpy): search for an
input that drives a flagged operation into its invalid set and makes the loss or its gradient
non-finite; uniform sampling as the baseline; the suggested fix checked at what was found.

A library supplies a `Program` (its models.py `program(m, backward)`) over its traced graph:
`operand(p, x, y, node, pos)` the operand's value, `step(p, x, y, node, pos, kind, limit)` the
distance to the invalid set with its gradients (w.r.t. parameters, input), `fails(p, x, y)`,
`outputs(p, x, y, clamps)` the verification graph's outputs with clamps (node, operand position,
low, high, away), `origins(p, x, y, clamps)` its nodes where a non-finite value arises from
finite operands, `params` and `seeds`.
Worker-safe: Python 3.10, numpy 1.26.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

SPECIALS = ("zeros", "low", "high", "seed")  # Note [special points]
STEP = 0.05  # sign-gradient step, as a share of the box (inputs) or of a parameter's own range
DECAY = 0.98
BISECTIONS = 60


# Note [special points]
# Before any gradient step, a search tries the zero input (where the box holds it), the box's
# corners and the seed's own data: an invalid set {0} (a denominator, a negative power, the
# derivative of sqrt at 0) is reached exactly there, where float steps only approach it.
def meets(v: np.ndarray, kind: str, limit: float) -> bool:
    v = np.asarray(v, dtype=np.float64)
    if kind == "low":
        return bool(v.min() <= limit)
    if kind == "high":
        return bool(v.max() > limit)
    return bool((np.abs(v) <= limit).any())


# Note [the defect's own NaN]
# A clamp removes the defect it was suggested for when, at the confirming input, no non-finite
# value arises any more at the flagged operation (or its derivative's) and any that still
# arises does so at another flagged operation: the next link of a chain (the softmax's 0/0
# clamped, its log(0) is still -inf), which that operation's own clamp removes. A value that
# arises at an operation the analysis did not flag counts against the clamp. Whether the
# clamp alone makes the loss and gradient finite is reported beside it (`fixed_finite`), and
# with every flag's clamp in place (`fixed_finite_all`).
def confirm(prog: Any, request: Dict[str, Any]) -> Dict[str, Any]:
    node, pos, kind, limit = int(request["node"]), int(request["position"]), request["kind"], float(request["limit"])
    box = (float(request["box"][0]), float(request["box"][1]))
    xs, ys = prog.seeds
    rng = np.random.default_rng(int(request["seed"]))
    i = int(rng.integers(len(xs)))
    y = np.asarray(ys[i:i + 1])
    shape = (1,) + tuple(xs.shape[1:])
    trained = prog.params
    ranges = {k: (float(v.min()), float(v.max())) for k, v in trained.items()}

    def hit(p: Dict[str, np.ndarray], x: np.ndarray) -> bool:
        return meets(prog.operand(p, x, y, node, pos), kind, limit) and bool(prog.fails(p, x, y))
    start = time.perf_counter()
    x0 = rng.uniform(box[0], box[1], shape).astype(np.float32)
    found, p, evals = _search(prog, hit, x0, xs[i:i + 1], y, box, trained, ranges, node, pos, kind, limit,
                              int(request["steps"]))
    guided = {"found": found is not None, "evaluations": evals,
              "seconds": time.perf_counter() - start,
              "params_moved": any(bool(np.any(p[k] != trained[k])) for k in p)}
    if found is not None:
        guided.update(x=np.asarray(found, dtype=np.float32), y=int(ys[i]))
    start = time.perf_counter()
    got, n = False, 0
    while n < int(request["uniform"]) and not got:
        n += 1
        got = hit(trained, rng.uniform(box[0], box[1], shape).astype(np.float32))
    out: Dict[str, Any] = {"op": "model", "guided": guided, "uniform": {"found": got, "samples": n,
                                                                        "seconds": time.perf_counter() - start}}
    fix = request.get("fix")
    if found is not None and fix:
        clamp = [(int(c[0]), int(c[1]), float(c[2]), float(c[3]), float(c[4])) for c in fix]
        out["fixed_finite"] = all(bool(np.isfinite(o).all()) for o in prog.outputs(p, found, y, clamp))
        # Note [the defect's own NaN]
        own = {int(i) for i in request.get("own") or ()}
        arise = set(prog.origins(p, found, y, clamp))
        out["removed"] = not arise & own and arise <= own | {int(i) for i in request.get("flagged") or ()}
        seed_x, seed_y = xs[:1].astype(np.float32), np.asarray(ys[:1])
        plain, patched = prog.outputs(trained, seed_x, seed_y, None), prog.outputs(trained, seed_x, seed_y, clamp)
        changes = []
        for a, b in zip(plain, patched):  # the largest change of an output relative to its largest entry
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            ok = np.isfinite(a)  # where the model is finite at the seed without the clamp
            if ok.any():
                changes.append(float(np.max(np.abs(a[ok] - b[ok]))) / max(float(np.max(np.abs(a[ok]))), 1e-30))
        out["fix_change"] = max(changes, default=0.0)
        others = [(int(c[0]), int(c[1]), float(c[2]), float(c[3]), float(c[4])) for c in request.get("others") or ()]
        if others:  # with every other flag's fix in place too: a defect that is one link of a chain
            out["fixed_finite_all"] = all(bool(np.isfinite(o).all()) for o in prog.outputs(p, found, y, clamp + others))
    return out


def _search(prog: Any, hit: Any, x: np.ndarray, seed_x: np.ndarray, y: np.ndarray, box: Tuple[float, float],
            trained: Dict[str, np.ndarray], ranges: Dict[str, Tuple[float, float]], node: int, pos: int, kind: str,
            limit: float, steps: int) -> Tuple[Optional[np.ndarray], Dict[str, np.ndarray], int]:
    """Special points, then projected sign-gradient steps on the input (the first half) and on
    the parameters too (the second half, RANUM's order), with bisection onto a sign change where
    the invalid set is {0}.  (found input or None, parameters, evaluations)."""
    p, evals = dict(trained), 0
    for name in SPECIALS:
        cand = {"zeros": np.zeros_like(x), "low": np.full_like(x, box[0]), "high": np.full_like(x, box[1]),
                "seed": seed_x}[name]
        cand = np.clip(cand, box[0], box[1]).astype(np.float32)
        evals += 1
        if hit(p, cand):
            return cand, p, evals
    width = box[1] - box[0]
    for t in range(steps):
        _, gp, gx = prog.step(p, x, y, node, pos, kind, limit)
        evals += 1
        if hit(p, x):
            return x, p, evals
        x2 = np.clip(x - width * STEP * DECAY ** t * np.sign(gx), box[0], box[1]).astype(np.float32)
        p2 = p
        if t >= steps // 2:
            p2 = {k: np.clip(a - (ranges[k][1] - ranges[k][0]) * STEP * DECAY ** t * np.sign(gp[k]),
                             *ranges[k]).astype(a.dtype) for k, a in p.items()}
        if kind == "zero":
            got = _bisect(prog, hit, p, x, p2, x2, y, node, pos)
            evals += BISECTIONS
            if got is not None:
                return got[1], got[0], evals
        x, p = x2, p2
    return None, p, evals


def _bisect(prog: Any, hit: Any, p: Dict[str, np.ndarray], x: np.ndarray, p2: Dict[str, np.ndarray], x2: np.ndarray,
            y: np.ndarray, node: int, pos: int) -> Optional[Tuple[Dict[str, np.ndarray], np.ndarray]]:
    """Where an operand element changes sign between two points, the point between them where
    it is 0 (or the nearest float to it), if that point fails."""
    before = np.asarray(prog.operand(p, x, y, node, pos)).ravel()
    after = np.asarray(prog.operand(p2, x2, y, node, pos)).ravel()
    flips = np.flatnonzero(np.sign(before) * np.sign(after) < 0)
    if not len(flips):
        return None
    j, s0 = int(flips[0]), np.sign(before[int(flips[0])])
    lo, hi = 0.0, 1.0

    def at(t: float) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        return ({k: (p[k] + t * (p2[k] - p[k])).astype(p[k].dtype) for k in p},
                (x + t * (x2 - x)).astype(np.float32))
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        pm, xm = at(mid)
        v = np.asarray(prog.operand(pm, xm, y, node, pos)).ravel()[j]
        if v == 0 or np.sign(v) != s0:
            hi = mid
        else:
            lo = mid
    for t in (hi, lo):
        pm, xm = at(t)
        if hit(pm, xm):
            return pm, xm
    return None
