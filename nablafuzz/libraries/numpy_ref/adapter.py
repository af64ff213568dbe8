"""`numpy_ref`: a reference backend of numpy ops with hand-written derivatives.

It lets the whole pipeline (generation, worker, scenarios, filters, store, triage) run and be
tested with no deep-learning library.  Each `Op` gives the function, its JVP, its VJP and
`hess`, the gradient of Q(x) = <v, J(x) u> (see Note [second order by composition] in
`base.py`); all second-order scenarios derive from `hess`.  User code can define further
`Op`s and name them as `module:attribute` in a spec (the tests' deliberately broken ops do).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ...core.structures import projected_value
from ..base import Adapter, BoundCall, FirstOrder, SecondOrder, UnknownApi, point_scale, project, resolve_user_function

Arrays = List[np.ndarray]


@dataclass(frozen=True)
class Op:
    f: Callable[..., Any]
    jvp: Callable[..., Arrays]
    vjp: Callable[..., Arrays]
    hess: Callable[..., Arrays]
    doc: str = ""
    args: Tuple[Dict[str, Any], ...] = ({"name": "x"},)


def _unbroadcast(g: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def unary(f: Callable, d1: Callable, d2: Callable, doc: str = "", domain: str = "real") -> Op:
    """An elementwise op from f, f' and f''."""
    return Op(
        f=lambda x: f(x),
        jvp=lambda xs, us: [d1(xs[0]) * us[0]],
        vjp=lambda xs, vs: [d1(xs[0]) * vs[0]],
        hess=lambda xs, us, vs: [vs[0] * d2(xs[0]) * us[0]],
        doc=doc,
        args=({"name": "x", "domain": domain},),
    )


def binary(f: Callable, fx: Callable, fy: Callable, fxx: Callable, fxy: Callable, fyy: Callable,
           y_domain: str = "real") -> Op:
    """A broadcasting elementwise op from f and its partial derivatives up to order 2."""
    def jvp(xs, us):
        x, y = xs
        return [fx(x, y) * us[0] + fy(x, y) * us[1]]

    def vjp(xs, vs):
        x, y = xs
        return [_unbroadcast(fx(x, y) * vs[0], x.shape), _unbroadcast(fy(x, y) * vs[0], y.shape)]

    def hess(xs, us, vs):
        (x, y), (ux, uy), v = xs, us, vs[0]
        gx = v * (fxx(x, y) * ux + fxy(x, y) * uy)
        gy = v * (fxy(x, y) * ux + fyy(x, y) * uy)
        return [_unbroadcast(gx, x.shape), _unbroadcast(gy, y.shape)]

    args = ({"name": "x"}, {"name": "y", "broadcast_with": "x", "domain": y_domain})
    return Op(f=f, jvp=jvp, vjp=vjp, hess=hess, args=args)


def linear(f: Callable, transpose: Callable, *params: Dict[str, Any]) -> Op:
    """A linear op: its JVP is itself, its VJP is `transpose`, its second derivative is zero."""
    return Op(
        f=f,
        jvp=lambda xs, us, **p: [f(us[0], **p)],
        vjp=lambda xs, vs, **p: [transpose(vs[0], xs[0].shape, **p)],
        hess=lambda xs, us, vs, **p: [np.zeros_like(xs[0])],
        args=({"name": "x"},) + params,
    )


def _sum_t(v, shape, axis=None, keepdims=False):
    if axis is not None and not keepdims and len(shape) > 0:
        v = np.expand_dims(v, axis)
    return np.broadcast_to(v, shape).copy()


def _mean(x, axis=None, keepdims=False):
    return np.mean(x, axis=axis, keepdims=keepdims) if x.size else np.sum(x, axis=axis, keepdims=keepdims)


def _mean_t(v, shape, axis=None, keepdims=False):
    n = math.prod(shape) if axis is None or not shape else shape[axis]
    return _sum_t(v, shape, axis, keepdims) / max(n, 1)


def _cumsum_t(v, shape, axis=0):
    return np.flip(np.cumsum(np.flip(v, axis), axis=axis), axis) if len(shape) else v


def _sigmoid(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def _erf(x):
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _zero(x, *rest):
    return np.zeros_like(x)


def _one(x, *rest):
    return np.ones_like(x)


def _matmul_op() -> Op:
    return Op(
        f=lambda a, b: a @ b,
        jvp=lambda xs, us: [us[0] @ xs[1] + xs[0] @ us[1]],
        vjp=lambda xs, vs: [vs[0] @ xs[1].T, xs[0].T @ vs[0]],
        hess=lambda xs, us, vs: [vs[0] @ us[1].T, us[0].T @ vs[0]],
        args=({"name": "a", "dims": ["m", "k"]}, {"name": "b", "dims": ["k", "n"]}),
    )


# Tail-accurate derivative formulas: 1 - tanh(x)^2 and s (1 - s) cancel to 0 for |x| > ~19 in
# float64 although the true values (~4e-17 and smaller) are representable.
def _sig_d1(x):
    e = np.exp(-np.abs(x))
    return e / (1 + e) ** 2


def _sig_d2(x):
    return -_sig_d1(x) * np.tanh(x / 2)


def _sech2(x):
    with np.errstate(over="ignore"):
        return 1 / np.cosh(x) ** 2


_AXIS = ({"name": "axis", "kind": "axis", "of": "x", "keyword": True, "optional": True},
         {"name": "keepdims", "kind": "bool", "keyword": True})

OPS: Dict[str, Op] = {
    "sin": unary(np.sin, np.cos, lambda x: -np.sin(x)),
    "cos": unary(np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x)),
    "tanh": unary(np.tanh, _sech2, lambda x: -2 * np.tanh(x) * _sech2(x)),
    "exp": unary(np.exp, np.exp, np.exp),
    "expm1": unary(np.expm1, np.exp, np.exp),
    "log": unary(np.log, lambda x: 1 / x, lambda x: -1 / x ** 2, domain="positive"),
    "log1p": unary(np.log1p, lambda x: 1 / (1 + x), lambda x: -1 / (1 + x) ** 2, domain="above_minus_one"),
    "sqrt": unary(np.sqrt, lambda x: 0.5 / np.sqrt(x), lambda x: -0.25 / (x * np.sqrt(x)), domain="positive"),
    "sigmoid": unary(_sigmoid, _sig_d1, _sig_d2),
    "atan": unary(np.arctan, lambda x: 1 / (1 + x * x), lambda x: -2 * x / (1 + x * x) ** 2),
    "erf": unary(_erf, lambda x: 2 / math.sqrt(math.pi) * np.exp(-x * x),
                 lambda x: -4 * x / math.sqrt(math.pi) * np.exp(-x * x)),
    "square": unary(np.square, lambda x: 2 * x, lambda x: np.full_like(x, 2)),
    "reciprocal": unary(np.reciprocal, lambda x: -1 / x ** 2, lambda x: 2 / x ** 3, domain="nonzero"),
    "abs": unary(np.abs, np.sign, _zero, doc="subgradient sign(0) = 0"),
    "relu": unary(lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(x.dtype), _zero,
                  doc="subgradient 0 at 0"),
    "add": binary(np.add, _one, _one, _zero, _zero, _zero),
    "subtract": binary(np.subtract, _one, lambda x, y: -np.ones_like(y), _zero, _zero, _zero),
    "multiply": binary(np.multiply, lambda x, y: y, lambda x, y: x, _zero, _one, _zero),
    "divide": binary(np.divide, lambda x, y: 1 / y, lambda x, y: -x / y ** 2, _zero,
                     lambda x, y: -1 / y ** 2, lambda x, y: 2 * x / y ** 3, y_domain="nonzero"),
    "maximum": binary(np.maximum, lambda x, y: (x >= y).astype(np.result_type(x, y)),
                      lambda x, y: (x < y).astype(np.result_type(x, y)), _zero, _zero, _zero),
    "sum": linear(lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims), _sum_t, *_AXIS),
    "mean": linear(_mean, _mean_t, *_AXIS),
    "cumsum": linear(lambda x, axis=0: np.cumsum(x, axis=axis) if x.ndim else x.copy(), _cumsum_t,
                     {"name": "axis", "kind": "axis", "of": "x", "keyword": True}),
    "matmul": _matmul_op(),
}


@dataclass(frozen=True)
class _NumpyCall:
    op: Op
    params: Dict[str, Any] = field(default_factory=dict)

    def __call__(self, *xs: np.ndarray) -> Any:
        return self.op.f(*xs, **self.params)


def _numpy_call(call: BoundCall) -> _NumpyCall:
    """The op behind a bound call (a random op's call is wrapped to re-seed before each use)."""
    fn = call.fn
    while not isinstance(fn, _NumpyCall):
        fn = fn.fn
    return fn


def _as_list(out: Any) -> Arrays:
    return [np.asarray(o) for o in out] if isinstance(out, (tuple, list)) else [np.asarray(out)]


class NumpyRefAdapter(Adapter):
    library = "numpy_ref"

    def versions(self) -> Dict[str, str]:
        return {"numpy": np.__version__}

    def resolve(self, api: str) -> Op:
        op: Optional[Any] = OPS.get(api)
        if op is None and ":" in api:
            op = resolve_user_function(api)
        if not isinstance(op, Op):
            raise UnknownApi(f"numpy_ref has no op {api!r} (known: {', '.join(sorted(OPS))}; "
                             "user ops are `module:attribute` naming a numpy_ref.Op)")
        return op

    def projected(self, fn: Op, inputs, projections: Dict[str, str]) -> Op:
        """The op on symmetrised inputs (Note [structured directions]), its hand-written
        derivatives composed with the projection (linear and self-adjoint)."""
        floats = [name for value, _, _, name in inputs if isinstance(value, np.ndarray) and value.dtype.kind == "f"]
        kinds = [projections.get(name) for name in floats]

        def sym(arrays):  # the projection: linear and self-adjoint, so it is its own VJP
            return [projected_value(k, a, lambda t: np.swapaxes(t, -1, -2), self.triangle) if k else a
                    for a, k in zip(arrays, kinds)]
        return replace(fn, f=lambda *xs, **p: fn.f(*sym(xs), **p),
                       jvp=lambda xs, us, **p: fn.jvp(sym(xs), sym(us), **p),
                       vjp=lambda xs, vs, **p: sym(fn.vjp(sym(xs), vs, **p)),
                       hess=lambda xs, us, vs, **p: sym(fn.hess(sym(xs), sym(us), vs, **p)))

    def derive_specs(self) -> Dict[str, Any]:
        """The spec source of numpy_ref: its own op table."""
        apis = [dict({"name": name, "args": [dict(a) for a in op.args]}, **({"notes": op.doc} if op.doc else {}))
                for name, op in sorted(OPS.items())]
        return {"apis": apis, "dropped": []}

    def bind(self, fn, inputs, diff_outputs):
        xs, params = [], {}
        for value, diff, keyword, name in inputs:
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                xs.append(value)
            else:
                params[name] = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
        return BoundCall(_NumpyCall(fn, params), None if diff_outputs is None else tuple(diff_outputs)), xs

    def direct(self, call, xs):
        return _as_list(call.fn(*xs))

    def first_order(self, mode, call, xs, us, vs):
        op, p = _numpy_call(call).op, _numpy_call(call).params
        outs = tuple(_as_list(call.fn(*xs)))
        if mode == "rev":
            g = [np.asarray(a, dtype=x.dtype) for a, x in zip(op.vjp(xs, vs, **p), xs)]
            value, scale = project(g, us)
            return FirstOrder(outs, value, scale, tuple(g))
        t = [np.asarray(a) for a in op.jvp(xs, us, **p)]
        value, scale = project(vs, t)
        return FirstOrder(outs, value, scale)

    def second_order(self, outer, inner, call, xs, us, vs, ws):
        op, p = _numpy_call(call).op, _numpy_call(call).params
        value, scale = project(op.hess(xs, us, vs, **p), ws)
        return SecondOrder(value, scale if outer == "rev" else point_scale(value))


def make_adapter() -> NumpyRefAdapter:
    return NumpyRefAdapter()
