"""PyTorch side of model fuzzing (worker/models.py): a built model's forward pass, its
gradients by torch.autograd, forward mode by torch.func.jvp, compiled by torch.compile."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.fx import traceback as fx_traceback


@dataclass
class Built:
    fn: Any
    params: Dict[str, torch.Tensor]
    seeds: Tuple[Any, Any]
    cast: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)
    compiled: Any = None
    programs: Dict[Any, Any] = field(default_factory=dict)  # traced graphs (numerics)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy() if t.is_floating_point() else t.detach().numpy()


class ModelOps:
    def wrap(self, fn: Any, params: Dict[str, Any], seeds: Tuple[Any, Any]) -> Built:
        return Built(fn, {k: v.detach() for k, v in params.items()}, seeds)

    def numpy_params(self, m: Built) -> Dict[str, np.ndarray]:
        return {k: v.detach().double().numpy() for k, v in m.params.items()}

    def shapes(self, m: Built) -> List[Tuple[int, ...]]:
        return [tuple(p.shape) for p in m.params.values()]

    def _params(self, m: Built, dtype: str) -> Dict[str, torch.Tensor]:
        if dtype not in m.cast:
            m.cast[dtype] = {k: v.to(getattr(torch, dtype)) for k, v in m.params.items()}
        return m.cast[dtype]

    def _shifted(self, m: Built, dtype: str, shift: Optional[Dict[str, np.ndarray]]) -> Dict[str, torch.Tensor]:
        params = self._params(m, dtype)
        if not shift:
            return params
        return {k: v + torch.from_numpy(shift[k]).to(v.dtype) if k in shift else v for k, v in params.items()}

    def forward(self, m: Built, x: np.ndarray, y: np.ndarray, dtype: str,
                shift: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """Outputs at the parameters (plus `shift`, per parameter name)."""
        with torch.no_grad():
            out = m.fn(self._shifted(m, dtype, shift), torch.from_numpy(x).to(getattr(torch, dtype)), torch.from_numpy(y))
        return {k: _np(v) for k, v in out.items()}

    def gradients(self, m: Built, x: np.ndarray, y: np.ndarray,
                  dtype: str) -> Tuple[Dict[str, np.ndarray], np.ndarray, Dict[str, np.ndarray]]:
        """Outputs, d(sum loss)/dx (per example: the examples do not interact) and
        d(sum loss)/dparams."""
        params = {k: v.clone().requires_grad_() for k, v in self._params(m, dtype).items()}
        xs = torch.from_numpy(x).to(getattr(torch, dtype)).requires_grad_()
        out = m.fn(params, xs, torch.from_numpy(y))
        grads = torch.autograd.grad(out["loss"].sum(), [xs, *params.values()], allow_unused=True)
        gp = {k: _np(g) if g is not None else np.zeros(tuple(p.shape)) for g, (k, p) in zip(grads[1:], params.items())}
        return {k: _np(v) for k, v in out.items()}, _np(grads[0]), gp

    def jvp(self, m: Built, x: np.ndarray, y: np.ndarray, u: np.ndarray, dtype: str) -> np.ndarray:
        """Per example: the loss's derivative along u (torch.func.jvp)."""
        params, t = self._params(m, dtype), getattr(torch, dtype)
        _, tangent = torch.func.jvp(lambda xs: m.fn(params, xs, torch.from_numpy(y))["loss"],
                                    (torch.from_numpy(x).to(t),), (torch.from_numpy(u).to(t),))
        return _np(tangent)

    def trace(self, m: Built, x: np.ndarray, y: np.ndarray, backward: bool) -> Dict[str, Any]:
        return trace(m, x, y, backward)

    def program(self, m: Built, backward: bool) -> "Program":
        key = ("program", backward)
        if key not in m.programs:
            m.programs[key] = Program(m, backward)
        return m.programs[key]

    def jvp_params(self, m: Built, x: np.ndarray, y: np.ndarray, w: Dict[str, np.ndarray], dtype: str) -> np.ndarray:
        """Per example: the loss's derivative along w in parameter space (torch.func.jvp)."""
        params, t = self._params(m, dtype), getattr(torch, dtype)
        xs, ys = torch.from_numpy(x).to(t), torch.from_numpy(y)
        tangents = {k: torch.from_numpy(w[k]).to(t) if k in w else torch.zeros_like(v) for k, v in params.items()}
        _, tangent = torch.func.jvp(lambda ps: m.fn(ps, xs, ys)["loss"], (params,), (tangents,))
        return _np(tangent)

    def compiled_gradients(self, m: Built, x: np.ndarray, y: np.ndarray, dtype: str) -> Tuple[np.ndarray, np.ndarray]:
        """(loss, d(sum loss)/dx) through torch.compile of the model's function."""
        if m.compiled is None:
            m.compiled = torch.compile(m.fn)
        params = self._params(m, dtype)
        xs = torch.from_numpy(x).to(getattr(torch, dtype)).requires_grad_()
        loss = m.compiled(params, xs, torch.from_numpy(y))["loss"]
        (gx,) = torch.autograd.grad(loss.sum(), [xs])
        return _np(loss), _np(gx)


# ---- graphs for `nablafuzz numerics` (core/graph.py), from make_fx's ATen graphs --------------

# ATen operation -> the graph vocabulary (JAX's primitive names, numerics/intervals.py)
_SAME = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "neg": "neg", "exp": "exp", "log": "log",
         "log1p": "log1p", "sqrt": "sqrt", "rsqrt": "rsqrt", "abs": "abs", "tanh": "tanh", "sigmoid": "logistic",
         "maximum": "max", "minimum": "min", "expm1": "expm1", "eq": "eq", "ne": "ne", "gt": "gt", "lt": "lt",
         "ge": "ge", "le": "le", "logical_not": "not", "logical_and": "and", "logical_or": "or",
         "mm": "dot_general", "bmm": "dot_general", "matmul": "dot_general", "sum": "reduce_sum",
         "amax": "reduce_max", "amin": "reduce_min", "arange": "iota", "_log_softmax": "log_softmax",
         "_softmax": "softmax", "_log_softmax_backward_data": "log_softmax_backward",
         "_softmax_backward_data": "softmax_backward", "square": "square", "isfinite": "is_finite", "sgn": "sign",
         "sign": "sign", "mv": "dot_general"}
_IDENTITY = {"view", "reshape", "_unsafe_view", "expand", "t", "transpose", "permute", "unsqueeze", "squeeze",
             "clone", "detach", "alias", "slice", "select", "index", "gather", "expand_copy", "contiguous",
             "_to_copy", "lift_fresh_copy", "flatten", "unflatten"}


def _torch_attr(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(e, int) for e in v):
        return tuple(v)
    return str(v)


def trace(m: Built, x: np.ndarray, y: np.ndarray, backward: bool) -> Dict[str, Any]:
    """The loss (summed over the batch) as make_fx's ATen graph, or its gradient w.r.t. the
    parameters and the input (torch.func.grad; its graph starts with the forward pass, whose
    nodes are the loss graph's: the rest is the backward pass), in the graph vocabulary; each
    node with the model's source line (Note [torch source lines])."""
    from torch.fx.experimental.proxy_tensor import make_fx
    names = sorted(m.params)

    def loss(*args: Any) -> Any:
        with _Sources():
            out = m.fn(dict(zip(names, args[:-2])), args[-2], args[-1])["loss"].sum()
        fx_traceback.set_stack_trace([])
        _backward_sources(out.grad_fn)
        return out

    def grad(*args: Any) -> Any:
        return torch.func.grad(loss, argnums=tuple(range(len(args) - 1)))(*args)
    inputs = [m.params[k] for k in names] + [torch.from_numpy(x), torch.from_numpy(y)]
    with fx_traceback.preserve_node_meta():
        forward_calls = sum(n.op == "call_function" for n in make_fx(loss)(*inputs).graph.nodes)
        gm = make_fx(grad if backward else loss)(*inputs)
    arg_names = [f"param:{k}" for k in names] + ["x", "y"]
    nodes: List[list] = []
    ids: Dict[Any, int] = {}
    arguments, outputs, calls = [], [], 0
    fx_of: Dict[int, Any] = {}
    for n in gm.graph.nodes:
        val = n.meta.get("val")
        shape = list(val.shape) if hasattr(val, "shape") else []
        dtype = str(val.dtype).replace("torch.", "") if hasattr(val, "dtype") else "float32"
        if n.op == "placeholder":
            fx_of[len(nodes)] = n
            ids[n] = len(nodes)
            arguments.append([arg_names[len(arguments)], len(nodes)])
            nodes.append([len(nodes), "argument", [], shape, dtype, [], [], False, ""])
        elif n.op == "call_function":
            bwd = backward and calls >= forward_calls
            calls += 1
            _node(n, ids, nodes, shape, dtype, bwd)
            fx_of[ids[n]] = n
        elif n.op == "output":
            outs = n.args[0] if isinstance(n.args[0], (list, tuple)) else [n.args[0]]
            outputs = [ids[o] for o in outs if o in ids]
        elif n.op == "get_attr":
            a = getattr(gm, str(n.target)).detach().double().numpy()
            ids[n] = len(nodes)
            nodes.append([len(nodes), "constant", [], list(a.shape), dtype,
                          [["min", float(a.min()) if a.size else 0.0], ["max", float(a.max()) if a.size else 0.0]],
                          [], False, ""])
    m.programs[backward] = (gm, nodes, fx_of, outputs)
    return {"nodes": nodes, "arguments": arguments, "outputs": outputs}


# Note [torch source lines]
# make_fx records a stack trace only for frames named `forward` (nn.Module code), and the
# backward pass runs inside autograd's engine with no Python frame of the model at all. So the
# trace keeps torch.fx's node metadata (`preserve_node_meta`, which copies the current stack
# trace onto each node made) and sets that trace itself: in the forward pass, a function mode
# sets it to the model's line (file:line) of each torch call and tags the autograd node the
# call made; in the backward pass, a pre-hook on each autograd node sets it to its forward call's line,
# as JAX's tracer attributes a derivative's equations to the line that made the primal.
_SOURCE_KEY = "nablafuzz_source"


def _model_frame() -> str:
    """The innermost frame outside torch and nablafuzz: the model's line (file:line)."""
    import sys
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if "/torch/" not in path and "/nablafuzz/" not in path:
            return f"{path}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


class _Sources(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        source = _model_frame()
        fx_traceback.set_stack_trace([source] if source else [])
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if source and isinstance(t, torch.Tensor) and t.grad_fn is not None:
                t.grad_fn.metadata.setdefault(_SOURCE_KEY, source)
        return out


def _backward_sources(root: Any) -> None:
    seen, todo = set(), [root]
    while todo:
        n = todo.pop()
        if n is None or n in seen:
            continue
        seen.add(n)
        source = n.metadata.get(_SOURCE_KEY, "")
        n.register_prehook(lambda _, s=source: fx_traceback.set_stack_trace([s] if s else []))
        todo.extend(f for f, _ in n.next_functions)


def _source(n: Any) -> str:
    """The model's line (file:line) that the trace set as the node's stack trace."""
    return (n.meta.get("stack_trace") or "").strip()


def _node(n: Any, ids: Dict[Any, int], nodes: List[list], shape: list, dtype: str, bwd: bool) -> None:
    """One ATen call as one or two graph nodes (addmm: a product, then the bias added)."""
    name = str(n.target).split(".")[1] if str(n.target).startswith("aten.") else str(n.target)
    source = _source(n)
    tensors = [a for a in n.args if hasattr(a, "op")]
    inputs, literals = [], []
    for pos, a in enumerate(n.args):
        if hasattr(a, "op"):
            inputs.append(ids.get(a, -1))
        elif isinstance(a, (int, float)) and not isinstance(a, bool) and pos < 2:
            inputs.append(-1)
            literals.append([pos, float(a)])
    attrs: List[list] = []
    op = _SAME.get(name)
    if name == "addmm":  # bias + a @ b
        ids[n] = len(nodes)
        nodes.append([len(nodes), "dot_general", [ids[tensors[1]], ids[tensors[2]]], shape, dtype,
                      [["dimension_numbers", "(((1,), (0,)), ((), ()))"]], [], bwd, source])
        nodes.append([len(nodes), "add", [len(nodes) - 1, ids[tensors[0]]], shape, dtype, [], [], bwd, source])
        ids[n] = len(nodes) - 1
        return
    if name in _IDENTITY:
        op, inputs, literals = ("convert_element_type" if name == "_to_copy" else "reshape"), inputs[:1], []
    elif name in ("relu",):
        op, inputs, literals = "max", [inputs[0], -1], [[1, 0.0]]
    elif name in ("clamp", "clamp_min", "clamp_max"):
        lo = n.args[1] if len(n.args) > 1 and name != "clamp_max" else None
        hi = n.args[1] if name == "clamp_max" else (n.args[2] if len(n.args) > 2 else None)
        ids[n] = len(nodes)
        cur = inputs[0]
        if lo is not None:
            nodes.append([len(nodes), "max", [cur, -1], shape, dtype, [], [[1, float(lo)]], bwd, source])
            cur = len(nodes) - 1
        if hi is not None:
            nodes.append([len(nodes), "min", [cur, -1], shape, dtype, [], [[1, float(hi)]], bwd, source])
            cur = len(nodes) - 1
        ids[n] = cur
        return
    elif name == "pow" and len(n.args) > 1 and isinstance(n.args[1], (int, float)) and float(n.args[1]).is_integer():
        op, inputs, literals, attrs = "integer_pow", inputs[:1], [], [["y", int(n.args[1])]]
    elif name == "reciprocal":
        op, attrs = "integer_pow", [["y", -1]]
    elif name == "rsub" and n.kwargs.get("alpha", 1) == 1:  # other - self (`1 - x`)
        other = n.args[1]
        op = "sub"
        inputs = [ids.get(other, -1) if hasattr(other, "op") else -1, inputs[0]]
        literals = [] if hasattr(other, "op") else [[0, float(other)]]
    elif name == "scatter_add":  # (self, dim, index, src): JAX's operand, indices, updates
        op, inputs, literals = "scatter-add", [ids.get(a, -1) for a in (n.args[0], n.args[2], n.args[3])], []
    elif name == "cat":  # a list of tensors: the union of their values
        op, inputs, literals = "concatenate", [ids.get(a, -1) for a in n.args[0]], []
    elif name == "where":
        op = "select_n"
        inputs = [ids[n.args[0]], ids.get(n.args[2], -1) if hasattr(n.args[2], "op") else -1,
                  ids.get(n.args[1], -1) if hasattr(n.args[1], "op") else -1]
        literals = [[p, float(v)] for p, v in ((1, n.args[2]), (2, n.args[1])) if not hasattr(v, "op")]
    elif name == "threshold_backward":  # the gradient where the input passed the threshold, else 0
        op, inputs, literals = "select_n", [ids[n.args[1]], -1, ids[n.args[0]]], [[1, 0.0]]
    elif name in ("ones_like", "zeros_like", "full", "scalar_tensor", "ones", "zeros", "full_like", "new_zeros",
                  "new_ones"):
        value = {"ones_like": 1.0, "ones": 1.0, "new_ones": 1.0, "zeros_like": 0.0, "zeros": 0.0, "new_zeros": 0.0}.get(name)
        if value is None:
            value = float(n.args[-1]) if n.args and isinstance(n.args[-1], (int, float)) else 0.0
        ids[n] = len(nodes)
        nodes.append([len(nodes), "constant", [], shape, dtype, [["min", value], ["max", value]], [], bwd, source])
        return
    elif name == "mean":
        ids[n] = len(nodes)
        src = n.args[0].meta.get("val")
        count = max(1, int(np.prod(src.shape)) // max(1, int(np.prod(shape)) if shape else 1)) if src is not None else 1
        nodes.append([len(nodes), "reduce_sum", inputs[:1], shape, dtype, [], [], bwd, source])
        nodes.append([len(nodes), "mul", [len(nodes) - 1, -1], shape, dtype, [], [[1, 1.0 / count]], bwd, source])
        ids[n] = len(nodes) - 1
        return
    if name in ("_log_softmax", "_softmax", "_log_softmax_backward_data", "_softmax_backward_data", "sum", "amax",
                "amin", "logsumexp"):
        dims = n.args[1] if len(n.args) > 1 else None
        attrs = attrs + [["axes", _torch_attr(dims if isinstance(dims, (list, tuple)) else [dims] if dims is not None
                                               else [])]]
        inputs, literals = [ids[a] for a in tensors][:2 if "backward" in name else 1], []
    ids[n] = len(nodes)
    nodes.append([len(nodes), op or name, inputs, shape, dtype, attrs, literals, bwd, source])


class _Stop(Exception):
    def __init__(self, value: Any):
        self.value = value


class _Run(torch.fx.Interpreter):
    """make_fx's graph run node by node: stop at a node (its value), or clamp a node's value
    for every reader (a suggested fix)."""

    def __init__(self, gm: Any, stop: Any = None, clamps: Optional[Dict[Any, Tuple[float, float, float]]] = None):
        super().__init__(gm)
        self.stop, self.clamps = stop, clamps or {}
        self.origins: List[Any] = []  # the nodes where a non-finite value arose from finite inputs

    def run_node(self, n: Any) -> Any:
        v = super().run_node(n)
        if n in self.clamps:
            lo, hi, away = self.clamps[n]
            v = torch.where(v >= 0, torch.clamp_min(v, away), torch.clamp_max(v, -away)) if away > 0 else \
                torch.clamp(v, lo, hi)
        if n.op == "call_function" and not _finite(v) and all(_finite(self.env[a]) for a in n.all_input_nodes):
            self.origins.append(n)
        if n is self.stop:
            raise _Stop(v)
        return v


def _finite(v: Any) -> bool:
    return not (isinstance(v, torch.Tensor) and v.is_floating_point()) or bool(torch.isfinite(v).all())


class Program:
    """A traced graph for worker/numerics.py's search (`nablafuzz numerics --confirm`)."""

    def __init__(self, m: Built, backward: bool):
        xs, ys = (np.asarray(a) for a in m.seeds)
        for b in {backward, True} if True in m.programs or backward else {backward}:
            if b not in m.programs:
                trace(m, xs[:1].astype(np.float32), ys[:1].astype(np.int64), b)
        self.m, self.backward = m, backward
        self.seeds = (xs.astype(np.float32), ys.astype(np.int64))
        self.params = {k: v.detach().numpy().copy() for k, v in m.params.items()}
        self.names = sorted(m.params)
        self.verify = True in m.programs

    def _args(self, p: Dict[str, Any], x: Any, y: Any) -> List[Any]:
        t = lambda a: a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))  # noqa: E731
        return [t(p[k]) for k in self.names] + [t(x), t(y)]

    def _operand_node(self, node: int, pos: int) -> Any:
        gm, nodes, fx_of, _ = self.m.programs[self.backward]
        fx = fx_of.get(nodes[node][2][pos])
        if fx is None:
            raise NotImplementedError(f"operand {pos} of node {node} has no ATen node of its own")
        return gm, fx

    def _value(self, args: List[Any], node: int, pos: int) -> Any:
        gm, fx = self._operand_node(node, pos)
        if fx.op == "placeholder":
            return args[[n for n in gm.graph.nodes if n.op == "placeholder"].index(fx)]
        try:
            _Run(gm, stop=fx).run(*args)
        except _Stop as s:
            return s.value
        raise RuntimeError("the operand's node was never reached")

    def operand(self, p: Any, x: Any, y: Any, node: int, pos: int) -> np.ndarray:
        with torch.no_grad():
            return self._value(self._args(p, x, y), node, pos).detach().double().numpy()

    def step(self, p: Any, x: Any, y: Any, node: int, pos: int, kind: str, limit: float) -> Any:
        args = [a.detach().clone().requires_grad_(a.is_floating_point()) for a in self._args(p, x, y)]
        v = self._value(args, node, pos).float()
        d = {"low": v.min() - limit, "high": limit - v.max(), "zero": v.abs().min()}[kind]
        wrt = [a for a in args[:-1] if a.requires_grad]
        grads = torch.autograd.grad(d, wrt, allow_unused=True)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(wrt, grads)]
        gp = {k: g.detach().numpy() for k, g in zip(self.names, grads[:len(self.names)])}
        return float(d), gp, grads[-1].detach().numpy()

    def fails(self, p: Any, x: Any, y: Any) -> bool:
        args = [a.detach().clone().requires_grad_(a.is_floating_point()) for a in self._args(p, x, y)]
        out = self.m.fn(dict(zip(self.names, args[:-2])), args[-2], args[-1])["loss"].sum()
        grads = torch.autograd.grad(out, [a for a in args if a.requires_grad], allow_unused=True)
        return not bool(torch.isfinite(out)) or any(g is not None and not bool(torch.isfinite(g).all()) for g in grads)

    def _run(self, p: Any, x: Any, y: Any, clamps: Any) -> Tuple[Any, "_Run"]:
        gm, nodes, fx_of, _ = self.m.programs[self.verify]
        targets = {}
        for node, pos, lo, hi, away in clamps or ():
            target = fx_of.get(nodes[node][2][pos]) if node < len(nodes) else None
            if target is not None:
                targets[target] = (lo, hi, away)
        run = _Run(gm, clamps=targets)
        with torch.no_grad():
            return run.run(*self._args(p, x, y)), run

    def outputs(self, p: Any, x: Any, y: Any, clamps: Any) -> List[np.ndarray]:
        out = self._run(p, x, y, clamps)[0]
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.detach().double().numpy() for o in outs]

    def origins(self, p: Any, x: Any, y: Any, clamps: Any) -> List[int]:
        """The verification graph's nodes where a non-finite value arises (from finite inputs)."""
        record = {fx: i for i, fx in self.m.programs[self.verify][2].items()}
        return sorted(record[n] for n in self._run(p, x, y, clamps)[1].origins if n in record)
