"""From one executed trial to its findings: compare, filter, grade."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

from ..core.model import ApiSpec, Candidate, Execution, FilterOutcome, Finding, Severity, Verdict
from ..core.quantities import is_reference
from .compare import compare
from .filters import FilterContext, Peers, Rerun, coordinate_reference, run_filters, same_result


@dataclass(frozen=True)
class Judgement:
    valid: bool
    candidates: int
    dismissed: Tuple[Tuple[str, int], ...]
    findings: Tuple[Finding, ...]
    conventions: Tuple[str, ...] = ()  # why each candidate classified as a convention was
    votes: Tuple[Tuple[str, str, str], ...] = ()  # cross-library: (library, quantity, agree / deviate / ...)


TAIL = 1e-12


def severity(c: Candidate) -> Severity:
    """crash > wrong (off by >= 10% or non-finite) > tail (wrong, but on derivatives below
    1e-12) > accuracy (a smaller but real loss) > metadata (works though declared unsupported)."""
    if c.verdict in (Verdict.CRASH, Verdict.TIMEOUT):
        return Severity.CRASH
    if c.verdict is Verdict.UNDECLARED_SUPPORT:
        return Severity.METADATA
    rel = max((d.max_rel for d in c.disagreements), default=math.inf)
    if c.verdict is Verdict.VALUE_MISMATCH and c.oracle and rel < 1e-3:
        return Severity.ACCURACY  # another library's output, a few digits apart
    if c.verdict is not Verdict.DERIVATIVE_MISMATCH:
        return Severity.WRONG
    if rel < 0.1:
        return Severity.ACCURACY
    tiny = all(max(abs(d.actual or 0.0), abs(d.expected or 0.0)) < TAIL for d in c.disagreements)
    return Severity.TAIL if tiny else Severity.WRONG


def _nondeterministic(outcome: FilterOutcome) -> Candidate:
    changed = outcome.scenarios
    first = "direct" if "direct" in changed else changed[0]
    return Candidate(Verdict.NONDETERMINISTIC, (first,), 0,
                     message=f"same inputs, different results: {outcome.reason}")


# Note [tie-break]
# When no converged finite-difference reference exists and the AD scenarios split evenly
# (rev against fwd), the candidate is ambiguous.  Coordinate-wise central differences (steps
# relative to each element, so a huge element does not absorb them) usually settle which side
# is right; the fingerprint then names only the culprit, as it would have with a reference.
# Note [unresolved tie]
# A tie that neither finite differences nor the coordinate-wise tie-break settles (tiny or huge
# inputs, where no difference converges) names no culprit: reported, it would be a second entry
# ("rev or fwd") for the bug that trials with a reference report as "rev".  It is counted as
# `unresolved_tie` and the trials that can judge it report it.
def break_tie(ctx: FilterContext, cand: Candidate) -> Candidate:
    ref = coordinate_reference(ctx, cand)
    if ref is None:
        return cand
    values = {s: ctx.execution.get(s).value for s in cand.scenarios}
    scale = max([abs(ref)] + [abs(v) for v in values.values() if math.isfinite(v)])
    bad = tuple(s for s, v in values.items() if not (math.isfinite(v) and abs(v - ref) <= 1e-4 * scale))
    if not bad or len(bad) == len(values):
        return cand
    side = ", ".join(s for s in values if s not in bad)
    return replace(cand, scenarios=bad, ambiguous=False,
                   message=f"{cand.message}; coordinate-wise finite differences ({ref:.6g}) side with {side}")


def judge(execution: Execution, spec: ApiSpec, runner: Rerun, peers: Optional[Peers] = None) -> Judgement:
    """`peers` runs the trial in the other libraries of the spec's equivalence class, where the
    campaign has them (Note [float32 formula])."""
    comparison = compare(execution, spec)
    ctx = FilterContext(execution, spec, runner, peers=peers)
    dismissed: Dict[str, int] = {}
    findings: List[Finding] = []
    conventions: List[str] = []
    for cand in comparison.candidates:
        if cand.ambiguous:
            cand = break_tie(ctx, cand)
        outcomes = run_filters(ctx, cand)
        last = outcomes[-1] if outcomes else None
        if last is not None and last.dismissed:
            dismissed[last.filter] = dismissed.get(last.filter, 0) + 1
            if last.filter == "convention":
                conventions.append(last.reason)
            if last.filter == "nondeterminism" and not spec.random:
                nd = _nondeterministic(last)
                findings.append(Finding(execution.trial, nd, outcomes, Severity.WRONG, nd.message))
            continue
        if cand.ambiguous:  # Note [unresolved tie]
            dismissed["unresolved_tie"] = dismissed.get("unresolved_tie", 0) + 1
            continue
        findings.append(Finding(execution.trial, cand, outcomes, severity(cand), cand.message))
    unique = {f.fingerprint: f for f in findings}
    return Judgement(comparison.valid, len(comparison.candidates), tuple(sorted(dismissed.items())),
                     tuple(unique.values()), tuple(conventions))


# Note [uninitialised read]
# The nondeterminism filter re-runs a trial in the same process, where memory a kernel forgot to
# write holds the same leftovers each time: the garbage repeats bitwise and passes for a wrong
# but stable derivative.  A finding's confirmation re-runs the trial in a fresh worker
# (Note [confirmation]); where the finding's own results (the call, or its AD modes) come out
# with other bits there, the finding is an `uninitialised_read` of its own: a real bug, whatever
# its values, which are left out of the evidence (they are garbage, and another run prints others).
def uninitialised(first: Execution, fresh: Execution, finding: Finding) -> Optional[Finding]:
    """The finding as an uninitialised read where the fresh process changed its results, else None."""
    c = finding.candidate
    if c.verdict not in (Verdict.DERIVATIVE_MISMATCH, Verdict.NONFINITE_DERIVATIVE, Verdict.VALUE_MISMATCH):
        return None
    names = ("direct",) + tuple(s for s in c.scenarios if not is_reference(s) and s != "direct")
    changed = tuple(s for s in names if first.get(s) is not None and not same_result(first.get(s), fresh.get(s)))
    if not changed:
        return None
    culprit = ("direct",) if "direct" in changed else changed
    message = (f"re-running the same inputs in a fresh process changes {', '.join(changed)}, while re-running in "
               "the same process repeats it bitwise: the result reads memory nothing wrote (Note [uninitialised read])")
    cand = Candidate(Verdict.UNINITIALISED_READ, culprit, 0 if culprit == ("direct",) else c.order, message=message)
    return Finding(first.trial, cand, finding.filters, Severity.WRONG, message)
