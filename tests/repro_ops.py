"""numpy_ref ops for the repro and triage tests: one correct, two deliberately wrong.

Named in reports as `repro_ops:NAME`; the tests put this directory on PYTHONPATH.
"""
from dataclasses import replace

import numpy as np

from nablafuzz.adapters.numpy_ref import OPS, Op, unary

SIN: Op = unary(np.sin, np.cos, lambda x: -np.sin(x))

# the VJP is twice the truth; JVP, finite differences and the second derivative are right
DOUBLE_VJP_SIN: Op = replace(SIN, vjp=lambda xs, vs: [2 * np.cos(xs[0]) * vs[0]])

# the second derivative is three times the truth; first order is right
TRIPLE_HESS_SIN: Op = replace(SIN, hess=lambda xs, us, vs: [-3 * vs[0] * np.sin(xs[0]) * us[0]])

# a two-input op with a keyword parameter, wrong VJP for its second input
def _scaled_mul(x, y, alpha=1.0):
    return alpha * x * y


SCALED_MUL: Op = Op(
    f=_scaled_mul,
    jvp=lambda xs, us, alpha=1.0: [alpha * (us[0] * xs[1] + xs[0] * us[1])],
    vjp=lambda xs, vs, alpha=1.0: [alpha * xs[1] * vs[0], -alpha * xs[0] * vs[0]],
    hess=lambda xs, us, vs, alpha=1.0: [alpha * vs[0] * us[1], alpha * vs[0] * us[0]],
)

__all__ = ["OPS", "SIN", "DOUBLE_VJP_SIN", "TRIPLE_HESS_SIN", "SCALED_MUL"]
