"""numpy_ref ops and bug-report builders shared by the repro and triage tests.

The ops are named in reports as `repro_ops:NAME`; the tests put this directory on PYTHONPATH
for the repro scripts they run.
"""
from dataclasses import replace
from typing import Sequence, Tuple

import numpy as np

from nablafuzz.core.fingerprint import key
from nablafuzz.core.model import (ArgKind, Aspect, BugReport, Disagreement, ErrorInfo, Evidence, FilterOutcome,
                                  Fingerprint, InputValue, ReportStatus, Tolerance, Trial, Verdict)
from nablafuzz.core.tensors import to_record
from nablafuzz.libraries.numpy_ref.adapter import Op, unary

SIN: Op = unary(np.sin, np.cos, lambda x: -np.sin(x))

# the VJP is twice the truth; JVP, finite differences and the second derivative are right
DOUBLE_VJP_SIN: Op = replace(SIN, vjp=lambda xs, vs: [2 * np.cos(xs[0]) * vs[0]])

# the second derivative is three times the truth; first order is right
TRIPLE_HESS_SIN: Op = replace(SIN, hess=lambda xs, us, vs: [-3 * vs[0] * np.sin(xs[0]) * us[0]])


def _no_vjp(xs, vs):
    raise NotImplementedError("repro_ops.RAISING_VJP has no VJP")


RAISING_VJP: Op = replace(SIN, vjp=_no_vjp)


def _scaled_mul(x, y, alpha=1.0):
    return alpha * x * y


# two float inputs and a keyword parameter; correct
SCALED_MUL: Op = Op(
    f=_scaled_mul,
    jvp=lambda xs, us, alpha=1.0: [alpha * (us[0] * xs[1] + xs[0] * us[1])],
    vjp=lambda xs, vs, alpha=1.0: [alpha * xs[1] * vs[0], alpha * xs[0] * vs[0]],
    hess=lambda xs, us, vs, alpha=1.0: [alpha * vs[0] * us[1], alpha * vs[0] * us[0]],
)

F64 = Tolerance(atol=1e-300, rtol=1e-7)


def tensor(values, dtype="float64", name="x", differentiable=True, keyword=False) -> InputValue:
    return InputValue(name, ArgKind.TENSOR, to_record(np.asarray(values, dtype=dtype)), differentiable, keyword)


def disagreement(a: str, b: str, dtype="float64", actual=1.0, expected=0.5, aspect=Aspect.DERIVATIVE,
                 tolerance=F64) -> Disagreement:
    order = 0 if aspect is Aspect.VALUE else a.count(".") + 1
    diff = abs(actual - expected)
    return Disagreement(aspect, (a, b), order, dtype, tolerance, actual, expected, diff, diff / abs(expected),
                        "projection <v, J u>", f"{a} vs {b}: derivative {actual} vs {expected}")


def declared(report: BugReport) -> set:
    """The spec ids a test declares for `report`: its own API (as a loaded spec would)."""
    return {f"{report.fingerprint.library}:{report.fingerprint.api}"}


def make_report(library: str, api: str, inputs: Sequence[InputValue], *, dtype="float64", seed=20240607,
                verdict=Verdict.DERIVATIVE_MISMATCH, scenarios: Tuple[str, ...] = ("rev",),
                disagreements: Sequence[Disagreement] = (), severity="wrong", status=ReportStatus.NEW,
                campaigns: Tuple[str, ...] = ("c1",), error: ErrorInfo = None, filters=(), message="",
                sizes=(3, 3), versions=("numpy==2.1.0", "python==3.11.7"), occurrences=1) -> BugReport:
    order = max((s.count(".") + 1 for s in scenarios if s != "direct"), default=0)
    fp = Fingerprint(library, api, verdict, tuple(scenarios), order, error.type if error else "")
    trial = Trial(library, api, seed, dtype, tuple(inputs))
    text = message or (disagreements[0].detail if disagreements else f"{verdict.value} in {scenarios[0]}")
    filters = filters or (FilterOutcome("finite_difference", False, "fd error 1e-12 << disagreement 0.5"),)
    evidence = Evidence(text, severity, tuple(disagreements), tuple(filters), error)
    return BugReport(fp, key(fp), status, "2024-06-01T00:00:00Z", "2024-06-07T00:00:00Z", occurrences,
                     tuple(versions), trial, evidence, sizes[0], sizes[1], tuple(campaigns))
