"""From one executed trial to its findings: compare, filter, grade."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

from .compare import compare
from .filters import FilterContext, run_filters
from .model import ApiSpec, Candidate, FilterOutcome, Finding, Verdict
from .runtime.runner import Execution, Runner


@dataclass(frozen=True)
class Judgement:
    valid: bool
    candidates: int
    dismissed: Tuple[Tuple[str, int], ...]
    findings: Tuple[Finding, ...]


def severity(c: Candidate) -> str:
    """crash > wrong (off by >= 10% or non-finite) > accuracy (a smaller but real loss)."""
    if c.verdict in (Verdict.CRASH, Verdict.TIMEOUT):
        return "crash"
    rel = max((d.max_rel for d in c.disagreements), default=math.inf)
    return "wrong" if rel >= 0.1 or c.verdict is not Verdict.DERIVATIVE_MISMATCH else "accuracy"


def _nondeterministic(outcome: FilterOutcome) -> Candidate:
    changed = outcome.scenarios
    first = "direct" if "direct" in changed else changed[0]
    return Candidate(Verdict.NONDETERMINISTIC, (first,), 0,
                     message=f"same inputs, different results: {outcome.reason}")


def judge(execution: Execution, spec: ApiSpec, runner: Runner) -> Judgement:
    comparison = compare(execution, spec)
    ctx = FilterContext(execution, spec, runner)
    dismissed: Dict[str, int] = {}
    findings: List[Finding] = []
    for cand in comparison.candidates:
        outcomes = run_filters(ctx, cand)
        last = outcomes[-1] if outcomes else None
        if last is not None and last.dismissed:
            dismissed[last.filter] = dismissed.get(last.filter, 0) + 1
            if last.filter == "nondeterminism" and not spec.random:
                nd = _nondeterministic(last)
                findings.append(Finding(execution.trial, nd, outcomes, "wrong", nd.message))
            continue
        findings.append(Finding(execution.trial, cand, outcomes, severity(cand), cand.message))
    unique = {f.fingerprint: f for f in findings}
    return Judgement(comparison.valid, len(comparison.candidates), tuple(sorted(dismissed.items())),
                     tuple(unique.values()))
