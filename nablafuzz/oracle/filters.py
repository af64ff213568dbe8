"""Instability filters: remove the disagreements that floating point or semantics explain.

Each filter looks at one candidate and returns a `FilterOutcome` with a human-readable reason,
or None when it does not apply.  They run cheapest first; the first that dismisses ends the
chain.  Nothing is dropped silently: every dismissal is counted per filter in the campaign
statistics, and a wrong derivative at a smooth point is never dismissed by the kink filter.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..core.errors import BudgetExhausted
from ..core.model import (STORED_HANG, ApiSpec, Aspect, Candidate, Execution, FilterOutcome, KnownIssue, Trial,
                          Verdict, records)
from ..core.quantities import COMPILED, KERNELS, direction, is_reference, order
from ..core.tensors import FLOAT_DTYPES, near_subnormal, to_array, with_dtype
from .compare import compare, output_scale

NUMERIC = (Verdict.DERIVATIVE_MISMATCH, Verdict.NONFINITE_DERIVATIVE, Verdict.VALUE_MISMATCH)


# the trial run by the other libraries of the spec's equivalence class, for the named scenarios:
# library -> its execution (Note [float32 formula])
Peers = Callable[[Trial, Tuple[str, ...]], Dict[str, Execution]]


class Rerun(Protocol):
    """What the filters ask of the runner of the trial's library (runtime/runner.py): the same
    trial again, the scalar function at probe points, and the time the budget leaves."""

    timeout_s: float

    def run(self, trial: Trial, spec: ApiSpec, scenarios: Sequence[str],
            timeout_s: Optional[float] = None) -> Execution: ...

    def probe(self, trial: Trial, spec: ApiSpec, function: str,
              points: Sequence[Tuple[int, int, float]]) -> Optional[List[float]]: ...

    def left(self) -> float: ...


@dataclass(frozen=True)
class FilterContext:
    execution: Execution
    spec: ApiSpec
    runner: Rerun
    probes: Dict[Tuple[int, str], Optional["CoordinateProbe"]] = field(default_factory=dict, compare=False)
    peers: Optional[Peers] = field(default=None, compare=False)


FilterFn = Callable[[FilterContext, Candidate], Optional[FilterOutcome]]
FILTERS: List[Tuple[str, FilterFn]] = []


def instability_filter(name: str) -> Callable[[FilterFn], FilterFn]:
    def register(fn: FilterFn) -> FilterFn:
        FILTERS.append((name, fn))
        return fn
    return register


def _outcome(name: str, dismissed: bool, reason: str) -> FilterOutcome:
    return FilterOutcome(name, dismissed, reason)


# Note [stored hang]
# ~~~~~~~~~~~~~~~~~~
# A hang costs a worker its timeout and then the slow filter's re-run with SLOW_FACTOR times it
# (150 s of one TensorFlow worker's 20-minute night for one digamma trial).  Where the store
# already holds a new or open hang report of the API in the same scenarios and order (a known
# issue `when: hang`, reports/vetting.store_issues), that re-run was made when the report was
# established, so a timeout it matches is taken as that hang again, not re-run: the store counts
# it as one more occurrence, and keeps the representative that was re-run (store._merge).  A
# timeout in other scenarios, or of a fixed or flaky report, is re-run as before, so each new
# hang report still rests on its own re-run.


SLOW_FACTOR = 4


@instability_filter("slow")
def slow(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    """A timeout is a hang only if the trial also times out with SLOW_FACTOR times the time: a
    first compile or a busy machine is slow, not a bug anyone would file.  The re-run gets what
    is left of the budget if that is less; with no more than the first timeout left it cannot
    tell, and the trial is abandoned (BudgetExhausted)."""
    if cand.verdict is not Verdict.TIMEOUT:
        return None
    stored = next((k for k in ctx.spec.known_issues if _matches(k, cand, "hang")), None)
    if stored is not None:  # Note [stored hang]
        return _outcome(STORED_HANG, False, f"not re-run: it {stored.reason}")
    limit = min(ctx.runner.timeout_s * SLOW_FACTOR, ctx.runner.left())
    if limit <= ctx.runner.timeout_s:
        raise BudgetExhausted()
    try:
        again = ctx.runner.run(ctx.execution.trial, ctx.spec, [r.scenario for r in ctx.execution.results], limit)
    except BudgetExhausted:  # it used all the budget left, more than its timeout: still hung
        return _outcome("slow", False, f"still timed out when given the {limit:.0f} s of budget left")
    if again.death is None:
        took = sum(r.seconds for r in again.results)
        return _outcome("slow", True, f"completes in {took:.1f} s when given {limit:.0f} s: slow, not hung")
    return _outcome("slow", False, f"still {again.death.kind} when given {limit:.0f} s")


def _matches(k: KnownIssue, cand: Candidate, when: str) -> bool:
    return k.when == when and (not k.verdict or k.verdict == cand.verdict.value) and (
        not k.scenarios or bool(set(k.scenarios) & set(cand.scenarios))) and (k.order is None or k.order == cand.order)


@instability_filter("known_issue")
def known_issue(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    """Known upstream issues, and library conventions that hold at any input (their own name,
    `convention`, in statistics and triage: a convention is a documented choice, not a bug)."""
    holds = {"": lambda: True, "duplicate_indices": lambda: has_duplicate_indices(ctx.execution.trial),
             "rank_deficient": lambda: has_rank_deficient_matrix(ctx.execution.trial)}
    why = {"duplicate_indices": "; the trial repeats an index", "rank_deficient": "; a matrix input is rank-deficient"}
    for k in ctx.spec.known_issues:
        if k.when in holds and _matches(k, cand, k.when) and holds[k.when]():
            kind = "convention" if k.convention else "known_issue"
            return _outcome(kind, True, f"{kind.replace('_', ' ')}: {k.reason} ({k.url}){why.get(k.when, '')}")
    return None


def has_rank_deficient_matrix(trial) -> bool:
    """Whether a differentiable float input of rank >= 2 holds a matrix (its last two axes) that
    is numerically rank-deficient: smallest singular value <= max(m, n) eps times the largest."""
    for i in trial.inputs:
        for r in records(i.value):
            if not i.differentiable or r.dtype not in FLOAT_DTYPES or len(r.shape) < 2 or not np.prod(r.shape):
                continue
            a = to_array(r).astype(np.float64)
            if not np.isfinite(a).all():
                continue
            s = np.linalg.svd(a.reshape((-1,) + a.shape[-2:]), compute_uv=False)
            if np.any(s[..., -1] <= max(a.shape[-2:]) * float(np.finfo(r.dtype).eps) * s[..., 0]):
                return True
    return False


def has_duplicate_indices(trial) -> bool:
    """Whether an integer tensor input repeats a value (an index written twice)."""
    return any(r.dtype.startswith(("int", "uint")) and len(set(r.values)) < len(r.values)
               for i in trial.inputs for r in records(i.value))


def _kink_convention(ctx: FilterContext, cand: Candidate, outcome: FilterOutcome) -> FilterOutcome:
    """A kink the library resolves by a documented convention (e.g. ties split 0.5/0.5) is
    classified as that convention rather than as a generic kink."""
    k = next((k for k in ctx.spec.known_issues if k.convention and _matches(k, cand, "kink")), None)
    return outcome if k is None else _outcome("convention", True, f"convention: {k.reason} ({k.url}); {outcome.reason}")


# Note [non-finite derivatives]
# A NaN or infinite derivative where the function's own output is finite and converged finite
# differences are finite is a bug to report (0 * inf inside a derivative rule, an empty
# segment's 0/0), not float64 overflow.  Converged differences are what show the function is
# smooth there: with only another AD mode finite (no reference converged: atan2 at (0, 0),
# copysign's kink at 0, 0 ** x at base 0, steps absorbed by huge or tiny inputs) the point may be
# singular, and a NaN there has no agreed value.  `project` tells the two
# apart: its scale is NaN when a derivative element is non-finite and +inf only when finite
# terms overflow their sum.  Dismissed: a non-finite function output (no agreed derivative),
# an overflowing sum, derivatives near the dtype's overflow or underflow, and every compared
# mode non-finite alike (the derivative itself is infinite, sqrt at 0).  Conventions such as
# the where-NaN rule (the untaken branch's NaN gradient times a zero mask) stay convention rows.
@instability_filter("nonfinite")
def nonfinite(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    if cand.verdict not in NUMERIC + (Verdict.STATUS_MISMATCH,):
        return None
    direct = ctx.execution.get("direct")
    outs = [np.asarray(o, dtype=np.float64) for o in (direct.outputs if direct else ())]
    if any(not np.isfinite(o).all() for o in outs):
        return _outcome("nonfinite", True, "the function's own output is non-finite at this input, "
                        "so its derivative there has no agreed value")
    if cand.verdict is Verdict.STATUS_MISMATCH:
        return None  # a derivative mode failing where the output is finite is judged as it is
    for d in cand.disagreements:
        rs = [ctx.execution.get(s) for s in d.scenarios]
        if any(r is not None and r.scale is not None and math.isinf(r.scale) for r in rs):
            return _outcome("nonfinite", True, f"the projection of {d.scenarios[0]} overflows float64 "
                            "(terms are finite, their sum is not)")
        broken = [r.scenario for r in rs if r is not None and r.scale is not None and math.isnan(r.scale)]
        if broken and len(broken) == len(rs):
            return _outcome("nonfinite", True, f"every mode compared ({', '.join(broken)}) has a non-finite "
                            "derivative here: the derivative itself is infinite or undefined")
        # the largest finite size in play: the values and the references' sums of |terms| (a float32
        # projection of 1/x at a subnormal x overflows to NaN while the float64 reference is 1e44)
        sizes = [d.actual, d.expected] + [r.scale for r in rs if r is not None and is_reference(r.scenario)]
        big = max((abs(v) for v in sizes if v is not None and math.isfinite(v)), default=0.0)
        if big > float(np.finfo(d.dtype).max) ** 0.8:
            return _outcome("nonfinite", True, f"derivatives near {d.dtype} overflow ({d.actual:.3g} vs "
                            f"{d.expected:.3g}): their rounding is not meaningful")
        if 0 < big < float(np.finfo(d.dtype).tiny) ** 0.5:
            return _outcome("nonfinite", True, f"derivatives near {d.dtype} underflow ({d.actual:.3g} vs "
                            f"{d.expected:.3g}): intermediate products underflow differently in each mode")
    if cand.verdict is Verdict.NONFINITE_DERIVATIVE:
        unproven = [d.scenarios[1] for d in cand.disagreements if not is_reference(d.scenarios[1])]
        if unproven:
            return _outcome("nonfinite", True, f"only another AD mode ({unproven[0]}) is finite; no finite-"
                            "difference reference converged, so the function may not be differentiable here")
        return _outcome("nonfinite", False, "the function's output and the converged finite differences are "
                        "finite, the derivative is not: a non-finite derivative where the function is smooth")
    return _outcome("nonfinite", False, "function output and projection terms are finite")


# Note [invalid input]
# A derivative mode that raises where the call returned is judged as it is (Note [non-finite
# derivatives]), except on integer indices into a tensor with an axis of length 0: every index
# is out of range there, and index_add of index 0 into an empty tensor returns from the
# forward's empty fast path before the bounds check its backward makes.  The call's silence,
# not the derivative's error, is the oddity, and no maintainer would file it as an AD bug.  Only an
# error about an index is dismissed there: another error of the mode is judged as it is.

# what a mode says when it checks an index the forward did not: "indexing axis dim should be
# positive", "index 0 is out of bounds", "out of range" (not "'IndexedSlices' object has no
# attribute", TensorFlow's forward-mode gather failing at any input)
INDEX_ERROR = re.compile(r"\bindex(ing|es)?\b|out of (range|bounds)", re.IGNORECASE)


@instability_filter("invalid_input")
def invalid_input(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    if cand.verdict is not Verdict.STATUS_MISMATCH:
        return None
    recs = [(i.name, r) for i in ctx.execution.trial.inputs for r in records(i.value)]
    empty = next((n for n, r in recs if r.dtype in FLOAT_DTYPES and 0 in r.shape), None)
    index = next((n for n, r in recs if r.dtype.startswith(("int", "uint")) and r.values), None)
    if empty is not None and index is not None and INDEX_ERROR.search(cand.message):
        return _outcome("invalid_input", True, f"input {index} indexes into {empty}, which is empty: every index is out "
                        "of range, which the call's empty fast path does not check (Note [invalid input])")
    return _outcome("invalid_input", False, "no index into an empty tensor")


def subnormal_inputs(trial) -> FilterOutcome:
    """Some libraries' kernels flush subnormal numbers to zero (XLA, TensorFlow's CPU kernels
    with their denormal guard), others do not, and a direction or a difference step at a
    subnormal value is quantised (a tangent at 5e-324 has one bit): at a subnormal input, or one
    so close to the subnormal range that intermediates fall into it (i1e(x) ~ x / 2 at the
    smallest normal x), neither libraries nor modes are compared, in one library or across."""
    tiny = near_subnormal(trial.dtype)
    for i in trial.inputs:
        for rec in records(i.value):
            a = np.abs(np.asarray(rec.values, dtype=np.float64))
            if rec.dtype == trial.dtype and np.any((a > 0) & (a < tiny)):
                return FilterOutcome("subnormal", True, f"input {i.name} holds subnormal {trial.dtype} values (or "
                                     "values within 2^10 of them), which some libraries flush to zero")
    return FilterOutcome("subnormal", False, "no subnormal input")


@instability_filter("subnormal")
def subnormal(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    return subnormal_inputs(ctx.execution.trial) if cand.verdict in NUMERIC else None


@instability_filter("nondeterminism")
def nondeterminism(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    if cand.verdict not in NUMERIC:
        return None
    # the 50-digit reference ("mp") is computed here, not by the worker: nothing to re-run
    names = sorted({s for d in cand.disagreements for s in d.scenarios if s.split(".")[0] != "mp"} | {"direct"})
    again = ctx.runner.run(ctx.execution.trial, ctx.spec, names)
    changed = [s for s in names if not same_result(ctx.execution.get(s), again.get(s))]
    if not changed:
        return _outcome("nondeterminism", False, f"re-run of {', '.join(names)} is bitwise identical")
    why = "declared random, seeded re-run differs" if ctx.spec.random else "NOT declared random"
    return FilterOutcome("nondeterminism", True, f"re-running the same inputs changes {', '.join(changed)} ({why})",
                         tuple(changed))


def same_result(a, b) -> bool:
    """Whether two runs of a scenario gave the same outcome and the same bits."""
    if a is None or b is None or a.outcome != b.outcome:
        return a is None and b is None
    if a.value is not None and not (a.value == b.value or (math.isnan(a.value) and math.isnan(b.value))):
        return False
    return all(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=np.asarray(x).dtype.kind == "f")
               for x, y in zip(a.outputs, b.outputs))


@instability_filter("fd_reliability")
def fd_reliability(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    ds = [d for d in cand.disagreements if d.aspect is Aspect.DERIVATIVE and d.scenarios[1].startswith("fd")]
    if not ds:
        return None
    d = max(ds, key=lambda x: x.max_abs)
    ref = ctx.execution.get(d.scenarios[1])
    err = ref.error_estimate if ref and ref.error_estimate is not None else math.inf
    if d.max_abs <= 2 * err:
        return _outcome("fd_reliability", True, f"|{d.scenarios[0]} - {d.scenarios[1]}| = {d.max_abs:.2g} is within "
                        f"twice the finite-difference error estimate {err:.2g}")
    return _outcome("fd_reliability", False, f"disagreement {d.max_abs:.2g} exceeds the finite-difference "
                    f"error estimate {err:.2g} by {d.max_abs / err if err else math.inf:.3g}x")


# Note [precision filter]
# A float32 disagreement that vanishes in float64 is dismissed when the float32 derivative is
# as accurate as float32 allows: within 1% (relative) of the float64 one, or within the
# absolute error that rounding the outputs to float32 already implies (16 eps |v| |f| |u|;
# tanh'(9) = 1 - tanh(9)^2 cannot be better than the rounding of tanh(9) itself).  Anything
# larger is kept as a float32-only bug: in-tree gradient tests run in float64 and miss those.
# Note [step scale]
# Finite differences along the whole direction use one absolute step (2^-10).  A staircase
# (fmod, remainder: jumps every y^2/x), a pole or a kink closer than the step makes them
# measure a smoothed slope that can look converged.  Central differences per coordinate with
# steps relative to each element (1e-6 |x|) see the function at its own scale; when they side
# with the AD value against the large-step reference, the disagreement is the step's.
@instability_filter("step_scale")
def step_scale(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    ds = [d for d in cand.disagreements if d.aspect is Aspect.DERIVATIVE and d.scenarios[1].startswith("fd")]
    if not ds or cand.verdict is not Verdict.DERIVATIVE_MISMATCH:
        return None
    d = ds[0]
    local = coordinate_reference(ctx, cand)
    if local is None:
        return _outcome("step_scale", False, "per-coordinate probe failed; kept")
    bound = 1e-4 * max(abs(local), abs(d.actual or 0.0), abs(d.expected or 0.0)) + d.tolerance.atol
    if abs((d.actual or 0.0) - local) <= bound < abs((d.expected or 0.0) - local):
        return _outcome("step_scale", True, f"finite differences at element-relative steps give {local:.6g}, "
                        f"as {d.scenarios[0]} does ({d.actual:.6g}); the step-2^-10 reference {d.expected:.6g} "
                        "straddles a feature (jump, pole or kink) of the function")
    return _outcome("step_scale", False, f"finite differences at element-relative steps ({local:.6g}) confirm "
                    f"the reference against {d.scenarios[0]} ({d.actual:.6g})" if abs((d.expected or 0.0) - local)
                    <= bound else f"element-relative finite differences ({local:.6g}) side with neither")


# Note [conditioning]
# Rounding the inputs to the trial's dtype moves them by up to eps |x|.  Where that alone
# moves the derivative by as much as the disagreement (sin of 2e19 in float32: the angle's
# last bit is worth 2e12 radians), no evaluation order is more right than another.  We
# perturb each input element by eps |x| in float64, through the disagreeing scenario itself,
# and dismiss when the total change reaches half the disagreement.  A value mismatch (the
# compiled call against the eager one) is probed through the call (<v, f>): tan of the
# argument pi q at q = 1.45e15 moves by a radian per last bit of q, and a compiled program
# that fuses pi/2 - pi q into one rounding gets -1.5 where eager gets 0.009.
@instability_filter("conditioning")
def conditioning(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    if cand.verdict not in (Verdict.DERIVATIVE_MISMATCH, Verdict.VALUE_MISMATCH):
        return None
    d = cand.disagreements[0]
    # the compiled call and the other kernels are probed through the eager VJP they are compared with
    through = "direct" if cand.verdict is Verdict.VALUE_MISMATCH else \
        "rev" if d.scenarios[0] in (COMPILED, KERNELS) else d.scenarios[0]
    trial = ctx.execution.trial
    eps = float(np.finfo(trial.dtype).eps)
    xs = _diff_inputs(trial)
    points = [(-1, 0, 0.0)] + [(i, j, eps * abs(float(v))) for i, x in enumerate(xs)
                               for j, v in enumerate(x.ravel()) if v != 0 and math.isfinite(v)]
    values = ctx.runner.probe(trial, ctx.spec, through, points)
    if values is None or not all(math.isfinite(v) for v in values):
        return _outcome("conditioning", False, "conditioning probe failed or non-finite; kept")
    moved = sum(abs(v - values[0]) for v in values[1:])
    if moved >= 0.5 * d.max_abs:
        return _outcome("conditioning", True, f"ill-conditioned here: rounding the inputs to {trial.dtype} "
                        f"(eps |x|) already moves {through} by {moved:.3g}, against a disagreement of "
                        f"{d.max_abs:.3g}")
    return _outcome("conditioning", False, f"well conditioned: input rounding moves {through} by "
                    f"{moved:.2g}, far below the disagreement {d.max_abs:.2g}")


@instability_filter("precision")
def precision(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    trial = ctx.execution.trial
    if cand.verdict not in NUMERIC or trial.dtype == "float64" or "float64" not in ctx.spec.dtypes:
        return None
    ex64 = ctx.runner.run(with_dtype(trial, "float64"), ctx.spec, [r.scenario for r in ctx.execution.results])
    ctx64 = FilterContext(ex64, ctx.spec, ctx.runner)
    kept = [c for c in compare(ex64, ctx.spec).candidates if not _dismissed(run_filters(ctx64, c))]
    if any(same_disagreement(c, cand) for c in kept):
        return _outcome("precision", False, "the same disagreement persists in float64")
    if cand.verdict is Verdict.NONFINITE_DERIVATIVE and trial.dtype == "float16":
        return _outcome("precision", True, "float64 re-run is finite: float16 intermediates overflow its range "
                        "(6.5e4) where the function's own value does not")
    lower = [c for c in kept if c.order < cand.order and c.verdict in NUMERIC]
    if lower:
        return _outcome("precision", True, f"in float64 the disagreement shows at order {lower[0].order} "
                        f"({'+'.join(lower[0].scenarios)}); this one is its {trial.dtype} consequence")
    rel, gap = _relative_gap(ctx.execution, ex64, cand.scenarios)
    eps = float(np.finfo(trial.dtype).eps)
    allowed_rel = max(1e-2 if trial.dtype == "float32" else 1e-1, 10 * _primal_gap(ctx.execution, ex64))
    allowed_abs = 16 * eps * output_scale(ex64) * 2.25
    if rel <= allowed_rel or gap <= allowed_abs:
        return _outcome("precision", True, f"float64 re-run agrees; the {trial.dtype} result is off by {rel:.2g} "
                        f"relative ({gap:.2g} absolute), within what {trial.dtype} rounding of the inputs and "
                        f"outputs allows ({allowed_rel:.2g} relative, {allowed_abs:.2g} absolute)")
    alike = _peer_alike(ctx, cand, ex64)
    if alike:
        return _outcome("precision", True, alike)
    return _outcome("precision", False, f"float64 agrees but the {trial.dtype} result is off by {rel:.2g} "
                    f"relative ({gap:.2g} absolute): a {trial.dtype}-only bug")


# Note [float32 formula]
# A float32 derivative off the float64 one by more than rounding explains may be a float32-only
# bug, or the float32 accuracy of the formula every library uses (sinc'(1e-3) cancels
# cos(pi x) - sinc(x): 1.4% off in torch, 0.8% in JAX).  Before keeping it, the other libraries
# of the spec's equivalence class run the same trial in the same dtype: where one of them is
# as far from our float64 value (at least half our gap, in the same AD scenario), the gap is
# the formula's accuracy in that dtype, which no maintainer would take as a bug of one library.
def _peer_alike(ctx: FilterContext, cand: Candidate, ex64: Execution) -> str:
    if ctx.peers is None:
        return ""
    scenarios = tuple(s for s in cand.scenarios if not is_reference(s))
    trial = ctx.execution.trial
    for library, ex in sorted(ctx.peers(trial, scenarios).items()):
        for s in scenarios:
            own, peer, exact = ctx.execution.get(s), ex.get(s), ex64.get(s)
            if None in (own, peer, exact) or None in (own.value, peer.value, exact.value):
                continue
            gap, peer_gap = abs(own.value - exact.value), abs(peer.value - exact.value)
            if math.isfinite(peer_gap) and gap > 0 and peer_gap >= 0.5 * gap:
                return (f"{library} computes {s} as inaccurately in {trial.dtype} ({peer.value:.6g}; ours "
                        f"{own.value:.6g}, float64 {exact.value:.6g}): the {trial.dtype} accuracy of the formula, "
                        "not a bug of one library (Note [float32 formula])")
    return ""


def same_disagreement(a: Candidate, b: Candidate) -> bool:
    """The same verdict at the same order between overlapping scenarios: another dtype may line
    up other scenarios beside it (a reference that converges only in float64)."""
    return a.verdict == b.verdict and a.order == b.order and bool(set(a.scenarios) & set(b.scenarios))


def _relative_gap(low: Execution, high: Execution, scenarios) -> Tuple[float, float]:
    gaps, absolute = [], []
    for s in scenarios:
        a, b = low.get(s), high.get(s)
        if a is None or b is None or a.value is None or b.value is None:
            continue
        scale = max(abs(b.value), b.scale or 0.0)
        diff = abs(a.value - b.value)
        gaps.append(diff / scale if scale else (0.0 if diff == 0 else math.inf))
        absolute.append(diff)
    return max(gaps, default=math.inf), max(absolute, default=math.inf)


def _primal_gap(low: Execution, high: Execution) -> float:
    a, b = low.get("direct"), high.get("direct")
    if a is None or b is None:
        return 0.0
    gaps = [0.0]
    for x, y in zip(a.outputs, b.outputs):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            gaps.append(float(np.max(np.abs(x[ok] - y[ok])) / max(float(np.max(np.abs(y[ok]))), 1e-300)))
    return max(gaps)


# Note [kink filter]
# At a kink (|x| at 0, relu at 0, ties in max) the derivative is a convention, not a fact, and
# finite differences straddle the kink.  We probe one-sided differences of the scalar function
# (P = <v, f> for first order, the inner Q for second order) along every input coordinate, at
# steps h and h/8: a jump that does not shrink with h is a kink.  Any subgradient convention
# applied per coordinate yields a value in the sum over coordinates of dir_i * hull(D-_i, D+_i),
# so the candidate is dismissed only if (1) at least one coordinate is kinked and (2) the
# disagreeing value lies in that interval.  At a smooth point nothing is dismissed.
@instability_filter("kink")
def kink(ctx: FilterContext, cand: Candidate) -> Optional[FilterOutcome]:
    if cand.verdict is not Verdict.DERIVATIVE_MISMATCH or ctx.spec.kinks == "none":
        return None
    d = cand.disagreements[0]
    narrow = _sub_ulp_pieces(ctx, cand)
    if narrow:
        return _outcome("kink", True, narrow)
    probe = coordinate_probe(ctx, cand)
    if probe is None:
        return _outcome("kink", False, "one-sided difference probe failed; kept")
    if ctx.spec.kinks == "selection":
        tie = _selection_tie(ctx, cand, probe)
        if tie:
            return _kink_convention(ctx, cand, _outcome("kink", True, tie))
    kinked, lo, hi = _hull(probe.values, probe.points, probe.dirs)
    if not kinked:
        return _outcome("kink", False, "smooth at this input: one-sided differences agree in every coordinate")
    slack = d.tolerance.atol + d.tolerance.rtol * max(abs(lo), abs(hi), abs(d.actual or 0.0)) + 1e-4 * (hi - lo)
    where = ", ".join(f"in {i} [{j}]" for i, j in kinked[:4]) + (" ..." if len(kinked) > 4 else "")
    if d.actual is not None and lo - slack <= d.actual <= hi + slack:
        return _kink_convention(ctx, cand, _outcome(
            "kink", True, f"kink at {where}: {d.scenarios[0]} = {d.actual:.6g} lies in the one-sided "
            f"derivatives' hull [{lo:.6g}, {hi:.6g}] (a subgradient convention)"))
    return _outcome("kink", False, f"kink at {where}, but {d.scenarios[0]} = {d.actual:.6g} is outside the "
                    f"one-sided derivatives' hull [{lo:.6g}, {hi:.6g}]: no convention explains it")


# Note [sub-ulp pieces]
# fmod(x, y) in y is linear with slope -trunc(x / y) between jumps y / trunc(x / y) apart: at
# x / y = 1e150 its derivative is 1e150 and its pieces are far narrower than one unit in the
# last place of y, so no difference of representable inputs can check that derivative, and
# differences over the jumps converge to noise.  Where a derivative moves the output by more than
# the output's whole size over one ulp of the inputs, a difference reference is no reference.
def _sub_ulp_pieces(ctx: FilterContext, cand: Candidate) -> str:
    d = cand.disagreements[0]
    if (not is_reference(d.scenarios[1]) or d.scenarios[1].split(".")[0] == "mp"
            or ctx.execution.trial.dtype not in FLOAT_DTYPES):
        return ""
    xs = _diff_inputs(ctx.execution.trial)
    size = max((float(np.max(np.abs(x), initial=0.0)) for x in xs), default=0.0)
    # the first derivative's size, whatever the candidate's order: where the function itself
    # jumps within an ulp, differences of any order have nothing to measure
    firsts = [r.value for r in ctx.execution.results
              if order(r.scenario) == 1 and not is_reference(r.scenario) and r.value is not None]
    steep = max((abs(v) for v in firsts if math.isfinite(v)), default=0.0)
    move = steep * size * float(np.finfo(ctx.execution.trial.dtype).eps)
    out = output_scale(ctx.execution)
    if not out or move <= out:
        return ""
    return (f"pieces narrower than an ulp: the derivative {steep:.3g} moves the output by {move:.3g} over one ulp "
            f"of inputs as large as {size:.3g}, more than the output's size {out:.3g} (Note [sub-ulp pieces])")


@dataclass(frozen=True)
class CoordinateProbe:
    """The scalar function at the input and at +-h, +-h/8 along every input coordinate."""

    points: List[Tuple[int, int, float]]
    values: List[float]
    dirs: List[np.ndarray]


def coordinate_probe(ctx: FilterContext, cand: Candidate) -> Optional[CoordinateProbe]:
    """Probe P = <v, f> (first order), the inner Q (second order) or Q2 (third order) coordinate
    by coordinate, with the direction (u, w or z) the candidate's projections used; an entry
    point (hessian) is probed through the plain modes' Q."""
    name = cand.disagreements[0].scenarios[0]
    parts = name.split(".") if "." in name else ["rev"] * cand.order
    inner = "direct" if cand.order == 1 else ".".join(parts[1:])
    key = (cand.order, inner)
    if key not in ctx.probes:  # the kink and step-scale filters and the tie-break share it
        xs = _diff_inputs(ctx.execution.trial)
        points = _kink_points(xs)
        values = ctx.runner.probe(ctx.execution.trial, ctx.spec, inner, points)
        tag = {1: "u", 2: "w"}.get(cand.order, "z")
        dirs = [direction(ctx.execution.trial.seed, tag, i, x.shape, "float64").ravel() for i, x in enumerate(xs)]
        ctx.probes[key] = None if values is None else CoordinateProbe(points, values, dirs)
    return ctx.probes[key]


def coordinate_reference(ctx: FilterContext, cand: Candidate) -> Optional[float]:
    """Central differences per input coordinate, with steps relative to each element, projected
    on the direction: a second reference for when Richardson along the whole direction failed
    (e.g. one huge element absorbs the step).  None if the probe failed."""
    probe = coordinate_probe(ctx, cand)
    if probe is None:
        return None
    total = _coordinate_sum(probe)
    return total if math.isfinite(total) else None


def _coordinate_sum(probe: CoordinateProbe) -> float:
    total = 0.0
    for n in range((len(probe.points) - 1) // 4):
        i, j, h = probe.points[1 + 4 * n]
        if h:
            total += probe.dirs[i][j] * (probe.values[1 + 4 * n] - probe.values[2 + 4 * n]) / (2 * h)
    return total


# Note [selection ties]
# Ops that select elements (median, quantile, sort, topk, max) are not differentiable where
# three or more candidates tie: moving one tied element alone changes nothing, moving them
# together does.  There the derivative along u (finite differences) differs from the sum of
# the coordinate derivatives, i.e. the derivative is not linear in the direction, and the
# library's documented convention (the gradient goes to the selected element) applies.  Only
# specs with `kinks: selection` are judged this way.
def _selection_tie(ctx: FilterContext, cand: Candidate, probe: CoordinateProbe) -> str:
    along = next((ctx.execution.get(s) for s in ("fd", "fd.rev") if ctx.execution.get(s) is not None
                  and order(s) == cand.order), None)
    if along is None or along.value is None or not math.isfinite(along.value):
        return ""
    total = _coordinate_sum(probe)
    size = max(abs(total), abs(along.value), 1e-300)
    if abs(total - along.value) <= 1e-3 * size:
        return ""
    return (f"not differentiable here (ties among selected elements): the derivative along u "
            f"({along.value:.6g}) is not the sum of coordinate derivatives ({total:.6g}); the gradient of a "
            "selection goes to one tied element by the library's convention")


def _diff_inputs(trial) -> List[np.ndarray]:
    return [to_array(r).astype(np.float64) for i in trial.inputs if i.differentiable for r in records(i.value)
            if r.dtype in FLOAT_DTYPES]


def _kink_points(xs: List[np.ndarray]) -> List[Tuple[int, int, float]]:
    points = [(-1, 0, 0.0)]
    for i, x in enumerate(xs):
        for j, xij in enumerate(x.ravel()):
            h = 1e-6 * max(abs(float(xij)), 1e-3) if math.isfinite(xij) else 0.0
            points += [(i, j, h), (i, j, -h), (i, j, h / 8), (i, j, -h / 8)]
    return points


def _hull(values: List[float], points, dirs) -> Tuple[List[Tuple[int, int]], float, float]:
    p0, kinked, lo, hi = values[0], [], 0.0, 0.0
    eps = np.finfo(np.float64).eps
    for n in range((len(points) - 1) // 4):
        i, j, h = points[1 + 4 * n]
        vp, vm, vp8, vm8 = values[1 + 4 * n: 5 + 4 * n]
        if h == 0.0:
            continue
        dp, dm = (vp8 - p0) / (h / 8), (p0 - vm8) / (h / 8)
        jump, jump_h = abs(dp - dm), abs((vp - p0) / h - (p0 - vm) / h)
        noise = 1e-5 * (abs(dp) + abs(dm)) + 1e3 * eps * abs(p0) / (h / 8)
        if jump > noise and jump >= 0.5 * jump_h:
            kinked.append((i, j))
        a, b = dirs[i][j] * dp, dirs[i][j] * dm
        lo, hi = lo + min(a, b), hi + max(a, b)
    return kinked, lo, hi


def _dismissed(outcomes: Tuple[FilterOutcome, ...]) -> bool:
    return bool(outcomes) and outcomes[-1].dismissed


def run_filters(ctx: FilterContext, cand: Candidate, only: Tuple[str, ...] = ()) -> Tuple[FilterOutcome, ...]:
    """Apply filters (all, or those named in `only`) in order until one dismisses; return every
    outcome produced."""
    outcomes: List[FilterOutcome] = []
    for name, fn in FILTERS:
        if only and name not in only:
            continue
        o = fn(ctx, cand)
        if o is not None:
            outcomes.append(o)
            if o.dismissed:
                break
    return tuple(outcomes)

