"""Trials from specs: spec + campaign seed + index -> a concrete `Trial`, deterministically.

Shapes cover 0-d, size-1 and empty dimensions and broadcasting; values come from the argument's
domain with boundary values on purpose (`domains.py`); tensor size is capped.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..core.domains import sample
from ..core.model import ApiSpec, ArgKind, ArgSpec, InputValue, TensorRecord, Trial
from ..core.structures import PROJECTIONS, draw, fit_shape
from ..core.tensors import FLOAT_DTYPES, non_empty, to_array, to_record
from . import pool, regimes
from .batching import BATCH_SHARE, batched

Shape = Tuple[int, ...]


def trial_seed(campaign_seed: int, spec_id: str, index: int, candidate: int = 0) -> int:
    """Trial `index`'s seed; a guided campaign's other candidates for that trial (`candidate` >
    0, Note [validity candidates] in campaign/validity.py) have seeds of their own."""
    h = hashlib.sha256(f"{campaign_seed}/{spec_id}/{index}{f'/{candidate}' if candidate else ''}".encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


# Note [empty trials]: an empty tensor runs only an op's shape handling; no derivative is
# compared.  Drawn per dimension (as once: 4% per dim, 5% per symbol) about one multi-dimensional
# input in ten was empty and so were many trials' only differentiable inputs, so it is a
# trial-level choice instead: EMPTY_TRIALS of the trials (decided by the trial seed,
# `_TrialRng.empty`) draw zero sizes with probability EMPTY_DIM per dimension, symbol and
# shape argument; all others never do.
EMPTY_TRIALS = 0.03
EMPTY_DIM = 0.3


class _TrialRng(np.random.Generator):
    """A trial's random source (numpy's default generator for its seed), whether the trial
    may draw zero-sized dimensions (Note [empty trials]) and, for a pooled signature's edge,
    whether every size is its smallest or its largest (Note [signature pools])."""

    def __init__(self, seed: int, edge: str = ""):
        super().__init__(np.random.PCG64(seed))
        self.empty = edge == pool.EMPTY or (not edge and seed % 10_000 < EMPTY_TRIALS * 10_000)
        self.edge = edge


def _between(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A size in [lo, hi] (a rank, a list length): drawn, or what a pooled signature's edge asks
    for (the empty edge: rank 1 where allowed, so that its zero sizes make tensors empty)."""
    edge = getattr(rng, "edge", "")
    bound = {pool.SMALLEST: lo, pool.LARGEST: hi, pool.EMPTY: max(lo, min(1, hi))}.get(edge)
    return int(rng.integers(lo, hi + 1)) if bound is None else bound


def _dim(rng: np.random.Generator) -> int:
    """One dimension: never 0 unless the trial draws empty tensors (Note [empty trials]); a
    pooled signature's edge sets it (0, 1 or 4)."""
    edge = getattr(rng, "edge", "")
    if edge in (pool.SMALLEST, pool.LARGEST, pool.EMPTY):
        return {pool.SMALLEST: 1, pool.LARGEST: 4, pool.EMPTY: 0}[edge]
    r = rng.random()
    if getattr(rng, "empty", False):
        if r < EMPTY_DIM:
            return 0
        r = (r - EMPTY_DIM) / (1 - EMPTY_DIM)
    return 1 if r < 0.2 else int(rng.integers(2, 5))


def _cap(shape: List[int], cap: int) -> Shape:
    while math.prod(shape) > cap:
        i = int(np.argmax(shape))
        shape[i] = max(1, shape[i] // 2)
    return tuple(shape)


def _broadcast_partner(rng: np.random.Generator, other: Shape) -> Shape:
    shape = list(other)
    if shape and rng.random() < 0.3:
        shape = shape[int(rng.integers(0, len(shape) + 1)):]
    return tuple(1 if (d and rng.random() < 0.25) else d for d in shape)


class _Shapes:
    """Shapes chosen so far in one trial, and the symbolic dimensions bound."""

    def __init__(self, rng: np.random.Generator, cap: int, max_rank: int):
        self.rng, self.cap, self.max_rank = rng, cap, max_rank
        self.empty = bool(getattr(rng, "empty", False))  # Note [empty trials]
        self.of: Dict[str, Shape] = {}
        self.symbols: Dict[str, int] = {}

    def symbol(self, s: str) -> int:
        if s.isdigit():
            return int(s)
        if s not in self.symbols:
            zero = getattr(self.rng, "edge", "") == pool.EMPTY or (self.rng.random() < EMPTY_DIM and self.empty)
            self.symbols[s] = 0 if zero else _between(self.rng, 1, 4)  # Note [empty trials]
        return self.symbols[s]

    def choose(self, arg: ArgSpec, max_size: int) -> Shape:
        if arg.dims:
            shape = tuple(self.symbol(s) for s in arg.dims)
        elif arg.same_shape_as:
            shape = self.of[arg.same_shape_as]
        elif arg.broadcast_with:
            shape = _broadcast_partner(self.rng, self.of[arg.broadcast_with])
        else:
            lo, hi = arg.rank
            rank = _between(self.rng, lo, max(lo, min(hi, self.max_rank)))
            shape = _cap([_dim(self.rng) for _ in range(rank)], max_size)
        if arg.structure:
            shape = fit_shape(arg.structure, shape)
        self.of[arg.name] = shape
        return shape


def _tensor_dtype(rng: np.random.Generator, arg: ArgSpec, trial_dtype: str) -> str:
    """The trial's float dtype where the argument takes it; otherwise one of the argument's
    dtypes (a predicate declared as bool and uint8 gets each in turn)."""
    if not arg.dtypes or trial_dtype in arg.dtypes:
        return trial_dtype
    other = [d for d in arg.dtypes if d not in FLOAT_DTYPES]
    return other[int(rng.integers(0, len(other)))] if len(other) > 1 else arg.dtypes[0]


def _tensor(rng: np.random.Generator, arg: ArgSpec, shape: Shape, dtype: str):
    if dtype in FLOAT_DTYPES and arg.values and len(arg.values) == math.prod(shape) and rng.random() < 0.5:
        return _seeded(rng, arg, shape, dtype)
    if dtype in FLOAT_DTYPES and arg.structure:
        return draw(arg.structure, rng, shape, dtype)
    if dtype in FLOAT_DTYPES:
        return sample(arg.domain, rng, shape, dtype)
    if arg.values and len(arg.values) == math.prod(shape):
        return _moved(rng, np.array(arg.values).reshape(shape), dtype)
    if dtype == "bool" or (dtype.startswith("uint") and arg.low is None):
        return (rng.random(shape) < 0.5).astype(dtype)
    low, high = int(arg.low if arg.low is not None else -3), int(arg.high if arg.high is not None else 3)
    x = rng.integers(low, high + 1, size=shape).astype(dtype)
    return np.sort(x, axis=-1) if arg.structure == "sorted" else x  # sorted ids: segment_sum's segment_ids


def _moved(rng: np.random.Generator, base: np.ndarray, dtype: str) -> np.ndarray:
    """A non-float seed (indices into another input, a mask) moved where the sample shows it is
    valid: a mask anywhere; indices within the range the sample spans (every value between its
    smallest and largest is valid where they are), unsorted, at both ends, with duplicates."""
    r = rng.random()
    if r < 0.4 or base.size == 0:
        return base.astype(dtype)
    if dtype == "bool" or set(np.unique(base)) <= {0, 1} and base.size > 2:
        return (rng.random(base.shape) < 0.5).astype(dtype)
    lo, hi = int(base.min()), int(base.max())
    if r < 0.6:
        x = rng.permutation(base.ravel())
    elif r < 0.8:
        x = rng.choice([lo, hi], base.size)
    else:
        x = rng.integers(lo, hi + 1, base.size)
    return x.reshape(base.shape).astype(dtype)


def _seeded(rng: np.random.Generator, arg: ArgSpec, shape: Shape, dtype: str) -> np.ndarray:
    """A known-valid seed tensor (e.g. an OpInfo sample), as is or slightly perturbed, with the
    occasional boundary value: structure that random values rarely hit (positive-definite
    matrices, sorted boundaries) survives, and the fuzzer still explores around it."""
    base = np.array(arg.values, dtype=np.float64).reshape(shape)
    r = rng.random()
    if r < 0.3:
        x = base
    elif r < 0.8:
        x = base * (1 + 0.05 * rng.standard_normal(shape))
    elif arg.structure:  # boundary values would break it: a fresh structured draw instead
        return draw(arg.structure, rng, shape, dtype)
    else:
        x = sample(arg.domain, rng, shape, "float64")
        keep = rng.random(shape) < 0.7
        x = np.where(keep, base, x)
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def _scalar(rng: np.random.Generator, arg: ArgSpec, shapes: _Shapes):
    if arg.optional and rng.random() < 0.2:
        return arg.default
    if arg.kind is ArgKind.BOOL:
        return bool(rng.random() < 0.5)
    if arg.kind in (ArgKind.CHOICE, ArgKind.DTYPE):
        value = arg.choices[int(rng.integers(0, len(arg.choices)))] if arg.choices else arg.default
        if type(value) is float and value != 0 and rng.random() < 0.25:  # a sampled float parameter moves
            value = float(np.float32(value * 2 ** rng.uniform(-1, 1)))
        return tuple(value) if isinstance(value, list) else value
    if arg.kind is ArgKind.AXIS:
        rank = len(shapes.of.get(arg.of or "", ()))
        return None if rank == 0 else int(rng.integers(-rank, rank))
    if arg.kind is ArgKind.INT:
        return int(rng.integers(int(arg.low if arg.low is not None else 0), int(arg.high if arg.high is not None else 3) + 1))
    if arg.kind is ArgKind.FLOAT:
        lo, hi = (arg.low if arg.low is not None else -2.0), (arg.high if arg.high is not None else 2.0)
        return float(lo + (hi - lo) * rng.random())
    if arg.kind is ArgKind.SHAPE:
        return tuple(_dim(rng) for _ in range(_between(rng, arg.rank[0], arg.rank[1])))
    raise ValueError(f"cannot generate argument kind {arg.kind}")


def _input(rng: np.random.Generator, arg: ArgSpec, dtype: str, shapes: _Shapes, cap: int) -> InputValue:
    """One argument: its signature (shape, dtype, list length, scalar value) drawn from
    `shapes.rng`, its tensor values from `rng` (one generator unless pooled)."""
    diff, srng = arg.differentiable, shapes.rng
    if arg.kind is ArgKind.TENSOR:
        dt = _tensor_dtype(srng, arg, dtype)
        value = to_record(_tensor(rng, arg, shapes.choose(arg, cap), dt))
        return InputValue(arg.name, arg.kind, value, diff and dt in FLOAT_DTYPES, arg.keyword)
    if arg.kind is ArgKind.TENSOR_LIST:
        n = _between(srng, arg.length[0], arg.length[1])
        first = shapes.choose(arg, max(1, cap // max(n, 1)))
        dt = _tensor_dtype(srng, arg, dtype)
        size = math.prod(first)
        parts = [replace(arg, values=arg.values[k * size:(k + 1) * size]) for k in range(n)]
        value = tuple(to_record(_tensor(rng, part, first, dt)) for part in parts)
        return InputValue(arg.name, arg.kind, value, diff and dt in FLOAT_DTYPES, arg.keyword)
    return InputValue(arg.name, arg.kind, _scalar(srng, arg, shapes), False, arg.keyword)


def choose_dtype(rng: np.random.Generator, spec: ApiSpec) -> str:
    floats = [d for d in spec.dtypes if d in FLOAT_DTYPES] or ["float64"]
    if "float64" in floats and rng.random() < 0.55:
        return "float64"
    return floats[int(rng.integers(0, len(floats)))]


def generate(spec: ApiSpec, campaign_seed: int, index: int, max_size: int = 64, max_rank: int = 4,
             dtype: Optional[str] = None, regime_share: float = 0.0, pooled: bool = False,
             candidate: int = 0) -> Trial:
    """The trial (or, for `candidate` > 0, another candidate for its slot); `pooled` draws its
    signature (dtype, shapes, scalars, batch) from the API's signature pool and only its values
    from its own seed (Note [signature pools])."""
    seed = trial_seed(campaign_seed, spec.id, index, candidate)
    rng = _TrialRng(seed)  # numpy's default generator for `seed`, and the trial's empty choice
    sig = pool.signature(campaign_seed, spec.id, index, seed, candidate) if pooled else None
    srng = _TrialRng(sig.seed, sig.edge) if sig else rng  # the signature's draws
    dtype = dtype or choose_dtype(srng, spec)
    shapes = _Shapes(srng, min(max_size, spec.max_size or max_size), max_rank)
    choices = (spec.args,) + spec.overloads
    args = choices[int(srng.integers(0, len(choices)))] if spec.overloads else spec.args
    inputs = tuple(_input(rng, a, dtype, shapes, shapes.cap) for a in args)
    args, inputs = _triangles_follow_flag(args, inputs)
    side = np.random.default_rng([sig.seed if sig else seed, 1])  # its own stream: the other draws stay as they were
    values = np.random.default_rng([seed, 1]) if sig else side
    batch = spec.batched and side.random() < BATCH_SHARE
    if batch:
        inputs = batched(side, args, inputs, values)
    module = (spec.init, spec.init_kwargs) if spec.module else None
    projections = tuple((a.name, PROJECTIONS[a.structure]) for a, i in zip(args, inputs)
                        if a.structure in PROJECTIONS and i.differentiable)
    regime = regimes.choose(values, regime_share, spec.edges)
    if regime:
        inputs = tuple(_in_regime(values, regime, spec, a, i) for a, i in zip(args, inputs))
    return Trial(spec.library, spec.name, seed, dtype, inputs, spec.differentiable_outputs, module,
                 projections=projections, regime=regime, batched=batch)


TRIANGLES = {"lower_triangular": "upper_triangular", "upper_triangular": "lower_triangular"}


def _triangles_follow_flag(args: Tuple[ArgSpec, ...], inputs: Tuple[InputValue, ...]):
    """A triangular factor follows the call's own `upper=` / `lower=` flag (cholesky_solve,
    solve_triangular): drawn in the other triangle, it is transposed and its structure swapped."""
    flags = {i.name: i.value for i in inputs if i.name in ("upper", "lower") and isinstance(i.value, bool)}
    if not flags:
        return args, inputs
    want = "upper_triangular" if flags.get("upper", not flags.get("lower", True)) else "lower_triangular"
    out_args, out_inputs = [], []
    for a, i in zip(args, inputs):
        if a.structure in TRIANGLES and a.structure != want and isinstance(i.value, TensorRecord):
            a = replace(a, structure=want)
            i = replace(i, value=to_record(np.swapaxes(to_array(i.value), -1, -2)))
        out_args.append(a)
        out_inputs.append(i)
    return tuple(out_args), tuple(out_inputs)


def _in_regime(rng: np.random.Generator, regime: str, spec: ApiSpec, arg: ArgSpec, value: InputValue) -> InputValue:
    """A differentiable float tensor's values redrawn in `regime` (structured ones keep theirs)."""
    if not value.differentiable or arg.structure or not isinstance(value.value, TensorRecord):
        return value
    rec = value.value
    x = regimes.draw(regime, rng, rec.shape, rec.dtype, spec.edges, to_array(rec))
    return replace(value, value=to_record(x))


def first_nonempty(spec: ApiSpec, dtype: str, seed: int = 0, tries: int = 10) -> Trial:
    """The first of `tries` trials of `spec` (campaign seed `seed`) with a non-empty
    differentiable input, or the last one tried: what a probe varies."""
    for index in range(tries):
        trial = generate(spec, seed, index, dtype=dtype)
        if non_empty(trial):
            break
    return trial
