"""The comparator: one trial's scenario results -> bug candidates.

Checks, in this order: the worker died (crash, timeout); a derivative scenario's status
against the spec's declared capabilities; primal outputs returned by rev/fwd against
`direct`; derivative projections within each order.  NaN/inf semantics are defined once, in
`_same_nonfinite`.  Only the lowest order with a derivative disagreement is reported: a wrong
first derivative makes its compositions wrong too (Note [lowest order]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.model import (ApiSpec, Aspect, Candidate, Disagreement, Execution, Outcome, ScenarioResult, TensorRecord,
                          Tolerance, Trial, Verdict, records)
from ..core.quantities import COMPILED, KERNELS, direction, implementation, is_reference, order
from ..core.tensors import FLOAT_DTYPES, to_array
from .bounded import bounded
from .tolerance import tolerance, within


@dataclass(frozen=True)
class Comparison:
    valid: bool
    candidates: Tuple[Candidate, ...]


def _same_nonfinite(a: float, b: float) -> Optional[bool]:
    """None if both are finite; else whether they agree (NaN with NaN, inf with same-sign inf)."""
    fa, fb = math.isfinite(a), math.isfinite(b)
    if fa and fb:
        return None
    if math.isnan(a) and math.isnan(b):
        return True
    return (not fa and not fb) and a == b


def agree(a: float, b: float, scale: float, tol) -> bool:
    same = _same_nonfinite(a, b)
    return within(a, b, scale, tol) if same is None else same


# Note [converged reference]
# Finite differences decide between AD scenarios only when Richardson extrapolation has
# converged: an error estimate above 1% of the value (or of the raw differences, when the value
# is zero) means the step is outside the asymptotic
# regime (a pole or a kink within reach of the step), and the AD scenarios are then compared
# with each other instead.  A tail value such as 4e-18 still counts: convergence is relative.
FD_CONVERGED = 1e-2


def converged(r: ScenarioResult) -> bool:
    """The error estimate is small against the value, or, for a derivative that is exactly
    zero, against the raw central differences it was extrapolated from."""
    err = r.error_estimate if r.error_estimate is not None else math.inf
    size = max(abs(r.value), r.scale if r.scale is not None and math.isfinite(r.scale) else 0.0)
    return math.isfinite(r.value) and err <= FD_CONVERGED * size


def _scale(*rs: ScenarioResult) -> float:
    vals = [abs(r.value) for r in rs] + [r.scale for r in rs if r.scale is not None]
    finite = [v for v in vals if math.isfinite(v)]
    return max(finite, default=0.0)


# Note [undeclared modes]
# Each adapter classifies its library's "this derivative is not implemented" errors as
# UNSUPPORTED (a table of messages per library, one test per row); any other error is RAISED.
# A RAISED mode while the direct call works is a status mismatch whether or not the spec
# declares the mode: an internal shape or dtype error in the library's own derivative code is a
# bug even where no one promised the mode works.  Only UNSUPPORTED depends on the declaration
# (missing_support where declared, nothing where not).
def _status(spec: ApiSpec, r: ScenarioResult, dtype: str) -> Optional[Candidate]:
    declared = r.scenario in spec.capabilities and not (dtype == "float16" and r.outcome is Outcome.UNSUPPORTED)
    err = r.error.type if r.error else ""
    if is_reference(r.scenario) and r.outcome is Outcome.CRASHED:
        return None  # finite differences stepped the inputs off the trial (p of bernoulli past 1): not the library's call
    if r.outcome in (Outcome.CRASHED, Outcome.TIMEOUT):
        verdict = Verdict.CRASH if r.outcome is Outcome.CRASHED else Verdict.TIMEOUT
        return Candidate(verdict, (r.scenario,), order(r.scenario), error_type=err,
                         message=f"{r.scenario}: {r.error.message if r.error else r.outcome.value}")
    if is_reference(r.scenario) or r.scenario == "direct" or (
            spec.support == "observed" and r.outcome in (Outcome.UNSUPPORTED, Outcome.OK)):
        return None  # observed support may vary with the input; an open refusal is not a wrong value
    if r.outcome is Outcome.UNSUPPORTED and declared:
        return Candidate(Verdict.MISSING_SUPPORT, (r.scenario,), order(r.scenario), error_type=err,
                         message=f"{r.scenario} is declared supported but raised {err}: {r.error.message if r.error else ''}")
    if r.outcome is Outcome.RAISED and err.rpartition(".")[2] == "WrongShape":  # libraries/base.project
        return Candidate(Verdict.WRONG_SHAPE, (r.scenario,), order(r.scenario), error_type=err,
                         message=f"{r.scenario} returned a derivative of the wrong shape: {r.error.message if r.error else ''}")
    if r.outcome is Outcome.RAISED:  # declared or not (Note [undeclared modes])
        undeclared = "" if declared else " (a mode the spec does not declare supported)"
        return Candidate(Verdict.STATUS_MISMATCH, (r.scenario,), order(r.scenario), error_type=err,
                         message=f"direct call succeeded but {r.scenario}{undeclared} raised {err}: "
                                 f"{r.error.message if r.error else ''}")
    if r.outcome is Outcome.OK and r.scenario in spec.unsupported:
        return Candidate(Verdict.UNDECLARED_SUPPORT, (r.scenario,), order(r.scenario),
                         message=f"{r.scenario} works although the spec declares it unsupported")
    return None


# Note [value floor]
# Two computations of the same outputs (the compiled call against the eager one, another kernel
# library, a staged kernel) may round differently.  An element is allowed rtol times the largest
# finite output of the call, not only times itself: polydiv's remainder is 0 eagerly and 4e-8
# compiled in float32 when its quotient is of order 1, the roundoff of the subtraction that made
# it, not a wrong value.  A wrong value of the call's own size still stands out.
def _value_disagreement(spec: ApiSpec, dtype: str, direct: ScenarioResult, r: ScenarioResult) -> Optional[Disagreement]:
    outs = spec.differentiable_outputs
    picked = list(direct.outputs) if outs is None else [direct.outputs[i] for i in outs]
    tol = tolerance(spec, dtype, Aspect.VALUE)
    floor = _largest(direct.outputs)
    for j, (want, got) in enumerate(zip(picked, r.outputs)):
        want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
        if want.shape != got.shape:
            return Disagreement(Aspect.VALUE, (r.scenario, "direct"), 0, dtype, tol, where=f"out {j}",
                                detail=f"shape {got.shape} != {want.shape}")
        bad = _bad_elements(got, want, tol, floor)
        if bad.any():
            k = int(np.argmax(bad.ravel()))
            idx = np.unravel_index(k, want.shape) if want.shape else ()
            err = np.abs(got - want)
            max_abs = float(np.nanmax(np.where(np.isfinite(err), err, np.inf)))
            scale = float(np.nanmax(np.abs(want))) if want.size else 0.0
            return Disagreement(Aspect.VALUE, (r.scenario, "direct"), 0, dtype, tol,
                                actual=float(got[idx]), expected=float(want[idx]), max_abs=max_abs,
                                max_rel=max_abs / scale if scale else math.inf, where=f"out {j} {tuple(int(i) for i in idx)}")
    return None


def _largest(outputs: Sequence[Any]) -> float:
    """The largest finite magnitude over the call's float outputs (0 if none)."""
    sizes = [float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))
             for a in (np.asarray(o) for o in outputs) if a.dtype.kind == "f" and a.size]
    return max(sizes, default=0.0)


def _bad_elements(got: np.ndarray, want: np.ndarray, tol, floor: float = 0.0) -> np.ndarray:
    """Elements outside atol + rtol * max(|want|, floor) (Note [value floor])."""
    both_nan = np.isnan(got) & np.isnan(want)
    with np.errstate(invalid="ignore", over="ignore"):
        same_inf = np.isinf(got) & (got == want)
        close = np.abs(got - want) <= tol.atol + tol.rtol * np.maximum(np.abs(want), floor)
    return ~(both_nan | same_inf | close)


def _derivative_candidate(spec: ApiSpec, dtype: str, group: List[ScenarioResult], k: int,
                          tol: Tolerance) -> Optional[Candidate]:
    # a random op's derivative is a convention (torch.normal is 0 in its mean by definition),
    # which finite differences of re-seeded draws need not match: AD modes are compared only
    refs = [] if spec.random else [r for r in group if is_reference(r.scenario) and converged(r)]
    ads = [r for r in group if not is_reference(r.scenario)]
    if not ads or _inherited(refs, k, tol):
        return None
    # one scale for the whole order: the projection's magnitude is a property of the function,
    # not of the mode that computed it, so every mode is held to the same absolute bound
    scale = _scale(*group)
    ambiguous = False
    if refs:
        # a mode within twice the reference's own error estimate agrees with it (as the
        # fd_reliability filter judges): at x = 1e-14 differences carry 1e-6 relative error
        ref = refs[0]
        within_ref = Tolerance(tol.atol + 2 * (ref.error_estimate or 0.0), tol.rtol)
        culprits = [r for r in ads if not agree(r.value, ref.value, scale, within_ref)]
    else:
        ref, culprits, ambiguous = _majority(ads, tol, scale)
        if any(r.emulated for r in culprits + [ref]):
            return None  # an emulated mode disagreeing, with no finite-difference verdict
    if not culprits:
        return None
    ds = tuple(_disagreement(dtype, tol, r, ref, k, scale) for r in culprits)
    nonfinite = all(not math.isfinite(r.value) for r in culprits) and math.isfinite(ref.value)
    verdict = Verdict.NONFINITE_DERIVATIVE if nonfinite else Verdict.DERIVATIVE_MISMATCH
    names = tuple(sorted(r.scenario for r in culprits + ([ref] if ambiguous else [])))
    return Candidate(verdict, names, k, ds, message=ds[0].detail, ambiguous=ambiguous)


# Note [one vote per implementation]
# jacrev, vmap of the VJP, the compiled VJP and the other kernels' VJP all run the library's
# reverse-mode rule; jacfwd runs its forward-mode rule.  Without a finite-difference reference,
# a wrong VJP rule outvoting the right JVP rule four to two is no majority: a cluster's weight is
# the number of distinct rules in it (the plain scenario each one shadows), so a rev-against-fwd
# split stays a tie, settled by the tie-break as it would be by a reference.
def _votes(cluster: Sequence[ScenarioResult]) -> int:
    return len({implementation(r.scenario) for r in cluster})


# Note [inherited reference]
# fd.rev differentiates the VJP, fd.fwd the JVP.  Where they disagree, the two first-order rules
# differ as functions around this input though they may agree at it (a VJP off by a factor is
# right at x = 0): the second-order gap is the first-order bug seen through a contaminated
# reference, which trials away from that point report at first order.  No candidate here.
def _inherited(refs: Sequence[ScenarioResult], k: int, tol) -> bool:
    if k < 2 or len(refs) < 2:
        return False
    scale = _scale(*refs)
    return any(abs(a.value - b.value) > tol.atol + tol.rtol * scale + 4 * (a.error_estimate + b.error_estimate)
               for a, b in zip(refs, refs[1:]))


def _majority(ads: List[ScenarioResult], tol, scale: float) -> Tuple[ScenarioResult, List[ScenarioResult], bool]:
    """Without a reference: the largest agreeing cluster is the reference.

    Returns (reference, culprits, ambiguous); ambiguous when two finite clusters tie, in which
    case the reference itself is as suspect as the culprits.
    """
    clusters: List[List[ScenarioResult]] = []
    for r in ads:
        home = next((c for c in clusters if agree(r.value, c[0].value, scale, tol)), None)
        if home is None:
            clusters.append([r])
        else:
            home.append(r)
    # a finite cluster before a non-finite one (Note [non-finite derivatives]): where the function
    # is finite, a NaN derivative is the suspect, not the finite one beside it; a cluster weighs
    # as many votes as it holds derivative implementations (Note [one vote per implementation])
    clusters.sort(key=lambda c: (math.isfinite(c[0].value), _votes(c)), reverse=True)
    ambiguous = len(clusters) > 1 and _votes(clusters[0]) == _votes(clusters[1]) and math.isfinite(clusters[1][0].value)
    return clusters[0][0], [r for c in clusters[1:] for r in c], ambiguous


# in a disagreement's detail: the mode that disagrees was emulated (OneFlow's forward mode)
EMULATED = " (forward mode emulated by two reverse passes)"


def _disagreement(dtype: str, tol, r: ScenarioResult, ref: ScenarioResult, k: int, scale: float) -> Disagreement:
    diff = abs(r.value - ref.value) if math.isfinite(r.value) and math.isfinite(ref.value) else math.inf
    rel = diff / scale if scale else (0.0 if diff == 0 else math.inf)
    emulated = EMULATED if r.emulated or ref.emulated else ""
    detail = (f"{r.scenario} vs {ref.scenario}{emulated}: derivative {r.value:.6g} vs {ref.value:.6g}, "
              f"max_abs={diff:.2g} max_rel={rel:.2g} > atol={tol.atol:.1g} rtol={tol.rtol:.1g} ({dtype})")
    return Disagreement(Aspect.DERIVATIVE, (r.scenario, ref.scenario), k, dtype, tol, actual=r.value,
                        expected=ref.value, max_abs=diff, max_rel=rel, where="projection <v, J u>" if k == 1
                        else "projection v^T D2f [u, w]", detail=detail)


def output_scale(execution: Execution) -> float:
    """sum |v| |f(x)| over the outputs: the size of the projected function itself."""
    direct = execution.get("direct")
    total = 0.0
    for j, out in enumerate(direct.outputs if direct else ()):
        out = np.asarray(out, dtype=np.float64)
        v = direction(execution.trial.seed, "v", j, out.shape, "float64")
        with np.errstate(over="ignore"):
            total += float(np.sum(np.abs(v) * np.abs(np.where(np.isfinite(out), out, 0.0))))
    return min(total, 1e300)  # outputs near overflow: their projections are the nonfinite filter's


def effective_dtype(trial_dtype: str, outputs: Sequence[np.ndarray]) -> str:
    """The least precise of the trial's dtype and its float outputs' (a cast to float32 of a
    float64 input is only as precise as float32)."""
    found = [str(np.asarray(o).dtype) for o in outputs if np.asarray(o).dtype.kind == "f"]
    return max([trial_dtype] + found, key=lambda d: float(np.finfo(d).eps) if d in FLOAT_DTYPES else 0.0)


# Note [roundoff floor]
# A derivative that is exactly zero is often computed as a residue of cancelling terms the
# size of the function or of its lower derivatives (corrcoef, normalize, vander: 1e-16
# against 0).  Differences below 64 eps 4^(k-1) 1.5^k S, with S the largest of |v||f| and the
# magnitude of the lower-order projections, cannot be told from roundoff, so that is the
# smallest absolute tolerance.  It scales with the function's own size, so a tail value such
# as sigmoid(-40) ~ 4e-18 keeps its relative sensitivity.
def roundoff_floor(execution: Execution, dtype: str, k: int) -> float:
    lower = [r.scale for r in execution.results if 0 < order(r.scenario) < k and not is_reference(r.scenario)
             and r.outcome is Outcome.OK and r.scale is not None and math.isfinite(r.scale)]
    size = max([output_scale(execution)] + lower)
    return 64 * float(np.finfo(dtype).eps) * 4 ** (k - 1) * 1.5 ** k * min(size, 1e300)


def compare(execution: Execution, spec: ApiSpec) -> Comparison:
    results = list(execution.results)
    direct = execution.get("direct")
    dtype = execution.trial.dtype
    status = _lowest_status([c for c in (_status(spec, r, dtype) for r in results) if c is not None])
    if direct is None or direct.outcome is not Outcome.OK:
        crashed = [c for c in status if c.verdict in (Verdict.CRASH, Verdict.TIMEOUT)]
        return Comparison(bool(crashed), tuple(crashed))
    out: List[Candidate] = list(status)
    for r in results:
        if r.scenario in ("rev", "fwd", COMPILED, KERNELS) and r.outcome is Outcome.OK:
            d = _value_disagreement(spec, dtype, direct, r)
            if d is not None:
                out.append(Candidate(Verdict.VALUE_MISMATCH, (r.scenario,), 1, (d,),
                                     message=f"{r.scenario} primal output differs from the direct call at {d.where}"))
    out += _lowest_order(spec, execution, effective_dtype(dtype, direct.outputs), results)
    # valid: the call worked and a derivative with at least one element was compared (a trial
    # whose draws left no differentiable input runs the direct call only; one whose
    # differentiable inputs or outputs are all empty compares only zeros: `empty_derivative`)
    ran = len(results) > 1 or bool(out)
    return Comparison(ran and not empty_derivative(execution.trial, direct.outputs), tuple(out))


def empty_derivative(trial: Trial, outputs: Sequence[np.ndarray] = ()) -> bool:
    """The trial differentiates nothing with an element: it has differentiable inputs and all
    of them are empty, or (when its outputs are known) every differentiated output is."""
    sizes = [r.size for i in trial.inputs if i.differentiable for r in records(i.value)]
    if not sizes:
        return False  # nothing differentiable at all: not an empty trial, just not a valid one
    if not any(sizes):
        return True
    outs = [o for j, o in enumerate(outputs) if trial.diff_outputs is None or j in trial.diff_outputs]
    return bool(outs) and not any(np.size(o) for o in outs)


def _lowest_status(cands: List[Candidate]) -> List[Candidate]:
    """One status candidate per (verdict, error type): the lowest-order scenarios that show it.
    A VJP that raises makes VJP of VJP and JVP of VJP raise the same way (Note [lowest order])."""
    groups: Dict[Tuple[Verdict, str], List[Candidate]] = {}
    for c in cands:
        groups.setdefault((c.verdict, c.error_type), []).append(c)
    out = []
    for group in groups.values():
        low = min(c.order for c in group)
        first = [c for c in group if c.order == low]
        rest = sorted(s for c in group if c.order > low for s in c.scenarios)
        also = f" (also {', '.join(rest)})" if rest else ""
        out.append(Candidate(first[0].verdict, tuple(sorted(s for c in first for s in c.scenarios)), low,
                             error_type=first[0].error_type, message=first[0].message + also))
    return out


# Note [half precision]
# float16 has 11 significant bits: second derivatives computed through formulas with
# cancellation (sinc, cosine_similarity) carry no significant digit there, and libraries'
# half-precision kernel coverage is knowingly partial.  float16 trials therefore check first
# order only, and a half kernel that is "not implemented" is not a missing-support finding.


def _needs_exact(group: Sequence[ScenarioResult], floor: float, use: str) -> bool:
    """Whether finite differences cannot judge this order (Note [exact reference]): the
    differences are exactly 0 where an AD result is not (a function flat to float64 beyond the
    step, or computed flat: OneFlow's logsigmoid is -0.0 at 50, where it is -1.9e-22); and, where
    the reference is `use`d to "judge", none converged or every AD result lies below the roundoff
    floor (a tail)."""
    refs = [r for r in group if is_reference(r.scenario) and converged(r)]
    ads = [abs(r.value) for r in group if not is_reference(r.scenario) and math.isfinite(r.value)]
    flat = bool(refs) and all(r.value == 0 for r in refs) and any(ads)
    return flat or (use == "judge" and (not refs or (bool(ads) and max(ads) <= floor)))


# Note [exact reference]
# For an elementwise API with a 50-digit reference (reference.py: functions of one to three
# numbers, broadcast), the first and second derivative projections are computed exactly from
# the trial's inputs and directions where finite differences cannot judge (_needs_exact), and
# the AD modes are judged against them alone, with the dtype's relative tolerance
# and, instead of the roundoff floor, the floor that rounding the output implies (Note [rounding
# floor] in reference.py): finite differences in float64 round to 0 or noise in a tail (erfc at
# 27, log_ndtr at 40), where the exact value still has all its digits.  Elsewhere finite
# differences judge as before (and the 50-digit values are not computed: they cost up to a
# tenth of a second per element in a tail).  Where an element has no real finite
# reference (outside the domain), the trial falls back to finite differences.  A campaign
# without --reference uses it only where the differences are exactly 0 and an AD result is not
# (`ApiSpec.reference_use` "flat"): there finite differences of the computed function are no
# reference at all, and the report they made ("rev 1.3e-22 against 0" for OneFlow's logsigmoid
# at 50, whose gradient is right and whose forward is flat) was not one to file.  The values are
# computed in a helper process with a time limit (Note [bounded reference] in bounded.py).
def exact_reference(spec: ApiSpec, execution: Execution) -> Optional[Tuple[ScenarioResult, ScenarioResult]]:
    from ..specs.reference import NUMBERS, projections  # orchestrator only: mpmath
    trial, direct = execution.trial, execution.get("direct")
    args = [i for i in trial.inputs if i.kind in NUMBERS]
    xs = [to_array(i.value) if isinstance(i.value, TensorRecord) else np.asarray(i.value, dtype=np.float64) for i in args]
    wrt = [k for k, i in enumerate(args) if i.differentiable and isinstance(i.value, TensorRecord)]
    if direct is None or len(direct.outputs) != 1 or not wrt:
        return None
    try:
        shape = np.broadcast_shapes(*(x.shape for x in xs))
    except ValueError:
        return None
    if np.shape(direct.outputs[0]) != shape or not np.prod(shape):
        return None
    us, ws = ([direction(trial.seed, tag, j, xs[k].shape, trial.dtype) for j, k in enumerate(wrt)] for tag in ("u", "w"))
    v = direction(trial.seed, "v", 0, shape, trial.dtype)
    got = bounded(projections, spec.reference, [x.astype(np.float64) for x in xs], wrt, us, v, ws,
                  float(np.finfo(trial.dtype).eps))  # Note [bounded reference]
    if got is None:
        return None
    (p1, s1, f1), (p2, s2, f2) = got  # Note [rounding floor]: the floor rides as the error estimate
    return (ScenarioResult("mp", Outcome.OK, p1, s1, f1), ScenarioResult("mp.mp", Outcome.OK, p2, s2, f2))


# Note [lowest order]
# A wrong first derivative also makes every composition built on it wrong, so a trial reports
# derivative candidates of its lowest disagreeing order only; the higher-order ones are
# consequences, and reporting them would file one bug several times.
def _lowest_order(spec: ApiSpec, execution: Execution, dtype: str,
                  results: Sequence[ScenarioResult]) -> List[Candidate]:
    by_order: Dict[int, List[ScenarioResult]] = {}
    for r in results:
        if r.scenario != "direct" and r.outcome is Outcome.OK and r.value is not None:
            by_order.setdefault(order(r.scenario), []).append(r)
    exact: Optional[Tuple[ScenarioResult, ScenarioResult]] = None  # computed once, when first needed
    tried = False
    for k in sorted(by_order):
        if k > 1 and dtype == "float16":
            break  # Note [half precision]
        base = tolerance(spec, dtype, Aspect.DERIVATIVE, k)
        group = by_order[k]
        floor = roundoff_floor(execution, dtype, k)
        if spec.reference and k <= 2 and not tried and _needs_exact(group, floor, spec.reference_use):
            exact, tried = exact_reference(spec, execution), True
        if exact is not None and k <= 2:  # Note [exact reference]: it replaces finite differences
            mp_result = exact[k - 1]
            group = [r for r in group if not is_reference(r.scenario)] + [mp_result]
            c = _derivative_candidate(spec, dtype, group, k, Tolerance(max(base.atol, mp_result.error_estimate), base.rtol))
        else:
            c = _derivative_candidate(spec, dtype, group, k, Tolerance(max(base.atol, floor), base.rtol))
        if c is not None:
            return [c]
    return []


# ---- results of two runs of one function (two libraries: cross.py; two releases: releases.py) ----
OTHERS = "others"  # the pseudo-scenario of a cross-library disagreement: what the others computed


def reference_of(quantity: str) -> str:
    return "fd" if order(quantity) == 1 else f"fd.{quantity.split('.')[1]}"


def same_outputs(tol: Tolerance) -> Callable[[List[np.ndarray], List[np.ndarray]], bool]:
    def same(a: List[np.ndarray], b: List[np.ndarray]) -> bool:
        if [x.shape for x in a] != [y.shape for y in b]:
            return False
        for x, y in zip(a, b):
            size = float(np.max(np.abs(np.where(np.isfinite(y), y, 0.0)), initial=0.0))
            with np.errstate(invalid="ignore", over="ignore"):
                close = np.abs(x - y) <= tol.atol * size + tol.rtol * np.maximum(np.abs(x), np.abs(y))
            if not np.all(close | (np.isnan(x) & np.isnan(y)) | (np.isinf(x) & (x == y))):
                return False
        return True
    return same


def output_disagreement(got: List[np.ndarray], want: List[np.ndarray], others: Sequence[str], dtype: str,
                         tol: Tolerance) -> Disagreement:
    if [g.shape for g in got] != [w.shape for w in want]:
        return Disagreement(Aspect.VALUE, ("direct", OTHERS), 0, dtype, tol, where="outputs",
                            detail=f"output shapes {[g.shape for g in got]} vs {[w.shape for w in want]} "
                                   f"({', '.join(others)})")
    j = next(j for j, (g, w) in enumerate(zip(got, want)) if not same_outputs(tol)([g], [w]))
    g, w = got[j], want[j]
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(np.isnan(g) & np.isnan(w), 0.0, np.abs(g - w))
    err = np.where(np.isnan(err), np.inf, err)
    k = int(np.argmax(err.ravel()))
    idx = np.unravel_index(k, w.shape) if w.shape else ()
    scale = float(np.max(np.abs(np.where(np.isfinite(w), w, 0.0)), initial=0.0))
    max_abs = float(err.ravel()[k])
    detail = (f"output {j} at {tuple(int(i) for i in idx)}: {float(g[idx]):.17g} vs {float(w[idx]):.17g} "
              f"computed by {', '.join(others)}, max_abs={max_abs:.3g} ({dtype})")
    return Disagreement(Aspect.VALUE, ("direct", OTHERS), 0, dtype, tol, actual=float(g[idx]), expected=float(w[idx]),
                        max_abs=max_abs, max_rel=max_abs / scale if scale else math.inf,
                        where=f"out {j} {tuple(int(i) for i in idx)}", detail=detail)
