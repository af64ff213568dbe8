"""The release-vs-release oracle: one trial, executed by two releases of one library (runtimes
`jax@0.10.1` and `jax`), compared quantity by quantity.

Note [release change]
A quantity changed between releases when one release computed it and the other raised or
crashed (a mode that broke, or started working), or when both computed it and the values
differ beyond the spec's tolerance for the dtype (outputs; projections of derivatives, with the
round-off floor of both).  Only the lowest order that changed is reported, as in one library
(Note [lowest order]): a changed output changes every derivative after it.  Each change is
classed by what the new release did:

  new      it broke (the old release computed the quantity), or its derivative left the
           float64 finite-difference reference the old release agreed with;
  fixed    it started working, or its derivative came to agree with the reference;
  changed  the values differ and no converged reference decides (outputs, second order, or a
           reference agreeing with neither).

A fingerprint names what changed (`error_type`: broke, works, or value) and not its class,
which can differ from trial to trial of one root cause (frexp's mantissa derivative, 0 in jax
0.6.0: fixed where finite differences converge, changed at x = 1 where the mantissa jumps and
they do not).  Each trial's class is logged; a fingerprint's class over a campaign is the most
decisive one seen (`decisive`), kept in the campaign record, and counted per release pair by
the summary and triage.  Timeouts and emulated modes are never compared.  Two
filters dismiss a change, and are counted: `signature`, a trial whose call one release's
signature refuses (`top_k(..., axis=0)` before `axis` existed: the API's surface changed, not
what it computes), and `subnormal`, a value change on subnormal inputs (jax.lax.cbrt(5e-324) is
1.35e-108 in jax 0.8.0 and 0 in 0.10.2, whose XLA flushes subnormals; as across libraries,
oracle/filters.subnormal_inputs).  A derivative that is non-finite in both releases (NaN in one,
inf in the other, at a pole: arccosh'' at 1) is not a change, as across libraries.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..core.model import (BROKE, CHANGED, FIXED, NEW, VALUE, WORKS, ApiSpec, Aspect, Candidate, Disagreement, Execution,
                          Finding, Outcome, ScenarioResult, Severity, Tolerance, Trial, Verdict, decisive, release_oracle)
from ..core.quantities import is_reference, order
from .compare import agree, converged, output_disagreement, reference_of, roundoff_floor, same_outputs
from .filters import subnormal_inputs
from .tolerance import CROSS_VALUE, tolerance

_SKIP = (Outcome.TIMEOUT, Outcome.UNSUPPORTED)


# the call itself refused by one release's signature: an argument added or removed, not a change
# of what the function computes (an API missing from a release is refused before any trial runs)
_SIGNATURE = re.compile(r"unexpected keyword argument|missing \d+ required (positional|keyword)|"
                        r"takes (from )?\d+ (to \d+ )?positional arguments? but \d+ (were|was) given")


def signature_differs(old: Execution, new: Execution) -> bool:
    """Whether one release's call refused the trial's arguments (a TypeError of its signature)."""
    for ex in (old, new):
        d = ex.get("direct")
        if d is not None and d.error is not None and d.error.type == "TypeError" and _SIGNATURE.search(d.error.message):
            return True
    return False


def _works(r: Optional[ScenarioResult]) -> bool:
    return r is not None and r.outcome is Outcome.OK


def _failure(r: ScenarioResult) -> str:
    return f"{r.outcome.value}: {r.error.type}: {r.error.message[:160]}" if r.error else r.outcome.value


def _status(q: str, old: ScenarioResult, new: ScenarioResult, names: Tuple[str, str]) -> Optional[Tuple[str, Disagreement]]:
    if _works(old) == _works(new):
        return None
    kind, failed = (NEW, new) if _works(old) else (FIXED, old)
    who = names[1] if kind == NEW else names[0]
    detail = f"{q} {'broke' if kind == NEW else 'started working'}: in {who} it gave {_failure(failed)}"
    return kind, Disagreement(Aspect.STATUS, (q, q), order(q), "", Tolerance(0.0, 0.0), detail=detail)


def _outputs(r: ScenarioResult) -> List[np.ndarray]:
    return [np.asarray(o) for o in r.outputs]


def _value(dtype: str, old: ScenarioResult, new: ScenarioResult, names: Tuple[str, str]) -> Optional[Tuple[str, Disagreement]]:
    """Outputs compared as two libraries' are (CROSS_VALUE): a release may change the algorithm
    behind a function (XLA's approximation of exp), and a few hundred ulps apart is agreement."""
    a, b = _outputs(old), _outputs(new)
    if not all(x.dtype.kind in "biufc" for x in a + b):
        return None  # outputs that are not numbers (a string, an object) are not compared
    tol = CROSS_VALUE.get(dtype, CROSS_VALUE["float64"])
    if same_outputs(tol)(a, b):
        return None
    return CHANGED, output_disagreement(b, a, [names[0]], dtype, tol)


def _reference(q: str, executions: Sequence[Execution]) -> Optional[ScenarioResult]:
    """A converged finite-difference reference for `q`, from the new release first."""
    for ex in reversed(executions):
        ref = ex.get(reference_of(q))
        if ref is not None and ref.outcome is Outcome.OK and ref.value is not None and converged(ref):
            return ref
    return None


def _derivative(spec: ApiSpec, dtype: str, q: str, old_ex: Execution, new_ex: Execution,
                names: Tuple[str, str]) -> Optional[Tuple[str, Disagreement]]:
    old, new = old_ex.get(q), new_ex.get(q)
    if old.value is None or new.value is None:
        return None
    k = order(q)
    base = tolerance(spec, dtype, Aspect.DERIVATIVE, k)
    tol = Tolerance(max(base.atol, roundoff_floor(old_ex, dtype, k), roundoff_floor(new_ex, dtype, k)), base.rtol)
    scale = max([abs(r.value) for r in (old, new) if math.isfinite(r.value)]
                + [r.scale for r in (old, new) if r.scale is not None and math.isfinite(r.scale)], default=0.0)
    if agree(old.value, new.value, scale, tol) or not (math.isfinite(old.value) or math.isfinite(new.value)):
        return None  # NaN against inf at a pole is no release's choice more right than the other's
    ref = _reference(q, (old_ex, new_ex))
    kind = CHANGED
    said = "no converged finite-difference reference"
    if ref is not None:
        old_right, new_right = (agree(r.value, ref.value, scale, tol) for r in (old, new))
        kind = NEW if old_right and not new_right else FIXED if new_right and not old_right else CHANGED
        said = f"finite differences ({ref.scenario}) = {ref.value:.10g} ± {ref.error_estimate or 0.0:.2g}"
    diff = abs(old.value - new.value) if math.isfinite(old.value) and math.isfinite(new.value) else math.inf
    rel = diff / scale if scale else (0.0 if diff == 0 else math.inf)
    detail = (f"{q} = {old.value:.10g} in {names[0]}, {new.value:.10g} in {names[1]}; {said}: max_abs={diff:.2g} "
              f"max_rel={rel:.2g} > atol={tol.atol:.1g} rtol={tol.rtol:.1g} ({dtype})")
    return kind, Disagreement(Aspect.DERIVATIVE, (q, q), k, dtype, tol, actual=new.value, expected=old.value,
                              max_abs=diff, max_rel=rel,
                              where="projection <v, J u>" if k == 1 else "projection v^T D2f [u, w]", detail=detail)


def _severity(kind: str, aspect: Aspect, new: Optional[ScenarioResult], rel: float) -> Severity:
    if kind == FIXED:
        return Severity.METADATA
    if kind == NEW and aspect is Aspect.STATUS:
        return Severity.CRASH if new is not None and new.outcome is Outcome.CRASHED else Severity.WRONG
    return Severity.ACCURACY if rel < 1e-3 else Severity.WRONG


@dataclass(frozen=True)
class ReleaseJudgement:
    findings: Tuple[Finding, ...] = ()  # at most one: the lowest-order change
    dismissed: Tuple[str, ...] = ()  # the filters that dismissed a change ("subnormal", "signature")
    kind: str = ""  # the finding's class on this trial: new, fixed or changed


def release_judge(spec: ApiSpec, trial: Trial, names: Tuple[str, str], old: Execution,
                  new: Execution) -> ReleaseJudgement:
    """The lowest-order change between the `old` and `new` release's executions of `trial`
    (Note [release change]); `names`: the two runtimes, old first."""
    if signature_differs(old, new):
        return ReleaseJudgement(dismissed=("signature",))
    quantities = [r.scenario for r in old.results if not is_reference(r.scenario)]
    changes: List[Tuple[str, str, Disagreement]] = []
    for q in quantities:
        a, b = old.get(q), new.get(q)
        if b is None or a.outcome in _SKIP or b.outcome in _SKIP or a.emulated or b.emulated:
            continue
        got = _status(q, a, b, names)
        if got is None and _works(a) and _works(b):
            got = _value(trial.dtype, a, b, names) if q == "direct" else _derivative(spec, trial.dtype, q, old, new, names)
        if got is not None:
            changes.append((q, *got))
    if not changes:
        return ReleaseJudgement()
    lowest = min(order(q) for q, _, _ in changes)
    picked = [(q, kind, d) for q, kind, d in changes if order(q) == lowest]
    status = [c for c in picked if c[2].aspect is Aspect.STATUS]
    picked = status or picked
    if not status and subnormal_inputs(trial).dismissed:  # flushing subnormals is each release's choice
        return ReleaseJudgement(dismissed=("subnormal",))
    kind = decisive([k for _, k, _ in picked])
    disagreements = tuple(d for _, _, d in picked)
    rel = max((d.max_rel for d in disagreements), default=math.inf)
    aspect = disagreements[0].aspect
    candidate = Candidate(Verdict.RELEASE_CHANGE, tuple(q for q, _, _ in picked), lowest, disagreements,
                          error_type=(BROKE if kind == NEW else WORKS) if status else VALUE, oracle=release_oracle(*names))
    message = f"{kind} in {names[1]} (against {names[0]}): " + "; ".join(d.detail for d in disagreements)
    return ReleaseJudgement((Finding(trial, candidate, (), _severity(kind, aspect, new.get(picked[0][0]), rel), message),),
                            kind=kind)
