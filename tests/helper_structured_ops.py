"""numpy_ref ops for the structured-input tests (named `helper_structured_ops:NAME`)."""
from __future__ import annotations

import numpy as np

from nablafuzz.adapters.numpy_ref import Op


def _is_lower_factor(x: np.ndarray) -> bool:
    """Lower triangular with a non-zero strictly lower part (never drawn by N(0, 1) values)."""
    return x.ndim >= 2 and np.array_equal(x, np.tril(x)) and bool(np.any(np.tril(x, -1) != 0))


def _square_sum_vjp(wrong_on_lower: bool):
    def vjp(xs, vs):
        x = xs[0]
        g = 2 * x * vs[0]
        return [1.5 * g if wrong_on_lower and _is_lower_factor(x) else g]
    return vjp


def _f(x):
    return x * x


def _jvp(xs, us):
    return [2 * xs[0] * us[0]]


def _hess(xs, us, vs):
    return [2 * us[0] * vs[0]]


# x*x whose reverse mode is 1.5x too large only for a lower-triangular factor
square_wrong_on_lower = Op(f=_f, jvp=_jvp, vjp=_square_sum_vjp(True), hess=_hess)
# the correct twin
square = Op(f=_f, jvp=_jvp, vjp=_square_sum_vjp(False), hess=_hess)


def _from_lower(x):
    """The symmetric matrix an eigh-like op reads: the lower triangle, mirrored."""
    return np.tril(x) + np.swapaxes(np.tril(x, -1), -1, -2)


# sum of squares of the symmetric matrix read from the lower triangle, whose derivatives follow
# the symmetric convention of eigh-like ops (the gradient is 2S, a symmetric matrix): right along
# symmetric directions, which is the op's contract, and unlike finite differences along others
sym_sq = Op(f=lambda x: np.sum(_from_lower(x) ** 2, axis=(-1, -2)),
            jvp=lambda xs, us: [np.sum(2 * _from_lower(xs[0]) * us[0], axis=(-1, -2))],
            vjp=lambda xs, vs: [2 * _from_lower(xs[0]) * vs[0][..., None, None]],
            hess=lambda xs, us, vs: [2 * us[0] * vs[0][..., None, None]])
