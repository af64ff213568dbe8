"""A high-precision reference for elementwise functions: value and derivatives at 50 digits.

float64 finite differences are no reference in a function's tail: at |x| of 20-40 for sigmoid
or tanh, at tiny and at huge inputs, central differences round to 0, inf or noise, and the gap
sits below the comparator's roundoff floor.  For an elementwise API whose function has an
mpmath counterpart (`api_specs/references.yaml`: a function of FUNCTIONS and the API names it
covers in each library), the projections of the first and second derivative are computed at 50
significant digits from the trial's exact inputs, and the AD modes are judged against them with
the dtype's relative tolerance and no roundoff floor (compare.py): "mp" is then the reference
of its order, before finite differences.  Orchestrator only (mpmath, pure Python).

Nothing in the table is executed: a row names a function of FUNCTIONS (code) and API globs.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mpmath as mp
import numpy as np
from .errors import SpecError
from .model import ApiSpec, ArgKind
from .sidefiles import MISSING, read_section

REFERENCES_FILE = "references.yaml"
DIGITS = 50
REFERENCE = "mp"  # the scenario name of the reference (order 1; "mp.mp" for order 2)


def _sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def _softplus(x):
    return mp.log1p(mp.exp(x)) if x < 30 else x + mp.log1p(mp.exp(-x))


# function -> f(x) on mpf; derivatives by mpmath's high-precision differentiation
FUNCTIONS: Dict[str, Callable] = {
    "exp": mp.exp, "exp2": lambda x: mp.power(2, x), "expm1": mp.expm1, "log": mp.log, "log2": lambda x: mp.log(x, 2),
    "log10": mp.log10, "log1p": mp.log1p, "sqrt": mp.sqrt, "rsqrt": lambda x: 1 / mp.sqrt(x),
    "cbrt": mp.cbrt, "reciprocal": lambda x: 1 / x, "square": lambda x: x * x,
    "sin": mp.sin, "cos": mp.cos, "tan": mp.tan, "asin": mp.asin, "acos": mp.acos, "atan": mp.atan,
    "sinh": mp.sinh, "cosh": mp.cosh, "tanh": mp.tanh, "asinh": mp.asinh, "acosh": mp.acosh, "atanh": mp.atanh,
    "erf": mp.erf, "erfc": mp.erfc, "erfinv": mp.erfinv, "erfcx": lambda x: mp.exp(x * x) * mp.erfc(x),
    "lgamma": lambda x: mp.log(abs(mp.gamma(x))), "digamma": mp.digamma, "gamma": mp.gamma,
    "sigmoid": _sigmoid, "logsigmoid": lambda x: -_softplus(-x), "softplus": _softplus,
    "silu": lambda x: x * _sigmoid(x), "mish": lambda x: x * mp.tanh(_softplus(x)),
    "gelu": lambda x: x / 2 * (1 + mp.erf(x / mp.sqrt(2))), "softsign": lambda x: x / (1 + abs(x)),
    "sinc": lambda x: mp.sinc(mp.pi * x) if x != 0 else mp.mpf(1),
    "i0": lambda x: mp.besseli(0, x), "i1": lambda x: mp.besseli(1, x),
    "i0e": lambda x: mp.exp(-abs(x)) * mp.besseli(0, x), "i1e": lambda x: mp.exp(-abs(x)) * mp.besseli(1, x),
    "ndtr": lambda x: mp.ncdf(x), "log_ndtr": lambda x: mp.log(mp.ncdf(x)),
    "ndtri": lambda p: mp.sqrt(2) * mp.erfinv(2 * p - 1), "logit": lambda p: mp.log(p / (1 - p)),
    "spence": lambda x: mp.polylog(2, 1 - x), "entr": lambda x: -x * mp.log(x),
    "j0": lambda x: mp.besselj(0, x), "j1": lambda x: mp.besselj(1, x),
    "y0": lambda x: mp.bessely(0, x), "y1": lambda x: mp.bessely(1, x),
    "k0": lambda x: mp.besselk(0, x), "k1": lambda x: mp.besselk(1, x),
    "dawsn": lambda x: mp.sqrt(mp.pi) / 2 * mp.exp(-x * x) * mp.erfi(x),
    "neg": lambda x: -x, "positive": lambda x: +x, "deg2rad": lambda x: x * mp.pi / 180,
    "rad2deg": lambda x: x * 180 / mp.pi, "tanhshrink": lambda x: x - mp.tanh(x),
}


# ---- the table -----------------------------------------------------------------------------

def load_references(path: Path) -> Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]]:
    """function -> (API globs, excluded globs) from `api_specs/references.yaml` (missing: none)."""
    fix = "write `references: [{function: tanh, apis: ['*.tanh'], exclude: []}]` with functions of reference.FUNCTIONS"
    rows = read_section(path, "references", fix)
    if rows is MISSING:
        return {}
    if not isinstance(rows, list):
        raise SpecError(str(path), "", "references", "expected a list of rows", fix)
    out = {}
    for row in rows:
        ok = (isinstance(row, dict) and row.get("function") in FUNCTIONS and isinstance(row.get("apis"), list)
              and all(isinstance(a, str) for a in row["apis"] + list(row.get("exclude", []))))
        if not ok:
            raise SpecError(str(path), str(row)[:80], "references", "each row needs a function of reference.FUNCTIONS "
                            "and lists of API globs (apis, exclude)", fix)
        out[row["function"]] = (tuple(row["apis"]), tuple(row.get("exclude", [])))
    return out


def unary(spec: ApiSpec) -> bool:
    """One float tensor argument and nothing else: what an elementwise reference covers."""
    return (len(spec.args) == 1 and spec.args[0].kind is ArgKind.TENSOR and not spec.args[0].structure
            and not spec.overloads and not spec.module and not spec.random)


def with_references(specs: Sequence[ApiSpec], table: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]]) -> List[ApiSpec]:
    """Each unary spec whose name a row covers gets that row's function as `reference`."""
    def covers(apis: Tuple[str, ...], exclude: Tuple[str, ...], name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, g) for g in apis) and not any(fnmatch.fnmatchcase(name, g) for g in exclude)
    out = []
    for s in specs:
        hit = next((f for f, (apis, exclude) in table.items() if unary(s) and covers(apis, exclude, s.name)), "")
        out.append(replace(s, reference=hit) if hit and not s.reference else s)  # a spec's own word first
    return out


# ---- the values ----------------------------------------------------------------------------

PRECISIONS = (DIGITS, 3 * DIGITS, 8 * DIGITS)  # working digits, raised until two levels agree


def _at(f: Callable, x: float, dps: int) -> Optional[Tuple[float, float, float]]:
    with mp.workdps(dps):
        try:
            xm = mp.mpf(float(x))
            values = [f(xm), mp.diff(f, xm, 1), mp.diff(f, xm, 2)]
        except (ValueError, ZeroDivisionError, OverflowError):
            return None
        if any(not isinstance(v, mp.mpf) or not mp.isfinite(v) for v in values):
            return None
        return tuple(float(v) for v in values)


def derivatives(function: str, x: float) -> Optional[Tuple[float, float, float]]:
    """(f, f', f'') at the exact binary value x, rounded to float64; None where the function is
    not real there (log of a negative number) or not finite.  Differentiation at DIGITS digits
    cannot resolve a tail where f is constant to 50 digits (erf at 16: f' ~ 1e-112): the working
    precision rises until two levels agree to 1e-25 relative, else there is no reference."""
    f = FUNCTIONS[function]
    last = _at(f, x, PRECISIONS[0])
    for dps in PRECISIONS[1:]:
        if last is None:
            return None
        now = _at(f, x, dps)
        if now is not None and all(abs(a - b) <= 1e-25 * max(abs(a), abs(b)) for a, b in zip(now, last)):
            # a first derivative of exactly 0 is a tail no level resolved (erf at 26); a stationary
            # point (cosh at 0) is left to finite differences as well; f'' = 0 is a linear function
            return now if all(math.isfinite(v) for v in now) and now[1] != 0 else None
        last = now
    return None


def projections(function: str, x: np.ndarray, u: np.ndarray, v: np.ndarray,
                w: np.ndarray) -> Optional[Tuple[Tuple[float, float], Tuple[float, float]]]:
    """((<v, f'(x) u>, sum |v f' u|), (<v, f''(x) u w>, sum |v f'' u w|)) of an elementwise
    function, summed in 50 digits; None where any element has no real finite reference."""
    d1, d2, s1, s2 = mp.mpf(0), mp.mpf(0), mp.mpf(0), mp.mpf(0)
    with mp.workdps(DIGITS):
        for xi, ui, vi, wi in zip(np.ravel(x), np.ravel(u), np.ravel(v), np.ravel(w)):
            got = derivatives(function, float(xi))
            if got is None:
                return None
            _, g1, g2 = (mp.mpf(g) for g in got)
            t1, t2 = mp.mpf(float(vi)) * g1 * mp.mpf(float(ui)), mp.mpf(float(vi)) * g2 * mp.mpf(float(ui)) * mp.mpf(float(wi))
            d1, d2, s1, s2 = d1 + t1, d2 + t2, s1 + abs(t1), s2 + abs(t2)
        return (float(d1), float(s1)), (float(d2), float(s2))
