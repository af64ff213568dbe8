"""Minimisation: the smallest trial that still gives the same fingerprint.

Shrink dimensions first (all axes of one size together, which keeps shape relations such as
[m,k] @ [k,n] intact, then each axis of each tensor), drop tensor-list elements, then simplify
values (0, 1, fewer significant digits).  Each step is kept only if the trial still yields the
same fingerprint; attempts are bounded.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..core.errors import BudgetExhausted
from ..core.model import ApiSpec, ArgSpec, Finding, TensorRecord, Trial, records
from ..core.tensors import FLOAT_DTYPES, to_array, to_record, trial_size
from ..specs import counterpart

Check = Callable[[Trial], bool]


def _map_records(trial: Trial, fn: Callable[[int, TensorRecord], TensorRecord]) -> Trial:
    """Apply fn to every tensor record (numbered in input order)."""
    counter = iter(range(10 ** 9))

    def convert(v):
        if isinstance(v, TensorRecord):
            return fn(next(counter), v)
        rs = records(v)
        return tuple(fn(next(counter), r) for r in rs) if rs else v
    return replace(trial, inputs=tuple(replace(i, value=convert(i.value)) for i in trial.inputs))


def _slice(rec: TensorRecord, axis: int, n: int) -> TensorRecord:
    return _take(rec, axis, range(n))


def _joint_shrinks(trial: Trial) -> Iterator[Trial]:
    sizes = sorted({d for i in trial.inputs for r in records(i.value) for d in r.shape if d > 1}, reverse=True)
    for size in sizes:
        for target in (1, size // 2):
            yield _map_records(trial, lambda _, r: _shrink_all(r, size, target))


def _shrink_all(rec: TensorRecord, size: int, target: int) -> TensorRecord:
    for axis, d in enumerate(rec.shape):
        if d == size:
            rec = _slice(rec, axis, target)
    return rec


def _single_shrinks(trial: Trial) -> Iterator[Trial]:
    """Each axis of each tensor: keep its first element, its first half, or one element."""
    recs = [r for i in trial.inputs for r in records(i.value)]
    for k, rec in enumerate(recs):
        for axis, d in enumerate(rec.shape):
            keeps = [range(1), range(d // 2)] + [range(i, i + 1) for i in range(1, min(d, 8))]
            for keep in keeps:
                if 0 < len(keep) < d:
                    yield _map_records(trial, lambda j, r: _take(r, axis, keep) if j == k else r)


def _take(rec: TensorRecord, axis: int, keep: range) -> TensorRecord:
    return to_record(np.take(to_array(rec), np.asarray(keep), axis=axis))


def _list_drops(trial: Trial) -> Iterator[Trial]:
    for n, inp in enumerate(trial.inputs):
        rs = records(inp.value)
        if not isinstance(inp.value, TensorRecord) and len(rs) > 1:
            inputs = list(trial.inputs)
            inputs[n] = replace(inp, value=rs[:-1])
            yield replace(trial, inputs=tuple(inputs))


def _simpler_values(x: float) -> List[float]:
    if not np.isfinite(x) or x in (0.0, 1.0):
        return []
    out = [0.0, 1.0, float(np.sign(x))]
    out += [float(f"{x:.{d}g}") for d in (1, 2, 3)]
    return [v for v in dict.fromkeys(out) if v != x]


def _value_edits(trial: Trial, args: Dict[str, ArgSpec]) -> Iterator[Trial]:
    """Simpler values inside the argument's domain (Note [valid witness]), one element at a
    time; never in a symmetrised (structured) input, where one edited element would leave the
    structure (an SPD matrix no longer positive definite)."""
    projected = dict(trial.projections)
    recs = [(r, i.name in projected, args.get(i.name)) for i in trial.inputs for r in records(i.value)]
    for k, (rec, structured, arg) in enumerate(recs):
        if rec.dtype not in FLOAT_DTYPES or structured:
            continue
        for e, x in enumerate(rec.values):
            for simpler in (v for v in _simpler_values(float(x)) if inside(arg, v)):
                def edit(j, r, k=k, e=e, simpler=simpler):
                    if j != k:
                        return r
                    vals = list(r.values)
                    vals[e] = float(np.array(simpler, dtype=r.dtype))
                    return replace(r, values=tuple(vals))
                yield _map_records(trial, edit)


def keeps_projections(trial: Trial) -> bool:
    """Whether every input symmetrised inside the call is still a (batch of) square matrices: a
    shrink of one axis would make the symmetrisation broadcast instead (structures.py)."""
    projected = dict(trial.projections)
    return all(len(r.shape) >= 2 and r.shape[-1] == r.shape[-2]
               for i in trial.inputs if i.name in projected for r in records(i.value))


# Note [valid witness]
# A shrink or a simpler value can leave the inputs the spec allows, and an API's fast path for the
# new input may skip its own validation: a gather whose data shrank below an index it still holds
# reads out of bounds, an igamma whose a became 0 leaves the domain a > 0.  Such a trial
# reproduces something, but not the bug the report is about, and no maintainer would file it.
# So a candidate never makes an axis shorter than an index the trial holds (an integer tensor's
# value, counted from either end), keeps every shape relation the spec declares that the trial
# held (same shape, broadcast partner, symbolic dimensions, one shape per tensor list), and a
# simpler value stays inside its argument's domain and bounds.  Where numpy has the same
# function and accepts the trial, it must accept the candidate too (counterpart.py): numpy
# validates what a library's fast path may skip (flipud of a 0-d array, an FFT of length 0).
_INSIDE = {"nonzero": lambda x: x != 0, "positive": lambda x: x > 0, "nonnegative": lambda x: x >= 0,
           "unit_interval": lambda x: 0 <= x <= 1, "open_unit_interval": lambda x: 0 < x < 1,
           "symmetric_unit": lambda x: -1 < x < 1, "above_minus_one": lambda x: x > -1,
           "integer_valued": lambda x: x == round(x)}


def inside(arg: Optional[ArgSpec], x: float) -> bool:
    """Whether x belongs to the argument's domain and bounds (Note [valid witness])."""
    if arg is None:
        return True
    return (_INSIDE.get(arg.domain, lambda _: True)(x) and (arg.low is None or x >= arg.low)
            and (arg.high is None or x <= arg.high))


def keeps_indices(before: Trial, after: Trial) -> bool:
    """Whether every axis the shrink shortened stays longer than each index the trial holds."""
    ints = [v for i in after.inputs for r in records(i.value) if r.dtype.startswith(("int", "uint")) for v in r.values]
    if not ints:
        return True
    top = max(max(int(v) for v in ints), -min(int(v) for v in ints) - 1)
    old = [r.shape for i in before.inputs for r in records(i.value) if r.dtype in FLOAT_DTYPES]
    new = [r.shape for i in after.inputs for r in records(i.value) if r.dtype in FLOAT_DTYPES]
    return all(not (b > top >= a) for s, t in zip(old, new) for b, a in zip(s, t))


def _args_of(spec: Optional[ApiSpec], trial: Trial) -> Dict[str, ArgSpec]:
    """The spec's arguments of the overload the trial was drawn from (by their names)."""
    if spec is None:
        return {}
    names = {i.name for i in trial.inputs}
    args = next((a for a in (spec.args,) + spec.overloads if {x.name for x in a} <= names), spec.args)
    return {a.name: a for a in args}


def shape_facts(args: Dict[str, ArgSpec], trial: Trial) -> FrozenSet[str]:
    """The shape relations the spec declares that hold in the trial: equal shapes, broadcasting
    onto a partner, one size per symbolic dimension (trailing axes, under a batch), one shape
    across a tensor list (Note [valid witness])."""
    shapes = {i.name: [r.shape for r in records(i.value)] for i in trial.inputs}
    one = {n: s[0] for n, s in shapes.items() if len(s) == 1}
    facts: Set[str] = {f"list {n}" for n, s in shapes.items() if len(s) > 1 and len(set(s)) == 1}
    sizes: Dict[str, Set[int]] = {}
    for name, a in args.items():
        if name not in one:
            continue
        other = one.get(a.same_shape_as or a.broadcast_with or "")
        if a.same_shape_as and other == one[name]:
            facts.add(f"same {name}")
        if a.broadcast_with and other is not None and _broadcasts(one[name], other):
            facts.add(f"broadcast {name}")
        if a.dims and len(one[name]) >= len(a.dims):
            for sym, d in zip(a.dims, one[name][len(one[name]) - len(a.dims):]):
                sizes.setdefault(sym, set()).add(d)
    facts |= {f"dim {sym}" for sym, ds in sizes.items() if len(ds) == 1 and (not sym.isdigit() or ds == {int(sym)})}
    return frozenset(facts)


def _broadcasts(shape: Tuple[int, ...], onto: Tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(shape, onto) == tuple(onto)
    except ValueError:
        return False


def minimise(trial: Trial, reproduces: Check, max_attempts: int = 150, spec: Optional[ApiSpec] = None) -> Trial:
    """Greedy first-improvement search; returns the smallest reproducing trial found whose inputs
    the spec still allows and numpy's counterpart still accepts (Note [valid witness])."""
    attempts = 0
    args = _args_of(spec, trial)
    facts = shape_facts(args, trial)
    judged = spec is not None and not counterpart.rejects(spec, trial)  # numpy accepts where we start
    for moves in (_joint_shrinks, _single_shrinks, _list_drops, _value_edits):
        improved = True
        while improved and attempts < max_attempts:
            improved = False
            for cand in moves(trial, args) if moves is _value_edits else moves(trial):
                if attempts >= max_attempts:
                    break
                if cand == trial or (moves is not _value_edits and trial_size(cand) >= trial_size(trial)) \
                        or not keeps_projections(cand) or not keeps_indices(trial, cand) \
                        or not facts <= shape_facts(args, cand) or (judged and counterpart.rejects(spec, cand)):
                    continue
                attempts += 1
                if reproduces(cand):
                    trial, improved = cand, True
                    break
    return trial


def representative(finding: Finding, spec: ApiSpec, findings_of: Callable[[Trial], Sequence[Finding]]) -> Tuple[Finding, Trial]:
    """The minimised trial that still gives the finding's fingerprint (`findings_of` judges a
    trial), and the finding with the evidence judged on it: the report's numbers are then the
    ones its repro script prints (the finding keeps its original trial, which the report counts
    as seen).  A budget that runs out leaves the smallest trial found so far."""
    fp, judged = finding.fingerprint, []

    def reproduces(t: Trial) -> bool:
        try:
            match = next((f for f in findings_of(t) if f.fingerprint == fp), None)
        except BudgetExhausted:
            return False
        if match is not None:
            judged.append((t, match))
        return match is not None
    small = minimise(finding.trial, reproduces, spec=spec)
    again = next((f for t, f in reversed(judged) if t == small), None)
    return (finding if again is None else replace(again, trial=finding.trial)), small
