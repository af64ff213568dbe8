"""The cross-library oracle: one canonical trial, executed by every member of its equivalence
class, compared quantity by quantity (outputs, VJP, JVP, the second-order compositions).

Note [cross-library verdict]
A library is a *deviant* for a quantity when it disagrees with every other library while the
others agree among themselves.  That is a finding against it when (derivatives) a converged
float64 finite-difference reference, computed by a library of the majority, sides with the
majority and not with it, or three other libraries agree without a usable reference; and
(outputs, which have no finite-difference reference) when at least two others agree.  Two
libraries alone are judged only by the reference.  Anything else (a split, a lone library) is
counted as "no verdict", never reported.  For an elementwise function with a 50-digit reference,
that reference is the referee instead of finite differences (Note [cross-library referee]).  As in one library (Note [lowest order]), a deviant
output hides that library's derivative findings, and a deviant first order its second.
Candidates then pass the in-library filters that apply to a single library's value (known
issues and conventions, non-finite semantics, kinks; for outputs, conditioning: a float32 sum
of terms of 3e38 that cancel is exact in no library), run in the deviant's own worker, so a
subgradient the deviant documents at a kink is classified `convention`, not reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from ..core.config import Config
from ..core.domains import DOMAINS
from ..core.model import (ApiSpec, Aspect, Candidate, Disagreement, Execution, FilterOutcome, Finding, Outcome,
                          ScenarioResult, TensorRecord, Tolerance, Trial, Verdict, cross_oracle, records)
from ..core.quantities import COMPILED, FD_KINK, FIRST_ORDER, is_reference, order
from ..core.tensors import near_subnormal, to_record
from ..runtime.pool import Members
from ..runtime.process import RuntimeUnavailable
from ..specs.equivalence import Resolved, member_trial
from .compare import OTHERS, agree, converged, exact_reference, output_disagreement, reference_of, roundoff_floor, same_outputs
from .filters import FilterContext, Rerun, coordinate_reference, run_filters, subnormal_inputs
from .tolerance import CROSS_VALUE, table_tolerance
from .verdict import Judgement, severity

QUANTITIES = ("direct",) + FIRST_ORDER + tuple(f"{o}.{i}" for o in FIRST_ORDER for i in FIRST_ORDER)
VALUE_FILTERS = ("known_issue", "conditioning")  # Note [conditioning]: float32 conv1d of 2^64 - 2^40 cancels
DERIVATIVE_FILTERS = ("known_issue", "nonfinite", "kink")
AGREE, DEVIATE, NO_VERDICT, FAILED = "agree", "deviate", "no_verdict", "failed"


def _ok(ex: Execution, scenario: str) -> Optional[ScenarioResult]:
    """The library's own result (an emulated forward mode is another reverse pass: left out)."""
    r = ex.get(scenario)
    if r is None or r.outcome is not Outcome.OK or r.emulated:
        return None
    return r if scenario == "direct" or r.value is not None else None


def picked_outputs(r: Resolved, library: str, direct: ScenarioResult) -> List[np.ndarray]:
    outs = r.spec(library).differentiable_outputs
    picked = direct.outputs if outs is None else [direct.outputs[j] for j in outs if j < len(direct.outputs)]
    return [np.asarray(o, dtype=np.float64) for o in picked]


T = TypeVar("T")


def deviant(values: Dict[str, T], same: Callable[[T, T], bool]) -> Tuple[Optional[str], bool]:
    """(the library that disagrees with all others while they agree, whether all agree).
    With two libraries that disagree each qualifies: (None, False), the reference decides."""
    libs = list(values)
    pair = {(a, b): same(values[a], values[b]) for a in libs for b in libs if a < b}
    agrees = lambda a, b: pair[(min(a, b), max(a, b))]  # noqa: E731
    if all(pair.values()):
        return None, True
    if len(libs) < 3:
        return None, False
    for lib in libs:
        others = [o for o in libs if o != lib]
        if all(not agrees(lib, o) for o in others) and all(agrees(a, b) for a in others for b in others if a < b):
            return lib, False
    return None, False


@dataclass(frozen=True)
class _Deviation:
    library: str
    quantity: str
    disagreement: Disagreement
    referenced: bool = True  # a converged finite-difference reference sided with the others
    kinked: bool = False  # no reference: every other library's differences crossed a kink (`_kinked`)


def _value_deviation(r: Resolved, executions: Dict[str, Execution], dtype: str, votes: List) -> Optional[_Deviation]:
    outs = {lib: picked_outputs(r, lib, d) for lib, ex in executions.items() if (d := _ok(ex, "direct")) is not None}
    votes += [(lib, "direct", FAILED) for lib in executions if lib not in outs]
    tol = CROSS_VALUE.get(dtype, CROSS_VALUE["float64"])
    bad, unanimous = deviant(outs, same_outputs(tol)) if len(outs) >= 2 else (None, False)
    others = [lib for lib in outs if lib != bad]
    if bad is None or len(others) < 2:
        votes += [(lib, "direct", AGREE if unanimous else NO_VERDICT) for lib in outs]
        return None
    votes += [(bad, "direct", DEVIATE)] + [(lib, "direct", AGREE) for lib in others]
    return _Deviation(bad, "direct", output_disagreement(outs[bad], outs[others[0]], others, dtype, tol))


Refer = Callable[[str, str], Optional[ScenarioResult]]  # (library, reference scenario) -> its result


def _reference(refer: Refer, quantity: str, prefer: Sequence[str]) -> Optional[Tuple[str, ScenarioResult]]:
    """A converged finite-difference reference for `quantity`, from the libraries in `prefer`."""
    for lib in prefer:
        ref = refer(lib, reference_of(quantity))
        if ref is not None and ref.outcome is Outcome.OK and ref.value is not None and converged(ref):
            return lib, ref
    return None


def _kinked(refer: Refer, quantity: str, libraries: Sequence[str]) -> bool:
    """Whether every library's finite differences along the trial's direction crossed a kink:
    the function is not differentiable along it here (min(|a|, |b|) at a = b = 0), whatever the
    coordinates' differences say, and each library's value is a subgradient choice.  (One
    library's kink alone may be its own bug: TensorFlow's i1' is 1 at 0 and 0.5 around it.)"""
    got = [refer(lib, reference_of(quantity)) for lib in libraries]
    return all(r is not None and r.error is not None and r.error.type == FD_KINK for r in got)


def recorded(executions: Dict[str, Execution]) -> Refer:
    """References the executions already hold (run with the AD scenarios)."""
    return lambda lib, scenario: executions[lib].get(scenario)


# Note [cross-library referee]
# Where the members of a class compute a function with a 50-digit reference (reference.py:
# elementwise functions of one to three numbers), that reference, not finite differences, decides
# which side of a cross-library disagreement of the first or second order is wrong: it is
# exact where float64 differences are noise (tails, tiny and huge inputs), and it judges two
# libraries alone.  It is computed from the inputs of the library asked (all members share the
# canonical trial's values), only when a deviation needs a referee.
def refereed(r: Resolved, executions: Dict[str, Execution], refer: Refer) -> Refer:
    """`refer`, with the 50-digit reference first where the member's spec has one."""
    cache: Dict[str, object] = {}

    def get(lib: str, scenario: str) -> Optional[ScenarioResult]:
        k = order(scenario)
        if r.spec(lib).reference and k <= 2 and lib in executions:
            if lib not in cache:
                cache[lib] = exact_reference(r.spec(lib), executions[lib])
            got = cache[lib]
            if got is not None:
                return got[k - 1]  # type: ignore[index]
        return refer(lib, scenario)
    return get


def _derivative_deviation(executions: Dict[str, Execution], quantity: str, dtype: str, votes: List,
                          refer: Refer) -> Optional[_Deviation]:
    k = order(quantity)
    results = {lib: res for lib, ex in executions.items() if (res := _ok(ex, quantity)) is not None}
    for lib, ex in executions.items():
        mine = ex.get(quantity)
        if lib not in results and mine is not None and not mine.emulated:
            votes.append((lib, quantity, FAILED))
    if len(results) < 2:
        votes += [(lib, quantity, NO_VERDICT) for lib in results]
        return None
    floor = max(roundoff_floor(executions[lib], dtype, k) for lib in results)
    base = table_tolerance(dtype, Aspect.DERIVATIVE, k)
    tol = Tolerance(max(base.atol, floor), base.rtol)
    scale = max([abs(x.value) for x in results.values() if math.isfinite(x.value)]
                + [x.scale for x in results.values() if x.scale is not None and math.isfinite(x.scale)], default=0.0)
    same = lambda a, b: agree(a.value, b.value, scale, tol)  # noqa: E731
    bad, unanimous = deviant(results, same)
    if unanimous:
        votes += [(lib, quantity, AGREE) for lib in results]
        return None
    candidates = [bad] if bad is not None else list(results) if len(results) == 2 else []
    for lib in candidates:
        others = [o for o in results if o != lib]
        ref = _reference(refer, quantity, others)
        sided = ref is not None and same(ref[1], results[others[0]]) and not same(ref[1], results[lib])
        if sided or (ref is None and len(others) >= 2):
            votes += [(lib, quantity, DEVIATE)] + [(o, quantity, AGREE) for o in others]
            return _Deviation(lib, quantity, _derivative_disagreement(results, lib, others, ref, dtype, tol, scale),
                              ref is not None, ref is None and _kinked(refer, quantity, others))
    votes += [(lib, quantity, NO_VERDICT) for lib in results]
    return None


def _derivative_disagreement(results: Dict[str, ScenarioResult], lib: str, others: Sequence[str],
                             ref: Optional[Tuple[str, ScenarioResult]], dtype: str, tol: Tolerance,
                             scale: float) -> Disagreement:
    got, want = results[lib], results[others[0]]
    quantity = got.scenario
    diff = abs(got.value - want.value) if math.isfinite(got.value) and math.isfinite(want.value) else math.inf
    rel = diff / scale if scale else (0.0 if diff == 0 else math.inf)
    said = ", ".join(f"{o} {results[o].value:.10g}" for o in others)
    what = "the 50-digit reference" if ref and ref[1].scenario.startswith("mp") else "finite differences"
    fd = (f"; {what} ({ref[1].scenario}, {ref[0]}) = {ref[1].value:.10g} ± {ref[1].error_estimate:.2g}"
          if ref else "; finite differences unusable here")
    detail = (f"{quantity} = {got.value:.10g} in {lib}, where {said}{fd}: max_abs={diff:.2g} max_rel={rel:.2g} > "
              f"atol={tol.atol:.1g} rtol={tol.rtol:.1g} ({dtype})")
    k = order(quantity)
    return Disagreement(Aspect.DERIVATIVE, (quantity, OTHERS), k, dtype, tol, actual=got.value, expected=want.value,
                        max_abs=diff, max_rel=rel,
                        where="projection <v, J u>" if k == 1 else "projection v^T D2f [u, w]", detail=detail)


def _candidates(r: Resolved, devs: Sequence[_Deviation],
                executions: Dict[str, Execution]) -> List[Tuple[str, Candidate, bool, bool]]:
    """One candidate per deviant library, at its lowest deviating order (Note [lowest order])."""
    out = []
    for lib in dict.fromkeys(d.library for d in devs):
        mine = [d for d in devs if d.library == lib]
        low = min(order(d.quantity) for d in mine)
        ds = tuple(d.disagreement for d in mine if order(d.quantity) == low)
        if low == 0:
            verdict = Verdict.VALUE_MISMATCH
        elif all(not math.isfinite(d.actual) for d in ds) and all(math.isfinite(d.expected) for d in ds):
            verdict = Verdict.NONFINITE_DERIVATIVE
        else:
            verdict = Verdict.DERIVATIVE_MISMATCH
        expected: tuple = ()
        if low == 0:
            other = next(o for o in r.libraries if o != lib and _ok(executions[o], "direct") is not None)
            expected = tuple(to_record(a) for a in picked_outputs(r, other, executions[other].get("direct")))
        referenced = all(d.referenced for d in mine if order(d.quantity) == low)
        kinked = any(d.kinked for d in mine if order(d.quantity) == low)
        out.append((lib, Candidate(verdict, tuple(sorted(d.scenarios[0] for d in ds)), low, ds,
                             message=f"{lib} disagrees with the other libraries of {r.cls.id!r}: {ds[0].detail}",
                             oracle=cross_oracle(r.cls.id), expected=expected), referenced, kinked))
    return out


def flush_subnormal(trial: Trial, spec: Optional[ApiSpec] = None) -> Trial:
    """The trial with values at or near the subnormal range, and negative zeros, set to +0:
    libraries that flush subnormals and libraries that do not compute different functions
    there by design, and the sign of a zero is a convention they do not share (angle(-0.0) is
    pi in JAX and NumPy, 0 in PyTorch and TensorFlow), while +0 is a point every library must
    get right.  An argument whose domain (in `spec`) leaves 0 out keeps its values: gammainc's
    a = 0 is outside the class, where libraries answer as they please (NaN or the limit); a
    disagreement at such an input is then not judged (`subnormal_inputs`)."""
    limit = near_subnormal(trial.dtype)
    kept = {a.name for a in spec.args if not DOMAINS[a.domain].zero} if spec is not None else set()

    def flush(rec: TensorRecord) -> TensorRecord:
        if rec.dtype != trial.dtype:
            return rec
        return replace(rec, values=tuple(0.0 if abs(v) < limit else v for v in rec.values))

    def value(v):
        if isinstance(v, TensorRecord):
            return flush(v)
        return tuple(flush(r) for r in v) if records(v) and isinstance(v, tuple) else v
    return replace(trial, inputs=tuple(i if i.name in kept else replace(i, value=value(i.value)) for i in trial.inputs))


def _subnormal_values(cand: Candidate, dtype: str) -> FilterOutcome:
    """Results that differ only below the normal range (a subnormal output flushed to 0)."""
    d = cand.disagreements[0]
    if d.actual is not None and d.expected is not None and max(abs(d.actual), abs(d.expected)) < near_subnormal(dtype):
        return FilterOutcome("subnormal", True, f"{d.actual:.3g} against {d.expected:.3g}: both at or below the "
                             f"subnormal range of {dtype}, which some libraries flush to zero")
    return FilterOutcome("subnormal", False, "values in the normal range")


def _both_nonfinite(cand: Candidate) -> FilterOutcome:
    """NaN against inf where the function overflows or has a pole: no library's value there is
    more right than another's, so that is not judged."""
    d = cand.disagreements[0]
    if d.actual is not None and d.expected is not None and not math.isfinite(d.actual) \
            and not math.isfinite(d.expected):
        return FilterOutcome("nonfinite", True, f"{d.actual} against {d.expected}: both non-finite (an overflow "
                             "or a pole), whose NaN or inf libraries choose differently")
    return FilterOutcome("nonfinite", False, "the other libraries' value is finite")


def _coordinate_check(ctx: FilterContext, cand: Candidate) -> FilterOutcome:
    """Without a converged reference along the direction, coordinate-wise central differences
    (steps relative to each element, in the deviant's worker) must side with the others."""
    d = cand.disagreements[0]
    ref = coordinate_reference(ctx, cand)
    if ref is None:
        return FilterOutcome("no_reference", True, "finite differences unusable along u and per coordinate")
    size = max(abs(ref), abs(d.actual), abs(d.expected), 1e-300) if math.isfinite(d.actual) else abs(ref)
    if abs(ref - d.expected) <= 1e-4 * size and not abs(ref - d.actual) <= 1e-4 * size:
        return FilterOutcome("no_reference", False, f"coordinate-wise finite differences ({ref:.10g}) side with "
                             "the other libraries")
    return FilterOutcome("no_reference", True, f"coordinate-wise finite differences ({ref:.10g}) do not side with "
                         "the other libraries")


DIRECTIONAL_KINK = FilterOutcome("kink", True, "finite differences along the trial's direction cross a kink in "
                                 "every other library (a kink the coordinates alone do not see, as min(|a|, |b|) "
                                 "at 0): the libraries' values are subgradient choices")


def _filter(ctx: FilterContext, cand: Candidate, referenced: bool, kinked: bool) -> Tuple[FilterOutcome, ...]:
    """The cross-library filter chain, in the deviant's own worker; it ends at the first dismissal."""
    trial = ctx.execution.trial
    checks: List[Callable[[], Tuple[FilterOutcome, ...]]] = [lambda: (subnormal_inputs(trial),),
                                                            lambda: (_subnormal_values(cand, trial.dtype),)]
    if cand.order == 0:
        checks += [lambda: (_both_nonfinite(cand),), lambda: run_filters(ctx, cand, VALUE_FILTERS)]
    else:
        checks.append(lambda: run_filters(ctx, cand, DERIVATIVE_FILTERS))
    if not referenced:
        checks.append(lambda: (DIRECTIONAL_KINK,) if kinked else (_coordinate_check(ctx, cand),))
    outcomes: Tuple[FilterOutcome, ...] = ()
    for check in checks:
        outcomes += check()
        if outcomes and outcomes[-1].dismissed:
            break
    return outcomes


def cross_judge(r: Resolved, executions: Dict[str, Execution], runners: Dict[str, Rerun],
                refer: Optional[Refer] = None) -> Judgement:
    """Compare the members' executions of one canonical trial (Note [cross-library verdict]);
    `refer` gives finite-difference references on demand (default: those already run)."""
    refer = refereed(r, executions, refer or recorded(executions))
    dtype = next(iter(executions.values())).trial.dtype
    votes: List[Tuple[str, str, str]] = []
    devs = [d for d in [_value_deviation(r, executions, dtype, votes)] if d is not None]
    working = {lib: ex for lib, ex in executions.items() if _ok(ex, "direct") is not None}
    for q in QUANTITIES[1:]:
        d = _derivative_deviation(working, q, dtype, votes, refer) if len(working) >= 2 else None
        if d is not None:
            devs.append(d)
    cands = _candidates(r, devs, executions)
    findings, dismissed, conventions = [], {}, []
    for lib, cand, referenced, kinked in cands:
        outcomes = _filter(FilterContext(executions[lib], r.spec(lib), runners[lib]), cand, referenced, kinked)
        if outcomes and outcomes[-1].dismissed:
            dismissed[outcomes[-1].filter] = dismissed.get(outcomes[-1].filter, 0) + 1
            if outcomes[-1].filter == "convention":
                conventions.append(outcomes[-1].reason)
            continue
        findings.append(Finding(executions[lib].trial, cand, outcomes, severity(cand), cand.message))
    return Judgement(bool(working), len(cands), tuple(sorted(dismissed.items())), tuple(findings),
                          tuple(conventions), tuple(sorted(set(votes))))


def run_class(r: Resolved, trial: Trial, members: Members, config: Config) -> Tuple[Judgement, Dict[str, Execution]]:
    """Run the canonical `trial` in every member whose spec takes its dtype, then judge.
    Finite-difference references run only where libraries disagree (Note [lazy references])."""
    trial = flush_subnormal(trial, r.canonical)
    executions = {}
    scenarios = cross_scenarios(config)
    ad = tuple(s for s in scenarios if not is_reference(s))
    for library in r.libraries:
        spec = r.spec(library)
        if trial.dtype in spec.dtypes and library not in members.stopped:
            try:
                executions[library] = members[library].run(member_trial(r, library, trial), spec, ad)
            except RuntimeUnavailable as exc:  # the others go on without it
                members.stopped.setdefault(library, str(exc))
    runners = {lib: members[lib] for lib in executions}
    refs: Dict[Tuple[str, str], Optional[ScenarioResult]] = {}

    def refer(library: str, scenario: str) -> Optional[ScenarioResult]:
        if scenario not in scenarios:
            return None
        if (library, scenario) not in refs:
            ex = runners[library].run(member_trial(r, library, trial), r.spec(library), (scenario,))
            refs[(library, scenario)] = ex.get(scenario)
        return refs[(library, scenario)]
    return cross_judge(r, executions, runners, refer), executions


# Note [lazy references]
# Finite differences cost a dozen calls per quantity (Richardson at three steps), and second-
# order references a dozen first-order passes: most of a trial's time, spent to settle
# disagreements that most trials do not have.  Every library runs the AD scenarios; only a
# quantity where one library deviates asks the others for its reference, in their workers.


def cross_scenarios(config: Config) -> Tuple[str, ...]:
    """What every member runs: the configured scenarios, never the compiled one (the others'
    eager results are no reference for one library's compiler)."""
    return tuple(s for s in config.scenarios if s != COMPILED)
