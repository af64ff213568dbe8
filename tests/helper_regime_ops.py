"""numpy_ref ops for the value-regime tests (named `helper_regime_ops:NAME`)."""
from __future__ import annotations

import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import unary


def _f(x):
    return np.log(1000.0 - x)  # NaN past its edge at x = 1000, which ordinary values never approach


def _d1(x):
    return -1 / (1000.0 - x)


def _d1_wrong_near_the_edge(x):
    return np.where(x > 900, 0.5, 1.0) * _d1(x)


# log(1000 - x) whose derivative is halved near its edge only, and its correct twin
log_edge_bug = unary(_f, _d1_wrong_near_the_edge, lambda x: -1 / (1000.0 - x) ** 2)
log_edge = unary(_f, _d1, lambda x: -1 / (1000.0 - x) ** 2)
