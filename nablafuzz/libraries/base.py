"""The adapter interface (worker side) and the composable base for real AD libraries.

An adapter owns everything library-specific: resolving an API name, converting arrays,
reverse and forward mode, and classifying exceptions.  The scenario engine in
`nablafuzz.worker.scenarios` only talks to this interface.

`ComposableAdapter` builds every scenario from two native primitives, `vjp` and `jvp`, by
composition (Note [second order by composition]); a library adapter implements those two.
Worker-safe: Python 3.10, numpy 1.26, no orchestrator imports.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from ..core.model import Outcome
from ..core.structures import projected_value
from .entry_points import entry_value
from .messages import classify_message

Call = Callable[[List[Any]], List[Any]]


class UnknownApi(LookupError):
    """The API name does not resolve in this library (or is not allowed to)."""


@dataclass(frozen=True)
class FirstOrder:
    outputs: Tuple[np.ndarray, ...]
    value: float
    scale: float
    gradient: Tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class SecondOrder:
    value: float
    scale: float


class WrongShape(ValueError):
    """A gradient or tangent whose shape is not its input's or output's (a `wrong_shape` finding:
    projecting it would broadcast silently)."""


def project(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> Tuple[float, float]:
    """(<a, b>, sum |a||b|) in float64; the second number scales tolerances.  The scale is NaN
    when an element of a or b is non-finite (a NaN or infinite derivative), and +inf when only
    the sum of finite terms overflows (Note [non-finite derivatives]).  Each pair must have one
    shape (a derivative and the direction of its input or output): WrongShape otherwise."""
    value, scale, finite = 0.0, 0.0, True
    with np.errstate(over="ignore", invalid="ignore"):
        for k, (x, y) in enumerate(zip(a, b)):
            x = np.asarray(x, dtype=np.float64)
            y = np.asarray(y, dtype=np.float64)
            if x.shape != y.shape:
                raise WrongShape(f"derivative and direction {k} have shapes {x.shape} and {y.shape}: a "
                                 "gradient has its input's shape, a tangent its output's")
            finite = finite and bool(np.isfinite(x).all() and np.isfinite(y).all())
            value += float(np.sum(x * y))
            scale += float(np.sum(np.abs(x) * np.abs(y)))
    return value, (scale if finite else math.nan)


def point_scale(value: float) -> float:
    """The scale of a single-number derivative (a JVP of a scalar): |value|, NaN if it is not
    finite (Note [non-finite derivatives])."""
    return abs(value) if math.isfinite(value) else math.nan


def resolve_user_function(api: str) -> Any:
    """`package.module:function` -> the object; only called for names a loaded spec declared."""
    module_name, _, attr = api.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def attribute_path(obj: Any, parts: Sequence[str]) -> Any:
    """obj.parts[0].parts[1]...; None where an attribute is missing."""
    for part in parts:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def resolve_library_api(api: str, prefix: str, library: str, lookup: Callable[[List[str]], Any]) -> Any:
    """A user's `module:function`, or `prefix.a.b` found by `lookup(parts)` (None: missing);
    UnknownApi unless it is callable."""
    if ":" in api:
        return resolve_user_function(api)
    parts = api.split(".")
    if parts[0] != prefix:
        raise UnknownApi(f"{api!r} is not a {library} API (expected {prefix}.* or module:function)")
    obj = lookup(parts)
    if obj is None:
        raise UnknownApi(f"{library} has no {api!r}")
    if not callable(obj):
        raise UnknownApi(f"{api!r} is not callable")
    return obj


class Adapter:
    """What the worker needs from one library."""

    library: str = ""
    emulated_fwd: bool = False

    def versions(self) -> Dict[str, str]:
        raise NotImplementedError

    def resolve(self, api: str) -> Any:
        raise NotImplementedError

    def from_numpy(self, a: np.ndarray, dtype: str, grad: bool = False) -> Any:
        """A native tensor; `grad` marks a differentiable input (for libraries that need it)."""
        return np.asarray(a, dtype=dtype)

    def permute(self, t: Any, perm: Sequence[int]) -> Any:
        """`t` with its axes permuted (a layout change inside the differentiated call)."""
        return np.transpose(t, tuple(perm))

    def dtype(self, name: str) -> Any:
        """The library's dtype object for a dtype-kind argument such as "float64"."""
        return np.dtype(name)

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t)

    def bind(self, fn: Any, inputs: Sequence[Tuple[Any, bool, bool, str]],
             diff_outputs: Sequence[int] | None) -> Tuple["BoundCall", List[np.ndarray]]:
        """Close `fn` over its non-differentiable arguments.

        `inputs` are (numpy array, list of arrays, or scalar; differentiable; keyword; name).
        Returns a call taking the differentiable inputs (native tensors) positionally, and
        the numpy values of those inputs in order.
        """
        xs: List[np.ndarray] = []
        slots = [(name, keyword, self._slot(value, diff, xs)) for value, diff, keyword, name in inputs]

        def call(*dx: Any) -> Any:
            args, kwargs = [], {}
            for name, keyword, slot in slots:
                value = _fill(slot, dx)
                if keyword:
                    kwargs[name] = value
                else:
                    args.append(value)
            return fn(*args, **kwargs)

        outs = None if diff_outputs is None else tuple(diff_outputs)
        return BoundCall(call, outs), xs

    def _slot(self, value: Any, diff: bool, xs: List[np.ndarray]) -> Any:
        if isinstance(value, list):
            return [self._slot(v, diff, xs) for v in value]
        if isinstance(value, np.ndarray):
            if diff and value.dtype.kind == "f":
                xs.append(value)
                return _Diff(len(xs) - 1)
            return _Const(self.from_numpy(value, str(value.dtype)))
        if isinstance(value, dict) and set(value) == {"dtype"}:
            return _Const(self.dtype(value["dtype"]))
        return _Const(value)

    def direct(self, call: "BoundCall", xs: List[np.ndarray]) -> List[np.ndarray]:
        raise NotImplementedError

    def first_order(self, mode: str, call: "BoundCall", xs: List[np.ndarray],
                    us: List[np.ndarray], vs: List[np.ndarray]) -> FirstOrder:
        raise NotImplementedError

    def second_order(self, outer: str, inner: str, call: "BoundCall", xs: List[np.ndarray],
                     us: List[np.ndarray], vs: List[np.ndarray], ws: List[np.ndarray]) -> SecondOrder:
        raise NotImplementedError

    def third_order(self, outer: str, middle: str, inner: str, call: "BoundCall", xs: List[np.ndarray],
                    us: List[np.ndarray], vs: List[np.ndarray], ws: List[np.ndarray],
                    zs: List[np.ndarray]) -> SecondOrder:
        """v^T D3f [u, w, z] by composition: `outer` mode along z of the second-order Q2."""
        raise NotImplementedError(f"{self.library} has no third-order composition")

    def entry_point(self, name: str, call: "BoundCall", xs: List[np.ndarray], us: List[np.ndarray],
                    vs: List[np.ndarray], ws: List[np.ndarray]) -> Tuple[float, float]:
        """(value, scale) of a transform users call (entry_points.py: jacrev, jacfwd, vmap, hessian)."""
        raise NotImplementedError(f"{self.library} has no {name} entry point")

    def classify(self, exc: BaseException) -> Outcome:
        """UNSUPPORTED for 'this derivative is not implemented' (NotImplementedError, or a row of
        the library's message table), RAISED for anything else."""
        if isinstance(exc, NotImplementedError):
            return Outcome.UNSUPPORTED
        return classify_message(self.library, f"{type(exc).__name__}: {exc}")

    def seed(self, seed: int) -> None:
        """Seed the library's own RNG before a trial of a random op."""

    def triangle(self, t: Any, lower: bool) -> Any:
        """The lower (upper) triangle of the last two axes of `t`, the rest zero."""
        return np.tril(t) if lower else np.triu(t)

    def projected(self, fn: Any, inputs: Sequence[Tuple[Any, bool, bool, str]], projections: Dict[str, str]) -> Any:
        """`fn` with the named inputs projected inside the call (Note [structured directions]):
        every AD mode and finite differences then move those inputs along directions that keep
        their structure (symmetric, or within one triangle)."""
        positional = [name for _, _, keyword, name in inputs if not keyword]

        def swap(t: Any) -> Any:
            n = len(t.shape)
            return self.permute(t, list(range(n - 2)) + [n - 1, n - 2])

        def project(name: str, t: Any) -> Any:
            return projected_value(projections[name], t, swap, self.triangle) if name in projections else t

        def call(*args: Any, **kwargs: Any) -> Any:
            args = tuple(project(n, a) for a, n in zip(args, positional))
            return fn(*args, **{k: project(k, v) for k, v in kwargs.items()})
        return call

    def reset(self) -> None:
        """Undo the process-wide state a previous trial's function may have left behind (grad
        mode, default dtype, open forward-mode levels, config flags), before every trial.  What
        an adapter does not know of is caught by confirming findings in a fresh worker."""

    def module_call(self, cls: Any, args: Sequence[Any], kwargs: Dict[str, Any]) -> Any:
        """A layer class as a function of its inputs, with parameters as keyword arguments
        named `param:<name>` (so they are differentiable inputs like any other)."""
        raise NotImplementedError(f"{self.library} has no module specs")

    def compiled(self, fn: Any) -> Any:
        """`fn` compiled by the library's compiler (the opt-in `jit` scenario)."""
        raise NotImplementedError(f"{self.library} has no compiled scenario")

    def compiled_once(self, fn: Any, compile_fn: Callable[[Any], Any]) -> Any:
        """`compile_fn(fn)`, made once per API and kept (the function is kept alive with it)."""
        cache = self.__dict__.setdefault("_compiled", {})
        if id(fn) not in cache:
            cache[id(fn)] = (fn, compile_fn(fn))
        return cache[id(fn)][1]

    def derive_specs(self) -> Dict[str, Any]:
        """This library's spec source: {"apis": [spec-file dicts], "dropped": ["what: why"]}."""
        return {"apis": [], "dropped": []}

    def catalogue(self) -> Dict[str, Any]:
        """Public callables for the probing spec source (`nablafuzz.libraries.introspect.catalogue`):
        {"entries": [...], "dropped": [...]}; APIs `derive_specs` covers need not be listed."""
        return {"entries": [], "dropped": []}


@dataclass(frozen=True)
class _Diff:
    index: int


@dataclass(frozen=True)
class _Const:
    value: Any


def _fill(slot: Any, dx: Sequence[Any]) -> Any:
    if isinstance(slot, list):
        return [_fill(s, dx) for s in slot]
    return dx[slot.index] if isinstance(slot, _Diff) else slot.value


@dataclass(frozen=True)
class BoundCall:
    """A function of the differentiable inputs only; `diff_outputs` picks outputs to differentiate."""

    fn: Callable[..., Any]
    diff_outputs: Tuple[int, ...] | None


# Note [second order by composition]
# With a cotangent v and tangents u, w, Q(x) = <v, J(x) u> is a scalar function of x, computable
# natively by reverse mode (<vjp(v), u>) or forward mode (<v, jvp(u)>).  Any first-order
# scenario applied to Q along w gives v^T D^2 f(x)[u, w]; scenario "fwd.rev" is the JVP (outer)
# of the VJP-based Q (inner).  All compositions must agree, and finite differences of Q
# (`fd.rev`, `fd.fwd`) are their reference.
class ComposableAdapter(Adapter):
    """Scenarios from native `vjp` / `jvp` that can be nested."""

    def vjp(self, f: Call, xs: List[Any], cts: List[Any], create_graph: bool) -> Tuple[List[Any], List[Any]]:
        raise NotImplementedError

    def jvp(self, f: Call, xs: List[Any], tangents: List[Any]) -> Tuple[List[Any], List[Any]]:
        raise NotImplementedError

    def dot(self, a: List[Any], b: List[Any]) -> Any:
        """Native differentiable sum of <a_i, b_i> (a scalar tensor)."""
        raise NotImplementedError

    def _native(self, arrays: Sequence[np.ndarray], like: Sequence[np.ndarray], grad: bool = False) -> List[Any]:
        return [self.from_numpy(np.asarray(a), str(x.dtype), grad) for a, x in zip(arrays, like)]

    def flatten(self, out: Any) -> List[Any]:
        """A call's result as the flat list of output tensors that scenarios compare."""
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def _outputs(self, call: BoundCall) -> Call:
        def f(xs: List[Any]) -> List[Any]:
            outs = self.flatten(call.fn(*xs))
            return outs if call.diff_outputs is None else [outs[i] for i in call.diff_outputs]
        return f

    def direct(self, call, xs):
        return [self.to_numpy(o) for o in self.flatten(call.fn(*self._native(xs, xs)))]

    def first_order(self, mode, call, xs, us, vs):
        f, nx = self._outputs(call), self._native(xs, xs, grad=True)
        if mode == "rev":
            outs, grads = self.vjp(f, nx, self._native(vs, vs), create_graph=False)
            g = [self.to_numpy(t) for t in grads]
            value, scale = project(g, us)
            return FirstOrder(tuple(self.to_numpy(o) for o in outs), value, scale, tuple(g))
        outs, tans = self.jvp(f, nx, self._native(us, xs))
        value, scale = project(vs, [self.to_numpy(t) for t in tans])
        return FirstOrder(tuple(self.to_numpy(o) for o in outs), value, scale)

    def _inner(self, inner: str, f: Call, us: List[Any], vs: List[Any]) -> Call:
        def q(xs: List[Any]) -> List[Any]:
            if inner == "rev":
                _, grads = self.vjp(f, xs, vs, create_graph=True)
                return [self.dot(grads, us)]
            _, tans = self.jvp(f, xs, us)
            return [self.dot(vs, tans)]
        return q

    def third_order(self, outer, middle, inner, call, xs, us, vs, ws, zs):
        nx = self._native(xs, xs, grad=True)
        one = [self.from_numpy(np.ones(()), str(xs[0].dtype))]
        q1 = self._inner(inner, self._outputs(call), self._native(us, xs), self._native(vs, vs))
        q2 = self._inner(middle, q1, self._native(ws, xs), one)
        if outer == "rev":
            _, grads = self.vjp(q2, nx, one, create_graph=False)
            return SecondOrder(*project([self.to_numpy(g) for g in grads], zs))
        _, tans = self.jvp(q2, nx, self._native(zs, xs))
        value = float(self.to_numpy(tans[0]))
        return SecondOrder(value, point_scale(value))

    def entry_library(self) -> Any:
        """The library's functional transforms, as entry_points.entry_value takes them."""
        raise NotImplementedError(f"{self.library} has no functional transforms")

    def entry_point(self, name, call, xs, us, vs, ws):
        lib, f = self.entry_library(), self._outputs(call)
        return entry_value(name, lib, lambda *a: tuple(f(list(a))), self._native(xs, xs), us, vs, ws, project)

    def second_order(self, outer, inner, call, xs, us, vs, ws):
        nx = self._native(xs, xs, grad=True)
        q = self._inner(inner, self._outputs(call), self._native(us, xs), self._native(vs, vs))
        if outer == "rev":
            _, grads = self.vjp(q, nx, [self.from_numpy(np.ones(()), str(xs[0].dtype))], create_graph=False)
            value, scale = project([self.to_numpy(g) for g in grads], ws)
            return SecondOrder(value, scale)
        _, tans = self.jvp(q, nx, self._native(ws, xs))
        value = float(self.to_numpy(tans[0]))
        return SecondOrder(value, point_scale(value))
