"""JAX side of model fuzzing (worker/models.py): forward pass, gradients by jax.grad (jitted,
one compile per batch shape and dtype), forward mode by jax.jvp; the `compiled` objective
compares jax.jit's gradient with the op-by-op one (jax.disable_jit)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    programs: Dict[bool, Any] = field(default_factory=dict)  # traced graphs, evaluable (numerics)


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

    def program(self, m: Built, backward: bool) -> "Program":
        key = ("program", backward)  # one per graph: its compiled kernels serve every search
        if key not in m.kernels:
            m.kernels[key] = Program(m, backward)
        return m.kernels[key]

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
    program: Dict[int, Any] = {}
    arguments = []
    for name, var in zip(names, closed.jaxpr.invars):
        ids[var] = len(nodes)
        arguments.append([name, len(nodes)])
        nodes.append([len(nodes), "argument", [], list(var.aval.shape), str(var.aval.dtype), [], [], False, ""])
    for var, value in zip(closed.jaxpr.constvars, closed.consts):
        ids[var] = len(nodes)
        a = np.asarray(value)
        program[len(nodes)] = ("const", value)
        nodes.append([len(nodes), "constant", [], list(a.shape), str(a.dtype),
                      [["min", float(a.min()) if a.size else 0.0], ["max", float(a.max()) if a.size else 0.0]], [],
                      False, ""])
    _flatten(closed.jaxpr.eqns, ids, nodes, False, program)
    outputs = [ids[v] for v in closed.jaxpr.outvars if v in ids]
    m.programs[backward] = (program, dict((n, i) for n, i in arguments), outputs, len(nodes))
    return {"nodes": nodes, "arguments": arguments, "outputs": outputs}


def _flatten(eqns: Any, ids: Dict[Any, int], nodes: List[list], backward: bool, program: Dict[int, Any]) -> None:
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
                program[len(nodes)] = ("const", value)
                nodes.append([len(nodes), "constant", [], list(a.shape), str(a.dtype),
                              [["min", float(a.min()) if a.size else 0.0], ["max", float(a.max()) if a.size else 0.0]],
                              [], bwd, ""])
            outer = [v for v in eqn.invars][-len(jaxpr.invars):] if jaxpr.invars else []
            for iv, ov in zip(jaxpr.invars, outer):
                if isinstance(ov, Literal):
                    ids[iv] = len(nodes)
                    program[len(nodes)] = ("const", ov.val)
                    nodes.append([len(nodes), "constant", [], [], str(ov.aval.dtype),
                                  [["min", float(ov.val)], ["max", float(ov.val)]], [], bwd, ""])
                else:
                    ids[iv] = ids[ov]
            _flatten(jaxpr.eqns, ids, nodes, bwd, program)
            for ov, iv in zip(eqn.outvars, jaxpr.outvars):
                if isinstance(iv, Literal):
                    ids[ov] = len(nodes)
                    program[len(nodes)] = ("const", iv.val)
                    nodes.append([len(nodes), "constant", [], [], str(iv.aval.dtype),
                                  [["min", float(iv.val)], ["max", float(iv.val)]], [], bwd, ""])
                else:
                    ids[ov] = ids[iv]
            continue
        inputs, literals, operands = [], [], []
        for pos, v in enumerate(eqn.invars):
            if isinstance(v, Literal):
                inputs.append(-1)
                literals.append([pos, float(np.asarray(v.val).reshape(-1)[0]) if np.asarray(v.val).size else 0.0])
                operands.append(("literal", v.val))
            else:
                inputs.append(ids[v])
                operands.append(("node", ids[v]))
        attrs = [[k, _attr(eqn.params[k])] for k in _KEPT_ATTRS if k in eqn.params]
        source = _source(eqn)
        for k, out in enumerate(eqn.outvars):
            ids[out] = len(nodes)
            program[len(nodes)] = ("bind", eqn.primitive, dict(eqn.params), k, operands)
            nodes.append([len(nodes), eqn.primitive.name, inputs, list(out.aval.shape), str(out.aval.dtype), attrs,
                          literals, bwd, source])


def _clamped(v: Any, lo: float, hi: float, away: float) -> Any:
    return jnp.where(v >= 0, jnp.maximum(v, away), jnp.minimum(v, -away)) if away > 0 else jnp.clip(v, lo, hi)


def evaluate(m: Built, backward: bool, params: Dict[str, Any], x: Any, y: Any, upto: Optional[int] = None,
             clamps: Sequence[Tuple[int, int, float, float, float]] = ()) -> Dict[int, Any]:
    """Run a traced graph (trace() first) node by node with the primitives JAX recorded, up to
    node `upto`.  Each clamp (node, operand position, low, high, away) clips the tensor feeding
    that operand for every node that reads it (the derivative's operations included, as in user
    code that clamps before the operation), or with away > 0 pushes it that far from 0 keeping
    its sign: a suggested fix."""
    program, args, _, n = m.programs[backward]
    env: Dict[int, Any] = {}
    targets: Dict[int, Tuple[float, float, float]] = {}
    for node, pos, lo, hi, away in clamps:
        step = program.get(node)
        if step is not None and step[0] == "bind" and step[4][pos][0] == "node":
            targets[step[4][pos][1]] = (lo, hi, away)
    for name, i in args.items():
        env[i] = params[name[len("param:"):]] if name.startswith("param:") else (x if name == "x" else y)
        if i in targets:  # the clamped tensor is an argument (the input itself)
            env[i] = _clamped(env[i], *targets[i])
    for i in range(n if upto is None else upto + 1):
        if i in env or i not in program:
            continue
        step = program[i]
        if step[0] == "const":
            env[i] = step[1]
            continue
        _, prim, kwargs, k, operands = step
        vals = [env[v] if kind == "node" else v for kind, v in operands]
        out = prim.bind(*vals, **kwargs)
        env[i] = out[k] if prim.multiple_results else out
        if i in targets:
            env[i] = _clamped(env[i], *targets[i])
    return env


def _fails(m: Built) -> Any:
    """jit: does the loss or its gradient (input, parameters) have a non-finite entry?"""
    if "fails" not in m.kernels:
        def total(p: Any, x: Any, y: Any) -> Any:
            return m.fn(p, x, y)["loss"].sum()

        def fails(p: Any, x: Any, y: Any) -> Any:
            value, (gp, gx) = jax.value_and_grad(total, argnums=(0, 1))(p, x, y)
            bad = ~jnp.isfinite(value) | ~jnp.all(jnp.isfinite(gx))
            for g in jax.tree_util.tree_leaves(gp):
                bad = bad | ~jnp.all(jnp.isfinite(g))
            return bad
        m.kernels["fails"] = jax.jit(fails)
    return m.kernels["fails"]


class Program:
    """A traced graph for worker/numerics.py's search (`nablafuzz numerics --confirm`)."""

    def __init__(self, m: Built, backward: bool):
        xs, ys = (np.asarray(a) for a in m.seeds)
        if backward not in m.programs:
            trace(m, xs[:1].astype(np.float32), ys[:1].astype(np.int64), backward)
        self.m, self.backward = m, backward
        self.seeds = (xs.astype(np.float32), ys.astype(np.int64))
        self.params = {k: np.asarray(v) for k, v in m.params.items()}
        self.verify = True in m.programs  # fixes are checked on the gradient's graph when it was traced
        self.kernels: Dict[Any, Any] = {}

    def _operand_id(self, node: int, pos: int) -> int:
        return self.m.programs[self.backward][0][node][4][pos][1]

    def _operand_fn(self, node: int, pos: int) -> Any:
        target = self._operand_id(node, pos)
        return lambda p, x, y: evaluate(self.m, self.backward, p, x, y, upto=target)[target]

    def operand(self, p: Any, x: Any, y: Any, node: int, pos: int) -> np.ndarray:
        key = ("operand", node, pos)
        if key not in self.kernels:
            self.kernels[key] = jax.jit(self._operand_fn(node, pos))
        return np.asarray(self.kernels[key](p, x, y))

    def step(self, p: Any, x: Any, y: Any, node: int, pos: int, kind: str, limit: float) -> Any:
        key = ("step", node, pos, kind, limit)
        if key not in self.kernels:
            f = self._operand_fn(node, pos)

            def distance(q: Any, xs: Any, ys: Any) -> Any:
                v = f(q, xs, ys).astype(jnp.float32)
                return {"low": jnp.min(v) - limit, "high": limit - jnp.max(v), "zero": jnp.min(jnp.abs(v))}[kind]
            self.kernels[key] = jax.jit(jax.value_and_grad(distance, argnums=(0, 1)))
        v, (gp, gx) = self.kernels[key](p, x, y)
        return float(v), {k: np.asarray(g) for k, g in gp.items()}, np.asarray(gx)

    def fails(self, p: Any, x: Any, y: Any) -> bool:
        return bool(_fails(self.m)(p, x, y))

    def outputs(self, p: Any, x: Any, y: Any, clamps: Optional[Sequence[Tuple[int, int, float, float, float]]]
                ) -> List[np.ndarray]:
        env = evaluate(self.m, self.verify, {k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(x), jnp.asarray(y),
                       clamps=clamps or ())
        return [np.asarray(env[o]) for o in self.m.programs[self.verify][2]]

    def origins(self, p: Any, x: Any, y: Any, clamps: Sequence[Tuple[int, int, float, float, float]]) -> List[int]:
        """The verification graph's nodes where a non-finite value arises (from finite operands)."""
        env = evaluate(self.m, self.verify, {k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(x), jnp.asarray(y),
                       clamps=clamps)
        program = self.m.programs[self.verify][0]
        finite = {i: bool(np.isfinite(np.asarray(v)).all()) for i, v in env.items()}
        return [i for i, step in sorted(program.items()) if step[0] == "bind" and i in env and not finite[i]
                and all(finite[v] for kind, v in step[4] if kind == "node")]
