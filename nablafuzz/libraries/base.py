"""The adapter interface (worker side) and the composable base for real AD libraries.

An adapter owns everything library-specific: resolving an API name, converting arrays,
reverse and forward mode, and classifying exceptions.  The scenario engine in
`nablafuzz.worker.scenarios` only talks to this interface.

`ComposableAdapter` builds every scenario from two native primitives, `vjp` and `jvp`, by
composition (Note [second order by composition]); a library adapter implements those two.
Worker-safe: Python 3.10, numpy 1.26, no orchestrator imports.
"""
from __future__ import annotations

import collections
import functools
import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from ..core.model import Outcome
from ..core.structures import projected_value
from ..core.tensors import dtype_name
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


class Plan(NamedTuple):
    """A scenario as a kernel: `kernel(fn, x, *args)` maps the call (`fn`, of the native
    differentiable inputs) and the native inputs `x` to native results; `done` turns those
    into the scenario's numbers (Note [staged scenarios])."""
    kernel: Callable[..., Any]
    args: Tuple[Any, ...]
    done: Callable[[Any], Any]


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
            xy = x * y  # |x||y| is |xy|, bit for bit; a non-finite x or y makes xy non-finite
            finite = finite and bool(np.isfinite(xy).all() or (np.isfinite(x).all() and np.isfinite(y).all()))
            value += float(xy.sum())
            scale += float(np.abs(xy).sum())
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
    stages: bool = False  # compiles scenario kernels (`staged`) when a call has a key
    host_inputs: bool = False  # compiled kernels take numpy inputs (Note [host inputs])

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
        consts: List[Any] = []
        slots = [(name, keyword, self._slot(value, diff, xs, consts)) for value, diff, keyword, name in inputs]

        def with_consts(cs: Sequence[Any], *dx: Any) -> Any:
            args, kwargs = [], {}
            for name, keyword, slot in slots:
                value = _fill(slot, dx, cs)
                if keyword:
                    kwargs[name] = value
                else:
                    args.append(value)
            return fn(*args, **kwargs)

        outs = None if diff_outputs is None else tuple(diff_outputs)
        return BoundCall(lambda *dx: with_consts(consts, *dx), outs, tuple(consts), with_consts), xs

    def _slot(self, value: Any, diff: bool, xs: List[np.ndarray], consts: List[Any]) -> Any:
        if isinstance(value, list):
            return [self._slot(v, diff, xs, consts) for v in value]
        if isinstance(value, np.ndarray):
            if diff and value.dtype.kind == "f":
                xs.append(value)
                return _Diff(len(xs) - 1)
            consts.append(self.from_numpy(value, dtype_name(value.dtype)))
            return _Array(len(consts) - 1)
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

    def at_points(self, jobs: Sequence[Tuple[str, Sequence[List[np.ndarray]]]], call: "BoundCall",
                  us: List[np.ndarray], vs: List[np.ndarray], ws: List[np.ndarray],
                  zs: List[np.ndarray]) -> List[List[Any]]:
        """For each job (scenario, points): the scenario ("direct", a mode or a composition) at
        each point (an input list): the direct call's outputs, or its FirstOrder / SecondOrder
        (the evaluations of finite differences)."""
        return [[self.at(scenario, call, xs, us, vs, ws, zs) for xs in points] for scenario, points in jobs]

    def at(self, scenario: str, call: "BoundCall", xs: List[np.ndarray], us: List[np.ndarray],
            vs: List[np.ndarray], ws: List[np.ndarray], zs: List[np.ndarray]) -> Any:
        if scenario == "direct":
            return self.direct(call, xs)
        if "." not in scenario:
            return self.first_order(scenario, call, xs, us, vs)
        if scenario.count(".") == 1:
            return self.second_order(*scenario.split("."), call, xs, us, vs, ws)
        return self.third_order(*scenario.split("."), call, xs, us, vs, ws, zs)

    def fused(self, scenarios: Sequence[str], call: "BoundCall", xs: List[np.ndarray], us: List[np.ndarray],
              vs: List[np.ndarray], ws: List[np.ndarray], zs: List[np.ndarray]) -> Dict[str, Any]:
        """Several AD scenarios at once, {scenario: FirstOrder or SecondOrder}; an adapter that
        stages computes them in one compiled kernel, any error failing them all."""
        return {s: self.at(s, call, xs, us, vs, ws, zs) for s in scenarios}

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

    def compiles(self) -> int:
        """Compilations (or traces) this worker has made so far, where the library counts them."""
        return 0

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


_EAGER = object()  # a staged key whose kernel cannot be compiled: it runs eagerly from then on


class NotStaged(RuntimeError):
    """A fused kernel that cannot be compiled for this key (Note [fused kernel alone])."""


# Note [fused kernel alone]
# A fused kernel (`fused`: a trial's AD scenarios in one compiled program) that fails to compile
# for a key once ran eagerly on every trial of that key, all its scenarios together: TensorFlow's
# clip_by_norm, whose graph-mode forward-over-forward raises, ran all six scenarios eagerly on
# every trial.  Such a kernel now raises NotStaged, then and for that key from then on, and the
# worker runs the scenarios one by one (worker/scenarios._fused), each compiled where it can be
# and eager where it cannot: an error is still eager's, and each scenario keeps its own outcome.
# clip_by_norm's warm trial went from 186 to 142 ms (its eager forward-over-forward remains).


STAGED_KEEP = 512  # compiled kernels kept per worker (least recently used dropped first)


@dataclass(frozen=True)
class _Diff:
    index: int


@dataclass(frozen=True)
class _Array:
    index: int  # into the call's constant arrays


@dataclass(frozen=True)
class _Const:
    value: Any


def _fill(slot: Any, dx: Sequence[Any], consts: Sequence[Any]) -> Any:
    if isinstance(slot, list):
        return [_fill(s, dx, consts) for s in slot]
    if isinstance(slot, _Diff):
        return dx[slot.index]
    return consts[slot.index] if isinstance(slot, _Array) else slot.value


@dataclass(frozen=True)
class BoundCall:
    """A function of the differentiable inputs only; `diff_outputs` picks outputs to differentiate.

    For staging (Note [staged scenarios]): `consts` are the call's non-differentiable arrays
    (native), `with_consts(consts, *dx)` the same call with them passed in, and `key` what else
    the call depends on (the API and its Python-valued arguments; None: never staged)."""

    fn: Callable[..., Any]
    diff_outputs: Tuple[int, ...] | None
    consts: Tuple[Any, ...] = ()
    with_consts: Callable[..., Any] | None = None
    key: Any = None


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
        return [self.from_numpy(np.asarray(a), dtype_name(x.dtype), grad) for a, x in zip(arrays, like)]

    # Note [host inputs]
    # A staged kernel's inputs (`plan`'s arguments, the points of `at_points`) are made for each
    # trial.  JAX's jit takes numpy arrays itself, in one C++ call for all of them, where
    # `jnp.asarray` runs a copy primitive per array (about 70 us each when its shape was seen, a
    # compilation when not: a seventh of a warm JAX campaign's worker time went to it).  So an
    # adapter with `host_inputs` gives its staged kernels numpy arrays of the native dtype, and
    # `staged`'s eager path makes them native first: an eager kernel, and the API in it, see
    # exactly what they saw before.
    def _kernel_inputs(self, arrays: Sequence[np.ndarray], like: Sequence[np.ndarray],
                       grad: bool = False) -> List[Any]:
        """Inputs of a staged kernel (Note [host inputs])."""
        if self.host_inputs:
            return [np.asarray(a, dtype=dtype_name(x.dtype)) for a, x in zip(arrays, like)]
        return self._native(arrays, like, grad)

    def _made_native(self, tree: Any) -> Any:
        """The numpy arrays in nested lists and tuples as native arrays (Note [host inputs])."""
        if isinstance(tree, (list, tuple)):
            return type(tree)(self._made_native(t) for t in tree)
        return self.from_numpy(tree, dtype_name(tree.dtype)) if isinstance(tree, np.ndarray) else tree

    def flatten(self, out: Any) -> List[Any]:
        """A call's result as the flat list of output tensors that scenarios compare."""
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def _outputs(self, call: BoundCall) -> Call:
        return self._picked(call.fn, call.diff_outputs)

    def _picked(self, fn: Callable[..., Any], diff_outputs: Tuple[int, ...] | None) -> Call:
        def f(xs: List[Any]) -> List[Any]:
            outs = self.flatten(fn(*xs))
            return outs if diff_outputs is None else [outs[i] for i in diff_outputs]
        return f

    # Note [staged scenarios]
    # Each scenario is a kernel: a function of the call (as a function of its differentiable
    # inputs) and of native arrays, returning native arrays.  `staged` runs it eagerly here; an
    # adapter whose library compiles whole programs cheaply (jax.jit, tf.function) compiles it
    # once per (scenario, call key) and runs the compiled program on the arrays, the call's
    # constant arrays passed in too, so a signature seen before costs no compilation.  The AD
    # scenarios of a trial are fused into one kernel (`fused`), and its finite differences'
    # evaluations into another (`at_points`): two compilations per new signature, beside the
    # library's own for the eager direct call and the compiled scenario `jit` (the VJP of the
    # library's compiled call, which so stays a differential against the fused kernel's).  A
    # call without a key (a trial's direct call, the compiled scenario's call, random ops)
    # always runs eagerly; a kernel that fails staged runs eagerly (the adapter's `staged`).
    def staged(self, call: BoundCall, name: str, kernel: Callable[..., Any], alone: bool = False) -> Callable[..., Any]:
        """`kernel(fn, *arrays)` as a function of the arrays, `fn` the call of the differentiable
        inputs (raw outputs): compiled once per (scenario, call key) where the adapter stages
        (Note [staged scenarios]), eager otherwise.  A kernel that fails compiled runs eagerly,
        then and for that key from then on: eager's error is the one reported, and a kernel that
        needs a concrete value (or reads one in Python) still runs.  With `alone` (the fused
        kernel of several scenarios), one that fails compiled raises NotStaged instead, then and
        from then on: its scenarios run one by one, each compiled where it can be, rather than
        all of them eagerly (Note [fused kernel alone])."""
        def eager(*arrays: Any) -> Any:
            return kernel(call.fn, *(self._made_native(arrays) if self.host_inputs else arrays))
        if not self.stages or call.key is None:
            return eager
        cache = self.__dict__.setdefault("_staged", collections.OrderedDict())
        key = (name, call.key)
        compiled = cache.get(key)
        if compiled is None:
            with_consts = call.with_consts
            compiled = cache[key] = self.compile_kernel(
                lambda consts, *arrays: kernel(functools.partial(with_consts, consts), *arrays))
            while len(cache) > STAGED_KEEP:
                cache.popitem(last=False)
        cache.move_to_end(key)
        if compiled is _EAGER:
            if alone:
                raise NotStaged(name)
            return eager

        def run(*arrays: Any) -> Any:
            try:
                return self.run_compiled(compiled, call.consts, arrays)
            except Exception:  # noqa: BLE001 - eager decides: its error, or its result
                cache[key] = _EAGER  # what fails staged (not traceable, or not differentiable so) stays eager
                if alone:
                    raise
                return eager(*arrays)
        return run

    def compile_kernel(self, fn: Callable[..., Any]) -> Any:
        """`fn(consts, *arrays)` compiled by the library (jax.jit, tf.function), for `staged`."""
        raise NotImplementedError(f"{self.library} does not stage scenarios")

    def run_compiled(self, compiled: Any, consts: Tuple[Any, ...], arrays: Sequence[Any]) -> Any:
        """The compiled kernel's results on the arrays, computed (not merely dispatched)."""
        return compiled(list(consts), *arrays)

    def plan(self, scenario: str, call: BoundCall, xs: List[np.ndarray], us: List[np.ndarray],
             vs: List[np.ndarray], ws: List[np.ndarray], zs: List[np.ndarray]) -> Plan:
        """How this adapter computes `scenario` ("direct", a mode or a composition) as a kernel of
        the native inputs (Note [staged scenarios])."""
        picked, nd = call.diff_outputs, scenario.count(".")
        if scenario == "direct":
            return Plan(lambda fn, x: self.flatten(fn(*x)), (), lambda outs: [self.to_numpy(o) for o in outs])
        if scenario == "rev":
            def rev_done(got: Any) -> FirstOrder:
                g = [self.to_numpy(t) for t in got[1]]
                return FirstOrder(tuple(self.to_numpy(o) for o in got[0]), *project(g, us), tuple(g))
            return Plan(lambda fn, x, v: self.vjp(self._picked(fn, picked), x, v, False),
                        (self._kernel_inputs(vs, vs),), rev_done)
        if scenario == "fwd":
            def fwd_done(got: Any) -> FirstOrder:
                return FirstOrder(tuple(self.to_numpy(o) for o in got[0]),
                                  *project(vs, [self.to_numpy(t) for t in got[1]]))
            return Plan(lambda fn, x, u: self.jvp(self._picked(fn, picked), x, u),
                        (self._kernel_inputs(us, xs),), fwd_done)
        modes = scenario.split(".")
        outer, along = modes[0], (ws if nd == 1 else zs)

        def kernel(fn: Any, x: Any, u: Any, v: Any, w: Any, z: Any, one: Any) -> Any:
            q = self._inner(modes[-1], self._picked(fn, picked), u, v)
            if nd == 2:
                q = self._inner(modes[1], q, w, one)
            return self._last(outer, q, x, w if nd == 1 else z, one)
        args = tuple(self._kernel_inputs(a, like) for a, like in ((us, xs), (vs, vs), (ws, xs), (zs, xs)))
        args += (self._one(xs),)
        return Plan(kernel, args, lambda got: self._order_value(outer, got, along))

    def _planned(self, scenario: str, call: BoundCall, xs, us=(), vs=(), ws=(), zs=()) -> Any:
        p = self.plan(scenario, call, xs, list(us), list(vs), list(ws), list(zs))
        return p.done(self.staged(call, scenario, p.kernel)(self._kernel_inputs(xs, xs, grad=True), *p.args))

    def direct(self, call, xs):
        return self._planned("direct", call, xs)

    def first_order(self, mode, call, xs, us, vs):
        return self._planned(mode, call, xs, us, vs)

    def second_order(self, outer, inner, call, xs, us, vs, ws):
        return self._planned(f"{outer}.{inner}", call, xs, us, vs, ws, [])

    def third_order(self, outer, middle, inner, call, xs, us, vs, ws, zs):
        return self._planned(f"{outer}.{middle}.{inner}", call, xs, us, vs, ws, zs)

    def at_points(self, jobs, call, us, vs, ws, zs):
        """Staged: one compiled kernel evaluates one point of every job, called once per point:
        a seventh of the unrolled program to trace and compile (a new signature's cost), for
        seven dispatches (a seen signature's); eagerly where the kernel fails (`staged`)."""
        if not self.stages or call.key is None or len({len(points) for _, points in jobs}) != 1:
            return super().at_points(jobs, call, us, vs, ws, zs)
        plans = [self.plan(s, call, points[0], list(us), list(vs), list(ws), list(zs)) for s, points in jobs]
        kernel = self.staged(call, "point:" + "@".join(s for s, _ in jobs),
                             lambda fn, xs, args: [p.kernel(fn, x, *a) for p, x, a in zip(plans, xs, args)])
        args = [p.args for p in plans]
        got = [kernel([self._kernel_inputs(points[i], points[i], grad=True) for _, points in jobs], args)
               for i in range(len(jobs[0][1]))]
        return [[p.done(point[k]) for point in got] for k, p in enumerate(plans)]

    def fused(self, scenarios, call, xs, us, vs, ws, zs):
        """Staged: the scenarios in one compiled kernel (one compilation per signature for all)."""
        if not self.stages or call.key is None:
            return super().fused(scenarios, call, xs, us, vs, ws, zs)
        plans = [self.plan(s, call, xs, list(us), list(vs), list(ws), list(zs)) for s in scenarios]
        kernel = self.staged(call, "+".join(scenarios),
                             lambda fn, x, *a: [p.kernel(fn, x, *args) for p, args in zip(plans, a)], alone=True)
        got = kernel(self._kernel_inputs(xs, xs, grad=True), *[p.args for p in plans])
        return {s: p.done(g) for s, p, g in zip(scenarios, plans, got)}

    def _inner(self, inner: str, f: Call, us: List[Any], vs: List[Any]) -> Call:
        def q(xs: List[Any]) -> List[Any]:
            if inner == "rev":
                _, grads = self.vjp(f, xs, vs, create_graph=True)
                return [self.dot(grads, us)]
            _, tans = self.jvp(f, xs, us)
            return [self.dot(vs, tans)]
        return q

    def _one(self, xs: Sequence[np.ndarray]) -> List[Any]:
        return self._kernel_inputs([np.ones(())], xs[:1])

    def _last(self, outer: str, q: Call, nx: List[Any], along: List[Any], one: List[Any]) -> Any:
        """`outer` mode of the scalar q at nx: its gradient (rev), or its JVP along `along`."""
        if outer == "rev":
            return self.vjp(q, nx, one, create_graph=False)[1]
        return self.jvp(q, nx, along)[1][0]

    def _order_value(self, outer: str, got: Any, along: Sequence[np.ndarray]) -> SecondOrder:
        if outer == "rev":
            return SecondOrder(*project([self.to_numpy(g) for g in got], along))
        value = float(self.to_numpy(got))
        return SecondOrder(value, point_scale(value))

    def entry_library(self) -> Any:
        """The library's functional transforms, as entry_points.entry_value takes them."""
        raise NotImplementedError(f"{self.library} has no functional transforms")

    def entry_point(self, name, call, xs, us, vs, ws):
        lib, f = self.entry_library(), self._outputs(call)
        return entry_value(name, lib, lambda *a: tuple(f(list(a))), self._native(xs, xs), us, vs, ws, project)
