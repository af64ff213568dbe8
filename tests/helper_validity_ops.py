"""numpy_ref ops whose inputs are valid under a shape rule, for the validity-model tests (named
`helper_validity_ops:NAME`; tests/ is put on the worker's path)."""
from __future__ import annotations

import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import OPS, Op

_SIN = OPS["sin"]


def _matrix(x):
    if x.ndim != 2:
        raise ValueError(f"expected a matrix, got shape {x.shape}")  # as a library documents it
    return np.sin(x)


# sin of a matrix only: a shape constraint a trial's features show
sin_of_matrix = Op(f=_matrix, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)
