"""Two out-of-tree backends for the cross-library tests, named in NABLAFUZZ_ADAPTERS.

`twin` is numpy_ref under another name: it agrees with numpy_ref everywhere.  `planted`
deviates on purpose:
- `tanh`: a wrong derivative (1.05 sech^2) used by its VJP and its JVP alike, so the library
  agrees with itself and only finite differences or other libraries can tell;
- `exp`: a forward value off by 1e-6 relative, and derivatives consistent with it;
- `abs`: the subgradient +1 at 0 (JAX's choice), a documented convention in its spec dir;
- `reduce_sum(input, dim, keepdim)`: numpy_ref's sum under other argument names, correct.
"""
import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import OPS, NumpyRefAdapter, _sech2, _sum_t, linear, unary

PLANTED = dict(OPS)
PLANTED["tanh"] = unary(np.tanh, lambda x: 1.05 * _sech2(x), lambda x: -2.1 * np.tanh(x) * _sech2(x))
PLANTED["exp"] = unary(lambda x: np.exp(x) * (1 + 1e-6), lambda x: np.exp(x) * (1 + 1e-6),
                       lambda x: np.exp(x) * (1 + 1e-6))
PLANTED["abs"] = unary(np.abs, lambda x: np.where(x >= 0, 1.0, -1.0).astype(x.dtype), lambda x: np.zeros_like(x))
PLANTED["reduce_sum"] = linear(lambda x, dim=None, keepdim=False: np.sum(x, axis=dim, keepdims=keepdim),
                               lambda v, shape, dim=None, keepdim=False: _sum_t(v, shape, dim, keepdim),
                               {"name": "dim", "kind": "axis", "of": "x", "keyword": True, "optional": True},
                               {"name": "keepdim", "kind": "bool", "keyword": True})


class Twin(NumpyRefAdapter):
    library = "twin"


class Planted(NumpyRefAdapter):
    library = "planted"

    def resolve(self, api):
        return PLANTED[api] if api in PLANTED else super().resolve(api)


def make_twin():
    return Twin()


def make_planted():
    return Planted()
