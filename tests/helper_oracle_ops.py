"""numpy_ref ops for the oracle tests (named `helper_oracle_ops:NAME`): non-finite derivatives,
errors in modes a spec does not declare."""
from __future__ import annotations

import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import Op


def _sq_vjp(nan_at_smooth_points: bool):
    def vjp(xs, vs):
        x = xs[0]
        g = 2 * x * vs[0]
        if nan_at_smooth_points:  # 0 * inf inside the rule wherever x is an exact integer
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(x == np.round(x), 0 * (1 / (x - np.round(x))), g)
        return [g]
    return vjp


def _square(vjp, jvp=None) -> Op:
    return Op(f=lambda x: x * x, jvp=jvp or (lambda xs, us: [2 * xs[0] * us[0]]), vjp=vjp,
              hess=lambda xs, us, vs: [2 * us[0] * vs[0]])


# x*x whose reverse mode is NaN at exact integers (a smooth point), and its correct twin
square_nan_at_integers = _square(_sq_vjp(True))
square = _square(_sq_vjp(False))


def _jvp_raises(xs, us):
    raise ValueError(f"operands could not be broadcast together with shapes {xs[0].shape} (3,)")


def _jvp_unsupported(xs, us):
    raise NotImplementedError("forward mode is not implemented for this op")


# x*x whose forward mode (not declared by its spec) fails with an internal shape error, and the
# twin that declares it unsupported in the library's own words
square_fwd_internal_error = _square(_sq_vjp(False), _jvp_raises)
square_fwd_not_implemented = _square(_sq_vjp(False), _jvp_unsupported)


def _tanh_op(tail_error: float) -> Op:
    """tanh whose derivative is right for |x| < 10 and `tail_error` relative off beyond: in the
    tail (1e-8 and below) float64 finite differences round to noise and cannot tell."""
    def d1(x):
        d = 1 / np.cosh(x) ** 2
        return np.where(np.abs(x) < 10, d, d * (1 + tail_error))

    def d2(x):
        return -2 * np.tanh(x) * d1(x)
    return Op(f=np.tanh, jvp=lambda xs, us: [d1(xs[0]) * us[0]], vjp=lambda xs, vs: [d1(xs[0]) * vs[0]],
              hess=lambda xs, us, vs: [vs[0] * d2(xs[0]) * us[0]])


tanh_tail_bug = _tanh_op(1e-3)
tanh_exact = _tanh_op(0.0)

# x*x whose VJP is 2.5 x: wrong everywhere, in first order and in every composition built on it
square_vjp_off = _square(lambda xs, vs: [2.5 * xs[0] * vs[0]])
