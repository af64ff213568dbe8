"""JAX adapter (runs inside the jax worker only).

`jax_enable_x64` is switched on before any array exists (JAX otherwise computes in float32
silently).  Reverse mode is `jax.vjp`, forward mode `jax.jvp`; both nest freely, so every
composition of `ComposableAdapter` applies as is.  Spec derivation by probing and the `jit`
scenario belong to the JAX issue and are not here yet.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after x64 is on)
import numpy as np  # noqa: E402

from .base import ComposableAdapter, UnknownApi, resolve_user_function  # noqa: E402


def _resolve_dotted(api: str) -> Any:
    """`jax.scipy.special.erf`: import the longest module prefix, then walk attributes."""
    parts = api.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
            if obj is None:
                raise UnknownApi(f"jax has no {api!r}")
        return obj
    raise UnknownApi(f"jax has no {api!r}")


def _float0_to_zero(g: Any, x: Any) -> Any:
    """Symbolic zeros (float0 cotangents of integer inputs) as real zeros, in one place."""
    return jnp.zeros_like(x) if getattr(g, "dtype", None) == jax.dtypes.float0 else g


class JaxAdapter(ComposableAdapter):
    library = "jax"

    def versions(self) -> Dict[str, str]:
        import jaxlib
        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": np.__version__}

    def resolve(self, api: str) -> Any:
        if ":" in api:
            return resolve_user_function(api)
        if api.split(".")[0] != "jax":
            raise UnknownApi(f"{api!r} is not a jax API (expected jax.* or module:function)")
        fn = _resolve_dotted(api)
        if not callable(fn):
            raise UnknownApi(f"{api!r} is not callable")
        return fn

    def from_numpy(self, a: np.ndarray, dtype: str, grad: bool = False) -> Any:
        return jnp.asarray(np.asarray(a, dtype=dtype))

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t)

    def dtype(self, name: str) -> Any:
        return jnp.dtype(name)

    def seed(self, seed: int) -> None:
        """JAX has no global RNG: random APIs take explicit keys, which the spec supplies."""

    def dot(self, a: List[Any], b: List[Any]) -> Any:
        return sum((jnp.sum(x * y) for x, y in zip(a, b)), jnp.zeros(()))

    def vjp(self, f, xs, cts, create_graph):
        outs, pullback = jax.vjp(lambda *a: tuple(f(list(a))), *xs)
        grads = pullback(tuple(jnp.asarray(c, dtype=o.dtype) for c, o in zip(cts, outs)))
        return list(outs), [_float0_to_zero(g, x) for g, x in zip(grads, xs)]

    def jvp(self, f, xs, tangents):
        outs, tans = jax.jvp(lambda *a: tuple(f(list(a))), tuple(xs),
                             tuple(jnp.asarray(t, dtype=x.dtype) for t, x in zip(tangents, xs)))
        return list(outs), list(tans)


def make_adapter() -> JaxAdapter:
    return JaxAdapter()
