"""JAX side of model fuzzing (worker/models.py): forward pass, gradients by jax.grad (jitted,
one compile per batch shape and dtype), forward mode by jax.jvp; the `compiled` objective
compares jax.jit's gradient with the op-by-op one (jax.disable_jit)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)  # float64 finite differences (the adapter sets it too)


@dataclass
class Built:
    fn: Any
    params: Dict[str, Any]
    seeds: Tuple[Any, Any]
    cast: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    kernels: Dict[str, Any] = field(default_factory=dict)


def _np(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype.kind == "f" or a.dtype == jnp.bfloat16 else a


class ModelOps:
    def wrap(self, fn: Any, params: Dict[str, Any], seeds: Tuple[Any, Any]) -> Built:
        return Built(fn, dict(params), seeds)

    def shapes(self, m: Built) -> List[Tuple[int, ...]]:
        return [tuple(p.shape) for p in m.params.values()]

    def _params(self, m: Built, dtype: str) -> Dict[str, Any]:
        if dtype not in m.cast:
            m.cast[dtype] = {k: jnp.asarray(v).astype(dtype) for k, v in m.params.items()}
        return m.cast[dtype]

    def _kernel(self, m: Built, name: str) -> Any:
        if name not in m.kernels:
            fn = m.fn

            def loss_sum(params: Any, x: Any, y: Any) -> Any:
                out = fn(params, x, y)
                return out["loss"].sum(), out
            grads = jax.grad(loss_sum, argnums=(0, 1), has_aux=True)
            m.kernels["forward"] = jax.jit(fn)
            m.kernels["gradients"] = jax.jit(grads)
            m.kernels["eager"] = grads
            m.kernels["jvp"] = jax.jit(lambda p, x, y, u: jax.jvp(lambda xs: fn(p, xs, y)["loss"], (x,), (u,))[1])
        return m.kernels[name]

    def forward(self, m: Built, x: np.ndarray, y: np.ndarray, dtype: str,
                shift: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """Outputs at the parameters (plus `shift`, per parameter name)."""
        params = self._params(m, dtype)
        if shift:
            params = {k: v + jnp.asarray(shift[k], dtype=dtype) if k in shift else v for k, v in params.items()}
        out = self._kernel(m, "forward")(params, jnp.asarray(x, dtype=dtype), jnp.asarray(y))
        return {k: _np(v) for k, v in out.items()}

    def gradients(self, m: Built, x: np.ndarray, y: np.ndarray,
                  dtype: str) -> Tuple[Dict[str, np.ndarray], np.ndarray, Dict[str, np.ndarray]]:
        (gp, gx), out = self._kernel(m, "gradients")(self._params(m, dtype), jnp.asarray(x, dtype=dtype),
                                                      jnp.asarray(y))
        return {k: _np(v) for k, v in out.items()}, _np(gx), {k: _np(g) for k, g in gp.items()}

    def jvp(self, m: Built, x: np.ndarray, y: np.ndarray, u: np.ndarray, dtype: str) -> np.ndarray:
        return _np(self._kernel(m, "jvp")(self._params(m, dtype), jnp.asarray(x, dtype=dtype), jnp.asarray(y),
                                          jnp.asarray(u, dtype=dtype)))

    def jvp_params(self, m: Built, x: np.ndarray, y: np.ndarray, w: Dict[str, np.ndarray], dtype: str) -> np.ndarray:
        """Per example: the loss's derivative along w in parameter space (jax.jvp)."""
        params = self._params(m, dtype)
        tangents = {k: jnp.asarray(w[k], dtype=dtype) if k in w else jnp.zeros_like(v) for k, v in params.items()}
        xs, ys = jnp.asarray(x, dtype=dtype), jnp.asarray(y)
        return _np(jax.jvp(lambda p: m.fn(p, xs, ys)["loss"], (params,), (tangents,))[1])

    def compiled_gradients(self, m: Built, x: np.ndarray, y: np.ndarray, dtype: str) -> Tuple[np.ndarray, np.ndarray]:
        """(loss, d(sum loss)/dx) op by op, for comparison with the jitted gradients above
        (here the jitted kernel is the main path, so the eager one is the variant)."""
        with jax.disable_jit():
            (_, gx), out = self._kernel(m, "eager")(self._params(m, dtype), jnp.asarray(x, dtype=dtype), jnp.asarray(y))
        return _np(out["loss"]), _np(gx)
