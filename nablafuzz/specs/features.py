"""Features of a trial for the validity classifiers (Note [validity features]).

Note [validity features]
What makes a call raise is mostly in its inputs' shapes and Python values: a rank the op does
not take, an axis beyond the rank, shapes that do not broadcast, inner dimensions that do not
match, a list of the wrong length.  A trial's features are named numbers (or strings, one-hot
encoded by the classifier's vectoriser), computed from the trial alone, with no library:

  * the trial: its dtype, regime, whether it is batched;
  * per argument `a` (by name; `a.present` is 0 for an argument the trial's overload lacks):
    - a tensor: `a.rank`, `a.size`, its dimensions from the left `a.d0`.. and from the right
      `a.r1`.. (padded with -1 to MAX_RANK), the extremes of its finite values `a.min` /
      `a.max`, how many are not finite `a.nonfinite`, its dtype `a.dtype`; an integer tensor
      also whether it is sorted `a.sorted` (segment ids) and, unless it has the first tensor's
      shape, its largest value less the first tensor's first and last dimensions
      `a.max_minus_d0` / `a.max_minus_r1` (indices in range), and its largest value less each
      later integer tensor's `a.max_minus_b.max` (segment ids against a segment count);
    - a list of tensors: `a.len`, and its first tensor's features as above;
    - a list of integers: `a.len` and its first MAX_RANK entries `a.v0`..;
    - an integer or float: `a.value`, `a.minus_rank` (the value less the first tensor's rank:
      an axis out of range), `a.minus_d0` / `a.minus_r1` (less its first and last dimensions: a
      count or a size against the data); numbers are clipped to +-BIG, NaN is -BIG;
    - a string, boolean or None: the category `a.is`;
  * pairwise over the first MAX_PAIRED tensors `t0`, `t1`, ..: `t0~t1.same` (same shape),
    `.broadcast` (broadcastable), `.rank_diff`, `.trailing` (equal last dimensions), `.inner`
    (the first's last dimension equals the second's next-to-last, as matmul needs).

Names are stable across trials of one API, so the rows of one API's trials line up.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple, Union

from ..core.model import InputValue, TensorRecord, Trial

MAX_RANK = 4
MAX_PAIRED = 3
BIG = 1e30  # the largest magnitude of a feature (NaN: -BIG)
Features = Dict[str, Union[float, str]]


def _tensor(out: Features, name: str, t: TensorRecord) -> None:
    shape = tuple(t.shape)
    out[f"{name}.rank"] = len(shape)
    out[f"{name}.size"] = t.size
    out[f"{name}.dtype"] = t.dtype
    for i in range(MAX_RANK):
        out[f"{name}.d{i}"] = shape[i] if i < len(shape) else -1
        out[f"{name}.r{i + 1}"] = shape[-1 - i] if i < len(shape) else -1
    numbers = [float(v) for v in t.values if isinstance(v, (int, float))]
    finite = [v for v in numbers if math.isfinite(v)]
    out[f"{name}.min"] = _number(min(finite)) if finite else 0.0
    out[f"{name}.max"] = _number(max(finite)) if finite else 0.0
    out[f"{name}.nonfinite"] = len(numbers) - len(finite)
    if t.dtype.startswith(("int", "uint")):  # ids and indices: sorted (segment ids), in range
        out[f"{name}.sorted"] = float(all(a <= b for a, b in zip(numbers, numbers[1:])))


def _number(x: float) -> float:
    """A number as a feature, within +-BIG: the classifiers take no NaN and work in float32."""
    x = float(x)
    return -BIG if math.isnan(x) else max(-BIG, min(BIG, x))


def _broadcastable(a: Tuple[int, ...], b: Tuple[int, ...]) -> bool:
    return all(x == y or x == 1 or y == 1 for x, y in zip(reversed(a), reversed(b)))


def _pairs(out: Features, shapes: List[Tuple[int, ...]]) -> None:
    for i in range(len(shapes)):
        for j in range(i + 1, len(shapes)):
            a, b, p = shapes[i], shapes[j], f"t{i}~t{j}"
            out[f"{p}.same"] = float(a == b)
            out[f"{p}.broadcast"] = float(_broadcastable(a, b))
            out[f"{p}.rank_diff"] = len(a) - len(b)
            out[f"{p}.trailing"] = float(bool(a) and bool(b) and a[-1] == b[-1])
            out[f"{p}.inner"] = float(bool(a) and len(b) >= 2 and a[-1] == b[-2])


def features(trial: Trial, names: Tuple[str, ...] = ()) -> Features:
    """The trial's features; `names` (every argument name the API's overloads use) adds
    `a.present = 0` for those the trial lacks."""
    out: Features = {"dtype": trial.dtype, "regime": trial.regime or "domain", "batched": float(trial.batched)}
    tensors: List[Tuple[int, ...]] = []
    for name in names:
        out[f"{name}.present"] = 0.0
    for inp in trial.inputs:
        _input(out, inp, tensors)
    first = tensors[0] if tensors else ()
    for inp in trial.inputs:
        v = inp.value
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{inp.name}.minus_rank"] = _number(v) - len(first)
            _against_first(out, f"{inp.name}.minus", _number(v), first)
        elif isinstance(v, TensorRecord) and v.dtype.startswith(("int", "uint")) and tuple(v.shape) != first:
            _against_first(out, f"{inp.name}.max_minus", out[f"{inp.name}.max"], first)
    ints = [inp for inp in trial.inputs if isinstance(inp.value, TensorRecord) and inp.value.dtype.startswith(("int", "uint"))]
    for i, a in enumerate(ints):
        for b in ints[i + 1:]:
            out[f"{a.name}.max_minus_{b.name}.max"] = out[f"{a.name}.max"] - out[f"{b.name}.max"]
    _pairs(out, tensors[:MAX_PAIRED])
    return out


def _against_first(out: Features, prefix: str, x: float, first: Tuple[int, ...]) -> None:
    """x less the first tensor's first and last dimensions: an index, a count or a size
    against the data it applies to."""
    if first:
        out[f"{prefix}_d0"] = x - first[0]
        out[f"{prefix}_r1"] = x - first[-1]


def _input(out: Features, inp: InputValue, tensors: List[Tuple[int, ...]]) -> None:
    name, v = inp.name, inp.value
    out[f"{name}.present"] = 1.0
    if isinstance(v, TensorRecord):
        _tensor(out, name, v)
        tensors.append(tuple(v.shape))
    elif isinstance(v, tuple) and v and all(isinstance(x, TensorRecord) for x in v):
        out[f"{name}.len"] = len(v)
        _tensor(out, name, v[0])
        tensors.append(tuple(v[0].shape))
    elif isinstance(v, tuple):
        out[f"{name}.len"] = len(v)
        for i in range(MAX_RANK):
            x = v[i] if i < len(v) else None
            out[f"{name}.v{i}"] = _number(x) if isinstance(x, (int, float)) else -1.0
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        out[f"{name}.value"] = _number(v)
    else:  # a string, a boolean, None
        out[f"{name}.is"] = repr(v)
