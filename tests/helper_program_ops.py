"""numpy_ref ops for the program tests (named `helper_program_ops:NAME`): bugs that only a
program of two ops reaches.

- `clamp0` is clamp(x, min=0): it saturates (its output is exactly 0 for every negative input,
  with a zero tangent there), and at the bound itself its derivative is 1 (torch.clamp's
  convention: the gradient passes at the bound), so an input exactly 0 hands the next op an exact
  0 with a live tangent.
- `xsin` is x sin(x) with a correct derivative; `xsin_bad` computes the same derivative from its
  output, y / x + x cos(x), with a placeholder 1 where y / x is 0/0: exactly at 0, where the true
  derivative is 0 (a custom rule that reuses its output).  Its spec's domain (positive) never
  draws 0, so only a program such as `clamp0>xsin_bad` reaches it; `xsin_bad` alone on that
  intermediate value explains the finding, so it is reported against `xsin_bad`.
- `zero_tangent` is sin whose JVP rule treats an exactly zero tangent as "no tangent given" and
  substitutes the unit tangent.  Alone (random tangents, never 0) it is right everywhere; after
  `clamp0`, whose tangent is exactly 0 where it saturates, its forward mode is wrong.  Neither op
  alone explains that, so the finding is the program's.
"""
from __future__ import annotations

import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import Op, unary

clamp0 = unary(lambda x: np.maximum(x, 0), lambda x: (x >= 0).astype(x.dtype), np.zeros_like)


def _xsin(x):
    return x * np.sin(x)


def _xsin_d2(x):
    return 2 * np.cos(x) - x * np.sin(x)


def _xsin_d1_from_output(x):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x == 0, 1.0, _xsin(x) / x + x * np.cos(x))


xsin = unary(_xsin, lambda x: np.sin(x) + x * np.cos(x), _xsin_d2)
xsin_bad = unary(_xsin, _xsin_d1_from_output, _xsin_d2)

zero_tangent = Op(
    f=np.sin,
    jvp=lambda xs, us: [np.where(us[0] == 0, np.cos(xs[0]), np.cos(xs[0]) * us[0])],
    vjp=lambda xs, vs: [np.cos(xs[0]) * vs[0]],
    hess=lambda xs, us, vs: [-np.sin(xs[0]) * us[0] * vs[0]],
)
