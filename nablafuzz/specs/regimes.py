"""Value regimes: the inputs where today's AD bugs live and N(0, 1) values never go.

A share of trials (`Config.regime_share`) draws its float tensors from one regime instead of
the argument's domain:

- `edge`: at, just inside and just past an API's edges, the inputs where its output turns
  infinite, underflows to 0 or becomes NaN (learnt by probing, `api_specs/regimes.yaml`);
- `special`: exact 0, +-1, integers and half-integers (poles and branch points of the gamma
  family, removable singularities such as sinc(0), x*log(x) at 0);
- `tiny`: magnitudes from 2^10 times the smallest normal number of the dtype (below it the
  `subnormal` filter judges nothing) up to 1e-8;
- `large`: magnitudes up to the API's overflow edge (or the dtype's square root of max);
- `ties`: every element equal (selection ops, sorting, max/min);
- `zeros`: exact zero factors among ordinary values.

Every observation records the regime its trial drew, so the summary shows findings per regime.
Edges are found by `nablafuzz specs regimes`: each elementwise API with one float tensor
input is evaluated on a signed logarithmic grid per dtype, and every change of the output's
class (finite, zero, infinite, NaN) or of its branch (flat, rising, falling) between
neighbours is refined by bisection.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from ..core.errors import SpecError
from ..core.model import ApiSpec, ArgKind
from ..core.tensors import FLOAT_DTYPES, near_subnormal, to_record
from .sidefiles import MISSING, read_section

REGIMES = ("edge", "special", "tiny", "large", "ties", "zeros")
REGIMES_FILE = "regimes.yaml"
Edges = Tuple[Tuple[str, Tuple[float, ...]], ...]  # dtype -> signed edge points


# ---- drawing -----------------------------------------------------------------------------------

def choose(rng: np.random.Generator, share: float, edges: Edges) -> str:
    """The regime of one trial: "" (the domain's values) or one of REGIMES (`edge` only for an
    API with known edges)."""
    if share <= 0 or rng.random() >= share:
        return ""
    options = list(REGIMES) + ["edge"] if edges else [r for r in REGIMES if r != "edge"]  # edges: twice the share
    return options[int(rng.integers(0, len(options)))]


def draw(regime: str, rng: np.random.Generator, shape: Tuple[int, ...], dtype: str, edges: Edges,
         typical: np.ndarray) -> np.ndarray:
    """Values of `shape` in `regime`; `typical` (the domain's draw) is the base some regimes edit."""
    n = math.prod(shape)
    dt = np.dtype(dtype)
    info = np.finfo(dt)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    points = dict(edges).get(dtype, ())
    if regime == "edge" and points:
        # half the elements near an edge: just inside it (a relative 2^-4 .. 2^-28 away, on the
        # side of 0; probing places an edge within about 1e-9 of the change), or in a quarter
        # of trials at or past it
        at = np.array(points)[rng.integers(0, len(points), n)]
        side = -1.0 if rng.random() < 0.75 else float(rng.choice([0.0, 1.0]))
        near = at * (1 + side * 2.0 ** -rng.integers(4, 29, n).astype(np.float64))
        x = np.where(rng.random(n) < 0.5, near, typical.ravel().astype(np.float64))
    elif regime == "special":
        x = np.array([0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.5, 10.0])[rng.integers(0, 10, n)]
    elif regime == "tiny":
        lo = math.log10(near_subnormal(dtype))  # never judged below
        x = sign * 10.0 ** rng.uniform(lo, max(-8.0, lo + 1.0), n)
    elif regime == "large":
        top = max((abs(p) for p in points), default=float(info.max) ** 0.5)
        x = sign * 10.0 ** rng.uniform(1, max(1.5, math.log10(top)), n)
    elif regime == "ties":
        x = np.full(n, typical.ravel()[0] if typical.size else 1.0)
    elif regime == "zeros":
        x = np.where(rng.random(n) < 0.4, 0.0, typical.ravel().astype(np.float64))
    else:
        return typical
    with np.errstate(over="ignore", under="ignore"):
        return x.astype(dt).reshape(shape)


# ---- the edges file ----------------------------------------------------------------------------

def load_edges(path: Path) -> Dict[str, Edges]:
    """`library:api` -> edges per dtype, from `api_specs/regimes.yaml` (missing file: none)."""
    rows = read_section(path, "edges", "regenerate it with `nablafuzz specs regimes`")
    if rows is MISSING:
        return {}
    if not isinstance(rows, dict):
        raise SpecError(str(path), "", "edges", "expected a mapping `library:api` -> {dtype: [points]}",
                        "regenerate it with `nablafuzz specs regimes`")
    out: Dict[str, Edges] = {}
    for api, per_dtype in rows.items():
        ok = isinstance(api, str) and isinstance(per_dtype, dict) and all(
            d in FLOAT_DTYPES and isinstance(v, list) and all(_is_number(p) for p in v) for d, v in per_dtype.items())
        if not ok:
            raise SpecError(str(path), str(api)[:80], "edges", "expected {dtype: [finite numbers]}",
                            "regenerate it with `nablafuzz specs regimes`")
        out[api] = tuple(sorted((d, tuple(float(p) for p in v)) for d, v in per_dtype.items()))
    return out


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def with_edges(specs: Sequence[ApiSpec], edges: Dict[str, Edges]) -> List[ApiSpec]:
    return [replace(s, edges=edges[s.id]) if s.id in edges else s for s in specs]


def write_edges(path: Path, edges: Dict[str, Edges], origin: str) -> None:
    body = {"edges": {api: {d: [float(p) for p in pts] for d, pts in e} for api, e in sorted(edges.items())}}
    text = (f"# Generated by `{origin}`: where each API's output turns infinite, zero or NaN, per dtype.\n"
            + yaml.safe_dump(body, sort_keys=False, width=100))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---- probing -----------------------------------------------------------------------------------

def _classes(y: np.ndarray, dtype: str) -> np.ndarray:
    """0 finite and normal, 1 underflowed (0 or below the normal range), 2 infinite, 3 NaN."""
    y = np.asarray(y, dtype=np.float64)
    tiny = float(np.finfo(dtype).tiny)
    return np.where(np.isnan(y), 3, np.where(np.isinf(y), 2, np.where(np.abs(y) < tiny, 1, 0)))


def grid(dtype: str) -> np.ndarray:
    """A signed logarithmic grid over the dtype's normal range, with 0."""
    info = np.finfo(dtype)
    lo, hi = math.log10(float(info.tiny)) + 1, math.log10(float(info.max)) - 0.01  # inputs normal, outputs can be
    mags = 10.0 ** np.linspace(lo, hi, 96)  # every point finite in `dtype`
    return np.concatenate([-mags[::-1], [0.0], mags])


STEP = 2.0 ** -20  # the step (relative, and at least absolute) a branch change is seen over
MAX_BRANCH_CHANGES = 8  # per sign: more is an oscillating function, not branches


def _branch_classes(evaluate: Callable[[np.ndarray], Optional[np.ndarray]], x: np.ndarray,
                    y: np.ndarray, dtype: str) -> Optional[np.ndarray]:
    """0 flat (the output does not move over a step away from 0), 1 moving away from 0 with
    x... rising on the positive side, 2 the other way, 3 NaN; None where the call fails."""
    with np.errstate(over="ignore"):
        moved = np.asarray(x + np.sign(x + (x == 0)) * np.maximum(np.abs(x) * STEP, STEP), dtype=dtype)
        stepped = evaluate(moved)
    if stepped is None or np.shape(stepped) != x.shape:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        d = (np.asarray(stepped, dtype=np.float64) - np.asarray(y, dtype=np.float64)) * np.sign(x + (x == 0))
    return np.where(np.isnan(d), 3, np.where(d == 0, 0, np.where(d > 0, 1, 2)))


def _refine(classify: Callable[[np.ndarray], Optional[np.ndarray]], x: np.ndarray, c: np.ndarray,
            pairs: Sequence[int], dtype: str, steps: int) -> Tuple[float, ...]:
    """The change of class inside each grid pair (x[i], x[i+1]), by bisection from x[i]."""
    if not pairs:
        return ()
    lo, hi = x[list(pairs)], x[[i + 1 for i in pairs]]
    c_lo = c[list(pairs)]
    for _ in range(steps):
        mid = np.sign(lo) * np.sqrt(np.abs(lo)) * np.sqrt(np.abs(hi))  # the geometric mean, without overflow
        got = classify(mid)
        if got is None:
            break
        same = got == c_lo
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    with np.errstate(over="ignore"):
        return tuple(float(np.asarray(v, dtype=dtype)) for v in lo)


def find_edges(evaluate: Callable[[np.ndarray], Optional[np.ndarray]], dtype: str, steps: int = 36) -> Tuple[float, ...]:
    """Points where the output's class changes between neighbours of the grid, and where its
    branch does among finite outputs (it turns flat, or from rising to falling: hardtanh's
    corners, where tanh saturates; only where there are few, not an oscillation), refined by
    bisection (in log scale away from 0); `evaluate` maps a 1-D array to the op's output."""
    def out_class(x: np.ndarray) -> Optional[np.ndarray]:
        y = evaluate(x)
        return None if y is None or np.shape(y) != x.shape else _classes(y, dtype)

    def branch_class(x: np.ndarray) -> Optional[np.ndarray]:
        y = evaluate(x)
        return None if y is None or np.shape(y) != x.shape else _branch_classes(evaluate, x, y, dtype)

    x = grid(dtype)
    y = evaluate(x)
    if y is None or np.shape(y) != x.shape:
        return ()
    c = _classes(y, dtype)
    same_sign = [i for i in range(len(x) - 1) if np.sign(x[i]) == np.sign(x[i + 1])]
    points = set(_refine(out_class, x, c, [i for i in same_sign if c[i] != c[i + 1]], dtype, steps))
    b = _branch_classes(evaluate, x, y, dtype)
    if b is not None:
        turns = [i for i in same_sign if c[i] == c[i + 1] == 0 and b[i] != b[i + 1]]
        if all(sum(np.sign(x[i]) == s for i in turns) <= MAX_BRANCH_CHANGES for s in (-1.0, 1.0)):
            points |= set(_refine(branch_class, x, b, turns, dtype, steps))
    return tuple(sorted(points - {math.inf, -math.inf}))


def probe_target(spec: ApiSpec) -> Optional[int]:
    """The index of the one float tensor argument of an API that has no other tensor
    argument (what an elementwise probe can vary), or None."""
    tensors = [i for i, a in enumerate(spec.args) if a.kind in (ArgKind.TENSOR, ArgKind.TENSOR_LIST)]
    if len(tensors) != 1 or spec.args[tensors[0]].kind is not ArgKind.TENSOR or spec.args[tensors[0]].structure:
        return None
    return tensors[0]


def evaluator(spec: ApiSpec, target: int, run: Callable[..., object], trial) -> Callable[[np.ndarray], Optional[np.ndarray]]:
    """`x -> the API's first output at x` (a 1-D float array in the target argument), through
    `run(trial, spec, scenarios)` (a Runner's run); None where the call fails."""
    def evaluate(x: np.ndarray) -> Optional[np.ndarray]:
        name = spec.args[target].name
        inputs = tuple(replace(i, value=to_record(np.asarray(x, dtype=trial.dtype))) if i.name == name else i
                       for i in trial.inputs)
        ex = run(replace(trial, inputs=inputs), spec, ("direct",))
        direct = ex.get("direct")
        if direct is None or direct.error is not None or not direct.outputs:
            return None
        return np.asarray(direct.outputs[0], dtype=np.float64)
    return evaluate


def probe_edges(specs: Sequence[ApiSpec], run_for: Callable[[str], Callable[..., object]], make_trial,
                verbose: Callable[[str], None] = lambda _: None) -> Dict[str, Edges]:
    """Edges of every API an elementwise probe can vary, per dtype it takes; `run_for(library)`
    gives a Runner's run, `make_trial(spec, dtype)` a trial to vary."""
    out: Dict[str, Edges] = {}
    for spec in specs:
        target = probe_target(spec)
        if target is None:
            continue
        found = []
        for dtype in (d for d in spec.dtypes if d in ("float64", "float32")):
            points = find_edges(evaluator(spec, target, run_for(spec.library), make_trial(spec, dtype)), dtype)
            if points:
                found.append((dtype, points))
        if found:
            out[spec.id] = tuple(found)
        verbose(f"{spec.id}: {dict(found) if found else 'no edge'}")
    return out
