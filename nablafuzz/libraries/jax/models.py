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

    def confirm(self, m: Built, request: Dict[str, Any]) -> Dict[str, Any]:
        return confirm(m, request)

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


def evaluate(m: Built, backward: bool, params: Dict[str, Any], x: Any, y: Any, upto: Optional[int] = None,
             clamp: Optional[Tuple[int, int, float, float, float]] = None) -> Dict[int, Any]:
    """Run a traced graph (trace() first) node by node with the primitives JAX recorded, up to
    node `upto`; `clamp` = (node, operand position, low, high, away) clips the tensor feeding that
    operand, for every node that reads it (the derivative's operations included, as in user code
    that clamps before the operation), or with away > 0 pushes it that far from 0 keeping its
    sign: a suggested fix."""
    program, args, _, n = m.programs[backward]
    env: Dict[int, Any] = {}
    target = -1
    if clamp is not None:
        kind, ref = program[clamp[0]][4][clamp[1]] if program.get(clamp[0], ("",))[0] == "bind" else ("", -1)
        target = ref if kind == "node" else -1
    for name, i in args.items():
        env[i] = params[name[len("param:"):]] if name.startswith("param:") else (x if name == "x" else y)
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
        if i == target:
            v, away = env[i], clamp[4]
            env[i] = (jnp.where(v >= 0, jnp.maximum(v, away), jnp.minimum(v, -away)) if away > 0
                      else jnp.clip(v, clamp[2], clamp[3]))
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


def confirm(m: Built, request: Dict[str, Any]) -> Dict[str, Any]:
    """Search for an input (then parameters too) that drives node's operand into its invalid
    set and makes the loss or its gradient non-finite: projected sign-gradient steps on the
    operand's distance to the invalid set, with bisection onto a sign change where the invalid
    set is {0}; and uniform sampling of the input box as the baseline.  With `clamp`, also
    whether the clamp makes the found input finite and how much it changes outputs at seeds."""
    import time
    node, pos, kind, limit = int(request["node"]), int(request["position"]), request["kind"], float(request["limit"])
    backward, box = bool(request["backward"]), request["box"]
    xs, ys = (np.asarray(a) for a in m.seeds)
    if backward not in m.programs:
        trace(m, xs[:1].astype(np.float32), ys[:1].astype(np.int64), backward)
    operand_id = m.programs[backward][0][node][4][pos][1]
    fails = _fails(m)
    ranges = {k: (float(jnp.min(v)), float(jnp.max(v))) for k, v in m.params.items()}

    def operand(p: Any, x: Any, y: Any) -> Any:
        return evaluate(m, backward, p, x, y, upto=operand_id)[operand_id]

    def distance(p: Any, x: Any, y: Any) -> Any:
        v = operand(p, x, y).astype(jnp.float32)
        return {"low": jnp.min(v) - limit, "high": limit - jnp.max(v), "zero": jnp.min(jnp.abs(v))}[kind]
    step = jax.jit(jax.value_and_grad(distance, argnums=(0, 1)))
    at = jax.jit(operand)

    def meets(v: Any) -> bool:
        v = np.asarray(v, dtype=np.float64)
        return bool({"low": v.min() <= limit, "high": v.max() > limit, "zero": (np.abs(v) <= limit).any()}[kind])
    rng = np.random.default_rng(int(request["seed"]))
    i = int(rng.integers(len(xs)))
    y = jnp.asarray(ys[i:i + 1])
    shape = (1,) + tuple(xs.shape[1:])
    start = time.perf_counter()
    x = jnp.asarray(rng.uniform(box[0], box[1], shape), dtype=jnp.float32)
    p = dict(m.params)
    found, evals = None, 0
    width = box[1] - box[0]
    # special points first (exact zeros reach a {0} invalid set that float steps only approach):
    # the zero input where the box holds it, the box's corners, this seed's data
    specials = [np.zeros(shape), np.full(shape, box[0]), np.full(shape, box[1]), xs[i:i + 1]]
    for cand in specials:
        c = jnp.asarray(np.clip(cand, box[0], box[1]), dtype=jnp.float32)
        evals += 1
        if meets(at(p, c, y)) and bool(fails(p, c, y)):
            found = c
            break
    for t in range(0 if found is not None else int(request["steps"])):
        params_too = t >= int(request["steps"]) // 2  # inputs first, then parameters too (RANUM)
        v, (gp, gx) = step(p, x, y)
        evals += 1
        before = np.asarray(at(p, x, y))
        if meets(before) and bool(fails(p, x, y)):
            found = x
            break
        lr = width * 0.05 * 0.98 ** t
        x2 = jnp.clip(x - lr * jnp.sign(gx), box[0], box[1])
        p2 = {k: jnp.clip(a - 0.05 * (ranges[k][1] - ranges[k][0]) * 0.98 ** t * jnp.sign(gp[k]), *ranges[k])
              for k, a in p.items()} if params_too else p
        if kind == "zero":  # bisect onto an exact zero where an operand element changes sign
            after = np.asarray(at(p2, x2, y))
            if np.any(np.sign(before) * np.sign(after) < 0):
                lo, hi = 0.0, 1.0
                j = int(np.flatnonzero(np.sign(before).ravel() * np.sign(after).ravel() < 0)[0])
                s0 = np.sign(before.ravel()[j])
                for _ in range(60):
                    mid = (lo + hi) / 2
                    xm = x + mid * (x2 - x)
                    pm = {k: p[k] + mid * (p2[k] - p[k]) for k in p}
                    vm = np.asarray(at(pm, xm, y)).ravel()[j]
                    evals += 1
                    if vm == 0 or np.sign(vm) != s0:
                        hi = mid
                    else:
                        lo = mid
                for mid in (hi, lo):
                    xm, pm = x + mid * (x2 - x), {k: p[k] + mid * (p2[k] - p[k]) for k in p}
                    if meets(at(pm, xm, y)) and bool(fails(pm, xm, y)):
                        found, p = xm, pm
                        break
                if found is not None:
                    break
        x, p = x2, p2
    guided = {"found": found is not None, "evaluations": evals, "seconds": time.perf_counter() - start,
              "params_moved": any(bool(jnp.any(p[k] != m.params[k])) for k in p)}
    if found is not None:
        guided.update(x=np.asarray(found, dtype=np.float32), y=int(ys[i]))
    # the baseline: uniform inputs (and the trained parameters), the same failure criterion
    start = time.perf_counter()
    hit, n = False, 0
    budget = int(request["uniform"])
    while n < budget and not hit:
        xu = jnp.asarray(rng.uniform(box[0], box[1], shape), dtype=jnp.float32)
        n += 1
        hit = meets(at(m.params, xu, y)) and bool(fails(m.params, xu, y))
    uniform = {"found": hit, "samples": n, "seconds": time.perf_counter() - start}
    out: Dict[str, Any] = {"op": "model", "guided": guided, "uniform": uniform}
    fix = request.get("fix")
    if found is not None and fix is not None and fix[0] >= 0:
        # verified where it matters most: in the gradient's graph when it was traced (the loss's otherwise)
        where = True in m.programs
        clamp = (int(fix[0]), int(fix[1]), float(fix[2]), float(fix[3]), float(fix[4]))
        outputs = m.programs[where][2]
        fixed = evaluate(m, where, p, found, y, clamp=clamp)
        out["fixed_finite"] = all(bool(jnp.all(jnp.isfinite(fixed[o]))) for o in outputs)
        xs1 = jnp.asarray(xs[:1], dtype=jnp.float32)
        y1 = jnp.asarray(ys[:1])
        plain = evaluate(m, where, m.params, xs1, y1)
        patched = evaluate(m, where, m.params, xs1, y1, clamp=clamp)
        changes = []
        for o in outputs:  # the largest change of an output relative to that output's largest entry
            a, b = np.asarray(plain[o], np.float64), np.asarray(patched[o], np.float64)
            ok = np.isfinite(a)  # where the model is finite at the seed without the clamp
            if ok.any():
                changes.append(float(np.max(np.abs(a[ok] - b[ok]))) / max(float(np.max(np.abs(a[ok]))), 1e-30))
        out["fix_change"] = max(changes, default=0.0)
    return out
