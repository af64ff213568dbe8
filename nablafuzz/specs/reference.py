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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mpmath as mp
import numpy as np

from ..core.errors import SpecError
from ..core.model import ApiSpec, ArgKind
from .sidefiles import MISSING, read_section

REFERENCES_FILE = "references.yaml"
DIGITS = 50
REFERENCE = "mp"  # the scenario name of the reference (order 1; "mp.mp" for order 2)


def _sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def _softplus(x):
    return mp.log1p(mp.exp(x)) if x < 30 else x + mp.log1p(mp.exp(-x))


# function -> f(x) on mpf; derivatives by mpmath's high-precision differentiation
UNARY: Dict[str, Callable] = {
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
    "identity": lambda x: +x, "exp1": mp.e1, "expi": mp.ei, "fresnel_cos": mp.fresnelc, "fresnel_sin": mp.fresnels,
    "k0e": lambda x: mp.exp(x) * mp.besselk(0, x), "k1e": lambda x: mp.exp(x) * mp.besselk(1, x),
    "erfcinv": lambda x: mp.erfinv(1 - x), "log1mexp": lambda x: mp.log(-mp.expm1(-x)),
    "loggamma": lambda x: mp.loggamma(x) if x > 0 else mp.nan,
    "elu": lambda x: x if x > 0 else mp.expm1(x),  # alpha = 1: continuous to the first derivative
}


def _lower_gamma(a, x):
    return mp.gammainc(a, 0, x, regularized=True)


def _upper_gamma(a, x):
    return mp.gammainc(a, x, mp.inf, regularized=True)


# function -> f(x, y) on mpf for elementwise functions of two numbers, in the argument order
# the libraries share (atan2(y, x), polygamma(n, x), zeta(x, q), igamma(a, x))
BINARY: Dict[str, Callable] = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
    "pow": lambda x, y: mp.power(x, y) if x > 0 or y == int(y) else mp.nan,
    "atan2": mp.atan2, "hypot": mp.hypot,
    "xlogy": lambda x, y: mp.mpf(0) if x == 0 else x * mp.log(y),
    "xlog1py": lambda x, y: mp.mpf(0) if x == 0 else x * mp.log1p(y),
    "logaddexp": lambda x, y: max(x, y) + mp.log1p(mp.exp(-abs(x - y))),
    "logaddexp2": lambda x, y: max(x, y) + mp.log(1 + mp.power(2, -abs(x - y)), 2),
    "polygamma": lambda n, x: mp.polygamma(int(n), x) if n == int(n) and n >= 0 else mp.nan,
    "zeta": lambda x, q: mp.zeta(x, q) if x > 1 else mp.nan,
    "igamma": _lower_gamma, "igammac": _upper_gamma,
    "squared_difference": lambda x, y: (x - y) ** 2,
    "rsub": lambda x, y: y - x, "rdiv": lambda x, y: y / x, "xdivy": lambda x, y: mp.mpf(0) if x == 0 else x / y,
    "beta": lambda a, b: mp.beta(a, b), "betaln": lambda a, b: mp.log(abs(mp.beta(a, b))),
    "poch": lambda z, m: mp.rf(z, m), "expn": lambda n, x: mp.expint(int(n), x) if n == int(n) and n >= 0 else mp.nan,
    "rel_entr": lambda x, y: (mp.mpf(0) if x == 0 and y >= 0 else x * mp.log(x / y)) if x >= 0 and y > 0 else mp.nan,
    "kl_div": lambda x, y: (y if x == 0 and y >= 0 else x * mp.log(x / y) - x + y) if x >= 0 and y > 0 else mp.nan,
    "boxcox": lambda x, lm: mp.log(x) if lm == 0 else mp.expm1(lm * mp.log(x)) / lm,
    "multigammaln": lambda a, d: (d * (d - 1) / 4 * mp.log(mp.pi) + mp.fsum(mp.loggamma(a - mp.mpf(j) / 2) for j in range(int(d))))
    if d == int(d) and d >= 1 and a > (d - 1) / 2 else mp.nan,
    "boxcox1p": lambda x, lm: mp.log1p(x) if lm == 0 else mp.expm1(lm * mp.log1p(x)) / lm,
}


# of three numbers
TERNARY: Dict[str, Callable] = {"hyp1f1": mp.hyp1f1}

FUNCTIONS: Dict[str, Callable] = {**UNARY, **BINARY, **TERNARY}


# ---- the table -----------------------------------------------------------------------------

USES = ("judge", "flat")  # a row's `use`: judge tails with --reference, or only settle a flat forward


def load_references(path: Path) -> Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...], str]]:
    """function -> (API globs, excluded globs, use) from `api_specs/references.yaml` (missing: none)."""
    fix = ("write `references: [{function: tanh, apis: ['*.tanh'], exclude: [], use: judge}]` with functions of "
           "reference.FUNCTIONS and a use of " + " or ".join(USES))
    rows = read_section(path, "references", fix)
    if rows is MISSING:
        return {}
    if not isinstance(rows, list):
        raise SpecError(str(path), "", "references", "expected a list of rows", fix)
    out = {}
    for row in rows:
        ok = (isinstance(row, dict) and row.get("function") in FUNCTIONS and isinstance(row.get("apis"), list)
              and all(isinstance(a, str) for a in row["apis"] + list(row.get("exclude", [])))
              and row.get("use", "judge") in USES)
        if not ok:
            raise SpecError(str(path), str(row)[:80], "references", "each row needs a function of reference.FUNCTIONS, "
                            "lists of API globs (apis, exclude) and, if any, a use of " + " or ".join(USES), fix)
        if row["function"] in out:
            raise SpecError(str(path), row["function"], "references", "the function has two rows", "merge them into one row")
        out[row["function"]] = (tuple(row["apis"]), tuple(row.get("exclude", [])), row.get("use", "judge"))
    return out


NUMBERS = (ArgKind.TENSOR, ArgKind.FLOAT, ArgKind.INT)


def arity(function: str) -> int:
    return 3 if function in TERNARY else 2 if function in BINARY else 1


def numbers(spec: ApiSpec) -> int:
    """How many numbers an elementwise function of this spec takes: its arguments are all tensors
    or scalars (at least one tensor), none structured; 0 for any other spec."""
    ok = (all(a.kind in NUMBERS and not a.structure for a in spec.args) and any(a.kind is ArgKind.TENSOR for a in spec.args)
          and not spec.overloads and not spec.module and not spec.random)
    return len(spec.args) if ok else 0


def flat_only(spec: ApiSpec) -> ApiSpec:
    """The spec as a campaign without --reference judges it: its reference settles only a flat
    forward (Note [exact reference] in oracle/compare.py)."""
    return replace(spec, reference_use="flat")


def with_references(specs: Sequence[ApiSpec], table: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...], str]]) -> List[ApiSpec]:
    """Each elementwise spec whose name a row covers, with the row function's arity, gets that
    row's function as `reference` (and the row's use: "flat" settles only a flat forward, even
    with --reference)."""
    def covers(apis: Tuple[str, ...], exclude: Tuple[str, ...], name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, g) for g in apis) and not any(fnmatch.fnmatchcase(name, g) for g in exclude)
    out = []
    for s in specs:
        n = numbers(s)
        hit = next((f for f, (apis, exclude, _) in table.items() if n == arity(f) and covers(apis, exclude, s.name)), "")
        if hit and not s.reference:  # a spec's own word first
            s = replace(s, reference=hit, reference_use="flat" if table[hit][2] == "flat" else s.reference_use)
        out.append(s)
    return out


# ---- the values ----------------------------------------------------------------------------

PRECISIONS = (DIGITS, 3 * DIGITS, 8 * DIGITS)  # working digits, raised until two levels agree


@dataclass(frozen=True)
class Local:
    """f and its partial derivatives at one point, rounded to float64: the gradient and Hessian
    over the differentiated arguments, and (one argument only) the third derivative, for the
    rounding floor."""

    value: float
    gradient: Tuple[float, ...]
    hessian: Tuple[Tuple[float, ...], ...]
    third: float = 0.0

    def flat(self) -> Tuple[float, ...]:
        return (self.value, *self.gradient, *(h for row in self.hessian for h in row), self.third)


def _at(f: Callable, xs: Sequence[float], wrt: Sequence[int], dps: int) -> Optional[Local]:
    with mp.workdps(dps):
        try:
            ms = [mp.mpf(float(x)) for x in xs]
            if len(ms) == 1:
                f0, f1, f2, f3 = mp.diffs(f, ms[0], 3)
                got = [f0, (f1,), ((f2,),), f3]
            else:
                def d(*at: int):
                    return mp.diff(f, ms, tuple(sum(1 for a in at if a == i) for i in range(len(ms))))
                got = [f(*ms), tuple(d(i) for i in wrt), tuple(tuple(d(i, j) for j in wrt) for i in wrt), mp.mpf(0)]
        except (ValueError, ZeroDivisionError, OverflowError, TypeError):
            return None
        values = [got[0], *got[1], *(h for row in got[2] for h in row), got[3]]
        if any(not isinstance(v, mp.mpf) or not mp.isfinite(v) for v in values):
            return None
        return Local(float(got[0]), tuple(float(g) for g in got[1]),
                     tuple(tuple(float(h) for h in row) for row in got[2]), float(got[3]))


def local(function: str, xs: Sequence[float], wrt: Sequence[int] = (0,)) -> Optional[Local]:
    """f and its derivatives in the arguments `wrt` at the exact binary values xs; None where
    the function is not real there (log of a negative number) or not finite.  Differentiation
    at DIGITS digits cannot resolve a tail where f is constant to 50 digits (erf at 16: f' ~
    1e-112): the working precision rises until two levels agree to 1e-25 relative, and a result
    with a zero derivative must agree at the highest level too (erf' at 26 is 0 to 150 digits,
    1e-294 at 400), else there is no reference."""
    f = FUNCTIONS[function]
    last = _at(f, xs, wrt, PRECISIONS[0])
    for dps in PRECISIONS[1:]:
        if last is None:
            return None
        now = _at(f, xs, wrt, dps)
        agree = now is not None and all(abs(a - b) <= 1e-25 * max(abs(a), abs(b)) for a, b in zip(now.flat(), last.flat()))
        if agree and (dps == PRECISIONS[-1] or all(now.flat()[1:-1])):
            return now
        last = now
    return None


def derivatives(function: str, x: float) -> Optional[Tuple[float, float, float]]:
    """(f, f', f'') of a function of one number at x (see `local`)."""
    got = local(function, (x,))
    return None if got is None else (got.value, got.gradient[0], got.hessian[0][0])


# Note [rounding floor]
# A library computes a derivative from the rounded output more often than not (tanh' = 1 - y^2,
# sigmoid' = s (1 - s), expm1' = y + 1): where f is flat to the dtype's resolution, the output
# does not carry the derivative, and tanh'(20) = 0 against the exact 1.7e-17 is the honest
# float64 answer, not a bug.  The floor is the change in the k-th derivative that a rounding of
# f(x) by a few units in the last place implies, to first order: C eps |f| |f^(k+1) / f'|; or
# that rounding an intermediate as large as the lower derivative implies, C eps |f^(k-1)| / |x|
# (silu'' = s'(x) (2 + x (1 - 2 s)) with s = sigmoid(40) rounded to 1: 0 against 8e-17).  Capped
# at |f^(k)|, so that a derivative off by more than its own size (a wrong sign, an inf) is always
# a finding.  Functions of two numbers get no floor.
ROUNDING_ULPS = 4.0


def _floor(got: Local, k: int, eps: float, x: float) -> float:
    if len(got.gradient) != 1 or got.gradient[0] == 0:
        return 0.0
    higher, own, lower = ((got.hessian[0][0], got.gradient[0], got.value) if k == 1
                          else (got.third, got.hessian[0][0], got.gradient[0]))
    output = abs(got.value) * abs(higher / got.gradient[0])
    intermediate = abs(lower) / max(1.0, abs(x))  # sigmoid(40) rounded to 1 inside silu''
    return min(ROUNDING_ULPS * eps * max(output, intermediate), abs(own))


MAX_POINTS = 256
Projection = Tuple[float, float, float]  # (value, sum of |terms|, rounding floor)


def projections(function: str, xs: Sequence[np.ndarray], wrt: Sequence[int], us: Sequence[np.ndarray],
                v: np.ndarray, ws: Sequence[np.ndarray], eps: float) -> Optional[Tuple[Projection, Projection]]:
    """(<v, J u>, v D2f [u, w]) of an elementwise function of the arrays xs (broadcast against
    each other), differentiated in the arguments `wrt` along us and ws (one per `wrt`), summed in
    50 digits, each with the sum of its terms' magnitudes and its rounding floor (Note [rounding
    floor]); None where any element has no real finite reference, or where there are more than
    MAX_POINTS elements (a tail costs up to a tenth of a second per element)."""
    shape = np.broadcast_shapes(*(np.shape(x) for x in xs))
    if int(np.prod(shape)) > MAX_POINTS:
        return None
    cols = [np.broadcast_to(np.asarray(a, dtype=np.float64), shape).ravel() for a in (*xs, v, *us, *ws)]
    n, m = len(xs), len(wrt)
    sums = [mp.mpf(0)] * 6
    cache: Dict[Tuple[float, ...], Optional[Local]] = {}
    with mp.workdps(DIGITS):
        for row in zip(*cols):
            point, vi, ui, wi = row[:n], row[n], row[n + 1:n + 1 + m], row[n + 1 + m:]
            got = cache[point] if point in cache else cache.setdefault(point, local(function, point, wrt))
            if got is None:
                return None
            t1 = mp.fsum(mp.mpf(vi) * mp.mpf(g) * mp.mpf(u) for g, u in zip(got.gradient, ui))
            t2 = mp.fsum(mp.mpf(vi) * mp.mpf(got.hessian[a][b]) * mp.mpf(ui[a]) * mp.mpf(wi[b])
                         for a in range(m) for b in range(m))
            f1 = abs(vi * ui[0]) * _floor(got, 1, eps, point[wrt[0]]) if m == 1 else 0.0
            f2 = abs(vi * ui[0] * wi[0]) * _floor(got, 2, eps, point[wrt[0]]) if m == 1 else 0.0
            for j, t in enumerate((t1, abs(t1), f1, t2, abs(t2), f2)):
                sums[j] += t
        return (float(sums[0]), float(sums[1]), float(sums[2])), (float(sums[3]), float(sums[4]), float(sums[5]))
