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

    def numpy_params(self, m: Built) -> Dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in m.params.items()}

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

    def trace(self, m: Built, x: np.ndarray, y: np.ndarray, backward: bool) -> Dict[str, Any]:
        return trace(m, x, y, backward)

    def compiled_gradients(self, m: Built, x: np.ndarray, y: np.ndarray, dtype: str) -> Tuple[np.ndarray, np.ndarray]:
        """(loss, d(sum loss)/dx) op by op, for comparison with the jitted gradients above
        (here the jitted kernel is the main path, so the eager one is the variant)."""
        with jax.disable_jit():
            (_, gx), out = self._kernel(m, "eager")(self._params(m, dtype), jnp.asarray(x, dtype=dtype), jnp.asarray(y))
        return _np(out["loss"]), _np(gx)


# ---- graphs for `nablafuzz numerics` (core/graph.py) ----------------------------------------

_SUBJAXPRS = ("jaxpr", "call_jaxpr", "fun_jaxpr")  # pjit, custom_jvp_call, custom_vjp_call: inlined
_KEPT_ATTRS = ("axes", "y", "shape", "dimension_numbers", "new_sizes", "permutation", "broadcast_dimensions",
               "dimension", "new_dtype", "min", "max")


def _attr(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return v.item() if hasattr(v, "item") else v
    if isinstance(v, tuple) and all(isinstance(e, (int, np.integer)) for e in v):
        return tuple(int(e) for e in v)
    return str(v)


def _source(eqn: Any) -> str:
    """The user's frame that made the equation (file:line), as JAX recorded it."""
    try:
        from jax._src import source_info_util
        frame = source_info_util.user_frame(eqn.source_info.traceback)
        return f"{frame.file_name}:{frame.start_line}" if frame else ""
    except Exception:  # noqa: BLE001 - a private API that may move: the source line is optional
        return ""


def trace(m: Built, x: np.ndarray, y: np.ndarray, backward: bool) -> Dict[str, Any]:
    """The loss (summed over the batch) as a flat graph, or its gradient w.r.t. the input and
    the parameters (the forward equations included); equations under `transpose(...)` in JAX's
    name stack are the backward pass."""
    params = m.params

    def loss(p: Any, xs: Any, ys: Any) -> Any:
        return m.fn(p, xs, ys)["loss"].sum()
    f = jax.grad(loss, argnums=(0, 1)) if backward else loss
    closed = jax.make_jaxpr(f)(params, jnp.asarray(x), jnp.asarray(y))
    names = [f"param:{k}" for k in sorted(params)] + ["x", "y"]  # make_jaxpr flattens dicts by sorted key
    nodes: List[list] = []
    ids: Dict[Any, int] = {}
    arguments = []
    for name, var in zip(names, closed.jaxpr.invars):
        ids[var] = len(nodes)
        arguments.append([name, len(nodes)])
        nodes.append([len(nodes), "argument", [], list(var.aval.shape), str(var.aval.dtype), [], [], False, ""])
    for var, value in zip(closed.jaxpr.constvars, closed.consts):
        ids[var] = len(nodes)
        a = np.asarray(value)
        nodes.append([len(nodes), "constant", [], list(a.shape), str(a.dtype),
                      [["min", float(a.min()) if a.size else 0.0], ["max", float(a.max()) if a.size else 0.0]], [],
                      False, ""])
    _flatten(closed.jaxpr.eqns, ids, nodes, False)
    outputs = [ids[v] for v in closed.jaxpr.outvars if v in ids]
    return {"nodes": nodes, "arguments": arguments, "outputs": outputs}


def _flatten(eqns: Any, ids: Dict[Any, int], nodes: List[list], backward: bool) -> None:
    from jax.extend.core import Literal
    for eqn in eqns:
        bwd = backward or "transpose" in str(eqn.source_info.name_stack)
        inner = next((eqn.params[k] for k in _SUBJAXPRS if k in eqn.params), None)
        if inner is not None:
            jaxpr = getattr(inner, "jaxpr", inner)
            consts = getattr(inner, "consts", [])
            for var, value in zip(jaxpr.constvars, consts):
                a = np.asarray(value)
                ids[var] = len(nodes)
                nodes.append([len(nodes), "constant", [], list(a.shape), str(a.dtype),
                              [["min", float(a.min()) if a.size else 0.0], ["max", float(a.max()) if a.size else 0.0]],
                              [], bwd, ""])
            outer = [v for v in eqn.invars][-len(jaxpr.invars):] if jaxpr.invars else []
            for iv, ov in zip(jaxpr.invars, outer):
                if isinstance(ov, Literal):
                    ids[iv] = len(nodes)
                    nodes.append([len(nodes), "constant", [], [], str(ov.aval.dtype),
                                  [["min", float(ov.val)], ["max", float(ov.val)]], [], bwd, ""])
                else:
                    ids[iv] = ids[ov]
            _flatten(jaxpr.eqns, ids, nodes, bwd)
            for ov, iv in zip(eqn.outvars, jaxpr.outvars):
                if isinstance(iv, Literal):
                    ids[ov] = len(nodes)
                    nodes.append([len(nodes), "constant", [], [], str(iv.aval.dtype),
                                  [["min", float(iv.val)], ["max", float(iv.val)]], [], bwd, ""])
                else:
                    ids[ov] = ids[iv]
            continue
        inputs, literals = [], []
        for pos, v in enumerate(eqn.invars):
            if isinstance(v, Literal):
                inputs.append(-1)
                literals.append([pos, float(np.asarray(v.val).reshape(-1)[0]) if np.asarray(v.val).size else 0.0])
            else:
                inputs.append(ids[v])
        attrs = [[k, _attr(eqn.params[k])] for k in _KEPT_ATTRS if k in eqn.params]
        source = _source(eqn)
        for out in eqn.outvars:
            ids[out] = len(nodes)
            nodes.append([len(nodes), eqn.primitive.name, inputs, list(out.aval.shape), str(out.aval.dtype), attrs,
                          literals, bwd, source])
