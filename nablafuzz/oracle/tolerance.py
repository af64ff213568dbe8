"""Tolerances are data: a per-dtype table merged with per-spec overrides in one function.

Derivative projections are compared as |a - b| <= atol + rtol * scale, where scale is the
larger of |a|, |b| and the magnitude sum of their terms (sum |v_i||(J u)_i|), so
cancellation in a projection does not fake a disagreement and a tiny derivative is still
judged relative to its own size (Note [relative accuracy]).
"""
from __future__ import annotations

from typing import Dict

from ..core.model import ApiSpec, Aspect, Tolerance

# Note [relative accuracy]
# atol is deliberately minute: a derivative of 4e-18 returned as 0 is 100% wrong, and an
# absolute tolerance tuned for values near 1 would hide every bug in a function's tails.
# The float32/float16 rows compare a low-precision AD result with another low-precision one
# or with a float64 finite-difference reference, so rtol reflects their unit roundoff times a
# modest conditioning allowance.
DERIVATIVE: Dict[str, Tolerance] = {
    "float64": Tolerance(atol=1e-300, rtol=1e-7),
    "float32": Tolerance(atol=1e-35, rtol=2e-3),
    "float16": Tolerance(atol=1e-6, rtol=3e-2),
}
VALUE: Dict[str, Tolerance] = {
    "float64": Tolerance(atol=1e-300, rtol=1e-10),
    "float32": Tolerance(atol=1e-35, rtol=1e-5),
    "float16": Tolerance(atol=1e-6, rtol=2e-3),
}

# Outputs of the same function from different libraries: each library's own algorithm (XLA's
# polynomial approximations, Eigen's, libm's) rounds differently, so a few hundred ulps apart
# is agreement; the absolute part is relative to the largest output, so values near a root
# (digamma near 1.46) are judged against the function's size, not their own.
CROSS_VALUE: Dict[str, Tolerance] = {
    "float64": Tolerance(atol=1e-11, rtol=1e-9),
    "float32": Tolerance(atol=1e-5, rtol=1e-4),
    "float16": Tolerance(atol=1e-2, rtol=1e-2),
}


def tolerance(spec: ApiSpec, dtype: str, aspect: Aspect, order: int = 1) -> Tolerance:
    """The tolerance for `aspect` at `dtype`: the table, then the spec's override for that dtype.

    Second-order results accumulate the rounding of two differentiations: rtol grows 4x per order.
    """
    base = table_tolerance(dtype, aspect, order)
    override = dict(spec.tolerance).get(dtype)
    if override is None or aspect is Aspect.VALUE:
        return base
    return Tolerance(max(base.atol, override.atol), max(base.rtol, override.rtol))


def table_tolerance(dtype: str, aspect: Aspect, order: int = 1) -> Tolerance:
    """The per-dtype table alone (no spec's overrides): what results of different libraries,
    each under its own spec, are compared with."""
    table = VALUE if aspect is Aspect.VALUE else DERIVATIVE
    base = table.get(dtype, table["float64"])
    if aspect is Aspect.DERIVATIVE and order > 1:
        base = Tolerance(base.atol, base.rtol * 4 ** (order - 1))
    return base


def within(a: float, b: float, scale: float, tol: Tolerance) -> bool:
    return abs(a - b) <= tol.atol + tol.rtol * scale
