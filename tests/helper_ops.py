"""numpy_ref ops for the filter tests (named `helper_ops:NAME`; tests/ is put on the worker's path).

Each is wrong (or ambiguous) in exactly one way, so one filter decides its fate.
"""
from __future__ import annotations

import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import Op


def _tanh_d1(x: np.ndarray) -> np.ndarray:
    d = 1 - np.tanh(x) ** 2
    return 1.5 * d if x.dtype == np.float32 else d


def _tanh_hess(xs, us, vs):
    t = np.tanh(xs[0])
    return [vs[0] * -2 * t * (1 - t ** 2) * us[0]]


# tanh whose JVP and VJP are 1.5x the truth in float32 only; float64 is right
tanh_f32_wrong = Op(f=np.tanh, jvp=lambda xs, us: [_tanh_d1(xs[0]) * us[0]],
                    vjp=lambda xs, vs: [_tanh_d1(xs[0]) * vs[0]], hess=_tanh_hess)

# |x| whose VJP uses the subgradient sign(0) = 0 and whose JVP uses +1 at 0: both are valid
# subgradient conventions, so at exact zeros rev and fwd disagree without either being wrong
abs_conventions = Op(f=np.abs,
                     jvp=lambda xs, us: [np.where(xs[0] >= 0, 1.0, -1.0).astype(xs[0].dtype) * us[0]],
                     vjp=lambda xs, vs: [np.sign(xs[0]) * vs[0]],
                     hess=lambda xs, us, vs: [np.zeros_like(xs[0])])

# x^2 with a VJP of 3x instead of 2x; overflows to inf for |x| > ~1.3e154 in float64
square_bad_vjp = Op(f=np.square, jvp=lambda xs, us: [2 * xs[0] * us[0]],
                    vjp=lambda xs, vs: [3 * xs[0] * vs[0]],
                    hess=lambda xs, us, vs: [2 * vs[0] * us[0]])

# tanh with the derivative taken from its output, 1 - tanh(x)^2, as deep-learning libraries
# do: correct, but in float32 no better than the rounding of tanh(x) itself in the tails
tanh_from_output = Op(f=np.tanh, jvp=lambda xs, us: [(1 - np.tanh(xs[0]) ** 2) * us[0]],
                      vjp=lambda xs, vs: [(1 - np.tanh(xs[0]) ** 2) * vs[0]], hess=_tanh_hess)

# sin whose derivative is computed as ((x + 0.1) - x) * 10 * cos(x): exact in float64, but in
# float32 at x = 2e4 the sum rounds (spacing 2^-9), leaving a 0.4% error that float32 explains
def _cancel_d1(x):
    return ((x + x.dtype.type(0.1)) - x) * x.dtype.type(10) * np.cos(x)


sin_f32_cancel = Op(f=np.sin, jvp=lambda xs, us: [_cancel_d1(xs[0]) * us[0]],
                    vjp=lambda xs, vs: [_cancel_d1(xs[0]) * vs[0]],
                    hess=lambda xs, us, vs: [-vs[0] * np.sin(xs[0]) * us[0]])

# a fine staircase, floor(x * 1e4) / 1e4, with derivative 0 (right between its steps): a
# finite-difference step of 2^-10 spans ~10 stairs and measures a slope of about 1
staircase = Op(f=lambda x: np.floor(x * 1e4) / 1e4, jvp=lambda xs, us: [np.zeros_like(xs[0])],
               vjp=lambda xs, vs: [np.zeros_like(xs[0])], hess=lambda xs, us, vs: [np.zeros_like(xs[0])])

# sin whose VJP uses cos(x) and whose JVP uses sin(x + pi/2): equal in exact arithmetic, and
# unrelated for huge x, where the rounding of x alone decides the value
sin_two_ways = Op(f=np.sin, jvp=lambda xs, us: [np.sin(xs[0] + xs[0].dtype.type(np.pi / 2)) * us[0]],
                  vjp=lambda xs, vs: [np.cos(xs[0]) * vs[0]], hess=lambda xs, us, vs: [-vs[0] * np.sin(xs[0]) * us[0]])


def _median_onehot(x):
    """The gradient of the median of a 1-d vector: all of it to the selected element."""
    g = np.zeros_like(x)
    if x.size:
        g.reshape(-1)[np.argsort(x.reshape(-1), kind="stable")[(x.size - 1) // 2]] = 1
    return g


# median of all elements; the gradient goes to the one selected element, as libraries do
median = Op(f=lambda x: np.median(x.reshape(-1)) if x.size % 2 else np.sort(x.reshape(-1))[(x.size - 1) // 2],
            jvp=lambda xs, us: [np.sum(_median_onehot(xs[0]) * us[0])],
            vjp=lambda xs, vs: [_median_onehot(xs[0]) * vs[0]],
            hess=lambda xs, us, vs: [np.zeros_like(xs[0])])

# fmod(1e150, y) in y: slope -trunc(1e150 / y), right, between jumps y * 1e-150 apart, far below
# one ulp of y: finite differences over the jumps converge to noise (Note [sub-ulp pieces])
fmod_huge_numerator = Op(f=lambda y: np.fmod(1e150, y), jvp=lambda xs, us: [-np.trunc(1e150 / xs[0]) * us[0]],
                         vjp=lambda xs, vs: [-np.trunc(1e150 / xs[0]) * vs[0]],
                         hess=lambda xs, us, vs: [np.zeros_like(xs[0])])


def _first_of_each(x: np.ndarray) -> np.ndarray:
    return np.unique(x.reshape(-1), return_index=True)[1]


def _unique_vjp(xs, vs):
    g = np.zeros(xs[0].size)
    g[_first_of_each(xs[0])] = vs[0]
    return [g.reshape(xs[0].shape)]


# the sorted distinct values: at a tie the output has fewer elements than after any step that
# splits it, so finite differences there compare outputs of other shapes (a size-1 output even
# broadcasts against two); AD follows the first of the tied elements
unique_values = Op(f=lambda x: np.unique(x), jvp=lambda xs, us: [us[0].reshape(-1)[_first_of_each(xs[0])]],
                   vjp=_unique_vjp, hess=lambda xs, us, vs: [np.zeros_like(xs[0])])

# sin whose VJP returns a column (n, 1) for an input of shape (n,): projecting it broadcasts to
# (n, n) without an error, so only a shape check sees it
sin_column_vjp = Op(f=np.sin, jvp=lambda xs, us: [np.cos(xs[0]) * us[0]],
                    vjp=lambda xs, vs: [(np.cos(xs[0]) * vs[0])[:, None]],
                    hess=lambda xs, us, vs: [-vs[0] * np.sin(xs[0]) * us[0]])
