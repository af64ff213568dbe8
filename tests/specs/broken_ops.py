"""Deliberately broken numpy_ref ops: the bugs a campaign must find, each exactly once.

Used through the user-function mechanism (`tests/specs/broken.yaml` names them as
`broken_ops:<name>`), the same way a user fuzzes a custom op.
"""
from __future__ import annotations

import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import Op, unary

# d/dx sin is wrong for x > 2 (in both modes: one wrong formula, caught by finite differences).
sin_tail = unary(np.sin, lambda x: np.where(x > 2, 1.1 * np.cos(x), np.cos(x)), lambda x: -np.sin(x))

# correct reverse mode, forward mode (JVP) off by a factor 2
tanh_fwd = Op(
    f=np.tanh,
    jvp=lambda xs, us: [2 * (1 - np.tanh(xs[0]) ** 2) * us[0]],
    vjp=lambda xs, vs: [(1 - np.tanh(xs[0]) ** 2) * vs[0]],
    hess=lambda xs, us, vs: [vs[0] * -2 * np.tanh(xs[0]) * (1 - np.tanh(xs[0]) ** 2) * us[0]],
)

# x^3 with a correct first derivative and a wrong second derivative (3x instead of 6x)
cube_second = unary(lambda x: x ** 3, lambda x: 3 * x ** 2, lambda x: 3 * x)

# exp whose reverse mode raises
def _raise(xs, vs):
    raise RuntimeError("backward of exp_raises is broken")


exp_raises = Op(f=np.exp, jvp=lambda xs, us: [np.exp(xs[0]) * us[0]], vjp=_raise,
                hess=lambda xs, us, vs: [vs[0] * np.exp(xs[0]) * us[0]])

# sin with unseeded noise in the forward computation: nondeterministic, not declared random
_noise = np.random.default_rng()
noisy_sin = unary(lambda x: np.sin(x) + 1e-3 * _noise.standard_normal(np.shape(x)), np.cos, lambda x: -np.sin(x))

# x^3 whose derivative is wrong only at the isolated smooth point x = 0 (returns 1 instead of 0)
cube_at_zero = unary(lambda x: x ** 3, lambda x: np.where(x == 0, 1.0, 3 * x ** 2), lambda x: 6 * x)
