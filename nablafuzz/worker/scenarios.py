"""Execution scenarios: the same derivative computed several ways (runs inside the worker).

First order, for cotangent v and tangent u:  rev = <vjp(v), u>,  fwd = <v, jvp(u)>,
fd = <v, (f(x+hu) - f(x-hu)) / 2h> in float64 with Richardson extrapolation.  Second order
composes them (Note [second order by composition] in libraries/base.py): "fwd.rev" is the JVP
of the VJP-based Q(x) = <v, J(x) u> along w, "fd.rev" its finite difference.
Worker-safe: Python 3.10, numpy 1.26.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..core.model import ErrorInfo, Outcome, ScenarioResult
from ..core.quantities import COMPILED, ENTRY_POINTS, FD_KINK, STEP, direction, is_reference
from ..core.tensors import dtype_name
from ..libraries.base import Adapter, BoundCall, project


@dataclass(frozen=True)
class TrialCall:
    """A trial bound in one dtype: the call, its differentiable inputs and the directions."""

    call: BoundCall
    xs: List[np.ndarray]
    us: List[np.ndarray]
    ws: List[np.ndarray]
    vs: List[np.ndarray]
    zs: List[np.ndarray]  # the outer direction of third order


def _cast_inputs(inputs: Sequence[Tuple[Any, bool, bool, str]], dtype: Optional[str]) -> list:
    def cast(v: Any) -> Any:
        if isinstance(v, list):
            return [cast(x) for x in v]
        if dtype and isinstance(v, np.ndarray) and v.dtype.kind == "f":
            return v.astype(dtype)
        return v
    return [(cast(v), d, k, n) for v, d, k, n in inputs]


def bind_trial(adapter: Adapter, fn: Any, request: Dict[str, Any], dtype: Optional[str],
               outputs: Optional[List[np.ndarray]], staged: bool = True) -> TrialCall:
    """Bind the request's inputs (cast to `dtype` if given) and derive u, w (and v from outputs);
    the call gets a staging key when the request asks for staged scenarios (Note [staged scenarios])."""
    inputs = _cast_inputs(request["inputs"], dtype)
    call, xs = adapter.bind(fn, inputs, request.get("diff_outputs"))
    seed = request["seed"]
    if request.get("random"):
        call = BoundCall(_Seeded(adapter, seed, call.fn), call.diff_outputs)
    elif staged and request.get("staged") and call.with_consts is not None:
        call = replace(call, key=staging_key(request, inputs))
    us = [direction(seed, "u", i, x.shape, dtype_name(x.dtype)) for i, x in enumerate(xs)]
    ws = [direction(seed, "w", i, x.shape, dtype_name(x.dtype)) for i, x in enumerate(xs)]
    zs = [direction(seed, "z", i, x.shape, dtype_name(x.dtype)) for i, x in enumerate(xs)] if _third_order(request) else []
    vs = cotangents(seed, outputs or [], call.diff_outputs, dtype)
    return TrialCall(call, xs, us, ws, vs, zs)


def _third_order(request: Dict[str, Any]) -> bool:
    """Whether the request computes a third-order quantity, the only ones that take z."""
    return any(s.count(".") == 2 for s in [*(request.get("scenarios") or ()), request.get("function") or ""])


def staging_key(request: Dict[str, Any], inputs: Sequence[Tuple[Any, bool, bool, str]]) -> Tuple[Any, ...]:
    """What a staged call depends on beside its arrays' shapes and dtypes: the API (with its
    module, layout and projections), the outputs differentiated, and every argument's kind,
    name and Python value (a scalar argument's value is part of a compiled program)."""
    def static(v: Any) -> Any:
        if isinstance(v, list):
            return tuple(static(x) for x in v)
        if isinstance(v, np.ndarray):
            return ("array", str(v.dtype))
        return (type(v).__name__, repr(v))
    around = tuple(json.dumps(request.get(k), sort_keys=True) for k in ("module", "layout", "projections"))
    return (request["api"],) + around + (repr(request.get("diff_outputs")),) + tuple(
        (name, diff, keyword, static(v)) for v, diff, keyword, name in inputs)


def eager(tc: TrialCall) -> TrialCall:
    """`tc` with its call never staged: a trial's direct call stays eager, the reference of the
    compiled scenario's primal outputs (Note [staged scenarios])."""
    return replace(tc, call=replace(tc.call, key=None))


@dataclass(frozen=True)
class _Seeded:
    """A random op's call, re-seeded before every evaluation: each scenario and every finite-
    difference step sees the same random draws, so randomness never looks like a bug."""

    adapter: Adapter
    seed: int
    fn: Callable[..., Any]

    def __call__(self, *xs: Any) -> Any:
        self.adapter.seed(self.seed)
        return self.fn(*xs)


def cotangents(seed: int, outputs: Sequence[np.ndarray], diff_outputs: Optional[Sequence[int]],
               dtype: Optional[str]) -> List[np.ndarray]:
    if not outputs:
        return []
    picked = range(len(outputs)) if diff_outputs is None else diff_outputs
    return [direction(seed, "v", j, outputs[j].shape, dtype or dtype_name(outputs[j].dtype)) for j in picked]


def _error(adapter: Adapter, exc: BaseException) -> Tuple[Outcome, ErrorInfo]:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}".replace("builtins.", "")
    return adapter.classify(exc), ErrorInfo(name, str(exc)[:500])


def timed(adapter: Adapter, scenario: str, body: Callable[[], ScenarioResult]) -> ScenarioResult:
    start = time.perf_counter()
    try:
        r = body()
    except Exception as exc:  # noqa: BLE001 - every library error is an observation
        outcome, err = _error(adapter, exc)
        return ScenarioResult(scenario, outcome, error=err, seconds=time.perf_counter() - start)
    return ScenarioResult(r.scenario, r.outcome, r.value, r.scale, r.error_estimate, r.outputs,
                          r.gradient, r.error, time.perf_counter() - start, r.emulated)


def ad_scenario(adapter: Adapter, tc: TrialCall, scenario: str) -> ScenarioResult:
    """A mode or a composition of modes (first, second or third order)."""
    return _ad_result(adapter, scenario, adapter.at(scenario, tc.call, tc.xs, tc.us, tc.vs, tc.ws, tc.zs))


def _ad_result(adapter: Adapter, scenario: str, r: Any, seconds: float = 0.0) -> ScenarioResult:
    """The ScenarioResult of an adapter's FirstOrder or SecondOrder."""
    emulated = adapter.emulated_fwd and "fwd" in scenario.split(".")
    return ScenarioResult(scenario, Outcome.OK, r.value, r.scale, None, getattr(r, "outputs", ()),
                          getattr(r, "gradient", ()), seconds=seconds, emulated=emulated)


def compiled_first_order(adapter: Adapter, fn: Any, request: Dict[str, Any],
                         outputs: List[np.ndarray]) -> ScenarioResult:
    """The VJP of the compiled function, with its primal outputs (compared with eager ones)."""
    tc = bind_trial(adapter, adapter.compiled(fn), request, None, outputs, staged=False)
    fo = adapter.first_order("rev", tc.call, tc.xs, tc.us, tc.vs)
    return ScenarioResult(COMPILED, Outcome.OK, fo.value, fo.scale, None, fo.outputs, fo.gradient)


def entry_point(adapter: Adapter, tc: TrialCall, scenario: str) -> ScenarioResult:
    value, scale = adapter.entry_point(scenario, tc.call, tc.xs, tc.us, tc.vs, tc.ws)
    return ScenarioResult(scenario, Outcome.OK, value, scale)




def step_fits(xs: Sequence[np.ndarray], ds: Sequence[np.ndarray], h: float) -> bool:
    """Whether x + h*d moves every element by h*d to within 1e-6 (huge inputs absorb the step)."""
    for x, d in zip(xs, ds):
        with np.errstate(invalid="ignore", over="ignore"):
            moved = (x + h * d) - x
            if not np.all(np.abs(moved - h * d) <= 1e-6 * np.abs(h * d)):
                return False
    return True


# Note [finite differences]
# Central differences at h, h/2, h/4 are extrapolated twice (Richardson); the error estimate is
# the gap between the two extrapolations plus roundoff.  A kink or jump within reach of the
# step (|x| near 0 with h larger than |x|) makes central differences converge to a wrong
# value with a small error estimate, so we also watch the second difference
# (P(x+h) - 2 P(x) + P(x-h)) / h: it halves with h at a smooth point, and does not (it stays
# put, or vanishes abruptly) when a kink is within reach of the larger steps.
# Then the reference is reported unusable (infinite error).  And when the
# gaps between D(h), D(h/2), D(h/4) do not shrink by about 4 (the h^2 law Richardson relies
# on), the error estimate falls back to the spread of the raw differences.
def richardson(scalar: Callable[[float], float], h: float, eps: float = float(np.finfo(np.float64).eps)
               ) -> Tuple[float, float, float]:
    """Finite-difference derivative of scalar(t) at t=0: (value, error estimate, scale);
    `eps` is the unit roundoff of the values scalar(t) is computed from."""
    return _extrapolated(scalar, h, eps)[:3]


def _extrapolated(scalar: Callable[[float], float], h: float, eps: float) -> Tuple[float, float, float, bool]:
    """`richardson`, and whether a kink within reach of the steps made the reference unusable."""
    p0 = scalar(0.0)
    ds, ps, curv = [], [p0], []
    for k in (1.0, 0.5, 0.25):
        plus, minus = scalar(h * k), scalar(-h * k)
        ps += [plus, minus]
        ds.append((plus - minus) / (2 * h * k))
        curv.append((plus - 2 * p0 + minus) / (h * k))
    r1 = (4 * ds[1] - ds[0]) / 3
    r2 = (4 * ds[2] - ds[1]) / 3
    roundoff = 8 * eps * max(abs(p) for p in ps) / (h * 0.25)
    err = abs(r2 - r1) + roundoff
    if not _asymptotic(ds, roundoff):
        err = max(err, abs(ds[0] - ds[2]))
    kinked = bool(np.all(np.isfinite(ps))) and not _curvature_scales(curv, roundoff, max(abs(d) for d in ds))
    if kinked or not np.isfinite(r2) or not np.isfinite(err):
        return float("nan"), float("inf"), float("nan"), kinked
    return float(r2), float(err), float(max(abs(d) for d in ds)), False


def _curvature_scales(curv: Sequence[float], noise: float, size: float) -> bool:
    """Whether each second difference is about half the previous one (curv(h) ~ h P'' at a
    smooth point); a kink or jump within reach of the larger steps breaks that."""
    floor = 4 * noise + 1e-9 * size
    for big, small in zip(curv, curv[1:]):
        if abs(big) <= floor:
            if abs(small) > floor:
                return False
        elif not 0.3 <= small / big <= 0.7:
            return False
    return True


def _asymptotic(ds: Sequence[float], noise: float) -> bool:
    """Whether D(h), D(h/2), D(h/4) shrink their gaps by about 4 (error ~ h^2), as Richardson
    assumes; a kink crossed only at the larger steps breaks that pattern."""
    d01, d12 = ds[0] - ds[1], ds[1] - ds[2]
    if abs(d01) <= 4 * noise and abs(d12) <= 4 * noise:
        return True
    if abs(d12) <= noise:
        return False
    return 2.0 <= d01 / d12 <= 8.0


def perturbed(xs: Sequence[np.ndarray], ds: Sequence[np.ndarray], h: float) -> List[np.ndarray]:
    return [x + h * d for x, d in zip(xs, ds)]


def finite_differences(adapter: Adapter, tc: TrialCall, scenarios: Sequence[str],
                       eps: Optional[float] = None) -> Dict[str, ScenarioResult]:
    """Several finite-difference scenarios, their evaluations (seven points each) given to the
    adapter at once (`at_points`: one compiled kernel where staged, one synchronisation where
    asynchronous); `eps` defaults to the outputs' roundoff at the unperturbed point.

    The step is absolute (like gradcheck's eps); where an input is so large that it absorbs
    the step, the reference is reported unusable (NaN, infinite error) rather than wrong.
    """
    steps = (0.0, STEP, -STEP, STEP / 2, -STEP / 2, STEP / 4, -STEP / 4)  # the points `richardson` asks for
    out, jobs = {}, []
    for s in scenarios:
        inner = s.partition(".")[2]
        along = tc.zs if "." in inner else tc.ws if inner else tc.us
        if step_fits(tc.xs, along, STEP / 4) and step_fits(tc.xs, along, STEP):
            jobs.append((s, inner or "direct", [perturbed(tc.xs, along, h) for h in steps]))
        else:
            out[s] = ScenarioResult(s, Outcome.OK, float("nan"), float("nan"), float("inf"))
    got = adapter.at_points([(kind, points) for _, kind, points in jobs], tc.call, tc.us, tc.vs, tc.ws, tc.zs)
    if eps is None:
        at_x = next((g[0] for (_, kind, _), g in zip(jobs, got) if kind == "direct"), None)
        eps = _output_eps(adapter.direct(tc.call, tc.xs) if at_x is None else at_x)
    for (s, kind, _), values in zip(jobs, got):
        table = {h: (_projected_outputs(tc, g) if kind == "direct" else g.value) for h, g in zip(steps, values)}
        value, err, scale, kinked = _extrapolated(table.__getitem__, STEP, eps)
        why = ErrorInfo(FD_KINK, "differences along the direction cross a kink within the steps") if kinked else None
        out[s] = ScenarioResult(s, Outcome.OK, value, scale, err, error=why)
    return out


def _projected_outputs(tc: TrialCall, outs: Sequence[np.ndarray]) -> float:
    """<v, f> of the direct call's outputs; NaN where an output's shape changed within a step
    (a set op at a tie: no derivative)."""
    picked = outs if tc.call.diff_outputs is None else [outs[j] for j in tc.call.diff_outputs]
    if [np.shape(o) for o in picked] != [np.shape(v) for v in tc.vs]:
        return float("nan")
    return project(tc.vs, picked)[0]


def _output_eps(outs: Sequence[np.ndarray]) -> float:
    """The roundoff of the outputs: an op that returns float32 from float64 inputs (a cast)
    gives finite differences only float32 resolution."""
    eps = [float(np.finfo(o.dtype).eps) for o in outs if np.asarray(o).dtype.kind == "f"]
    return max(eps, default=float(np.finfo(np.float64).eps))


def run_scenarios(adapter: Adapter, fn: Any, request: Dict[str, Any]) -> Iterator[ScenarioResult]:
    """Run `direct` then the requested scenarios; stop after a failed direct call."""
    for batch in scenario_batches(adapter, fn, request):
        yield from batch.results


@dataclass(frozen=True)
class Batch:
    """Results computed before the next computation begins (Note [answers in batches])."""
    results: Tuple[ScenarioResult, ...]
    last: bool


# Note [answers in batches]
# The orchestrator learns which scenario a crash or a timeout killed from the results that
# reached it before (runtime/runner.py: the first scenario without one), so each result must be
# on the pipe before the next scenario is computed.  Results computed together (the fused AD
# scenarios, the references, Note [staged scenarios]) need not be sent one by one: the worker
# writes each batch in one write, the last with its `done`.  A JAX trial went from about 15
# writes, each waking the orchestrator's reader, to 4.
def scenario_batches(adapter: Adapter, fn: Any, request: Dict[str, Any]) -> Iterator[Batch]:
    """`run_scenarios`'s results in batches: each is yielded before the next computation."""
    wanted = [s for s in request["scenarios"] if s != "direct"]
    base = bind_trial(adapter, fn, request, None, None)
    direct = timed(adapter, "direct", lambda: ScenarioResult(
        "direct", Outcome.OK, outputs=tuple(adapter.direct(eager(base).call, base.xs))))
    failed = direct.outcome is not Outcome.OK or not base.xs  # or nothing to differentiate (only integers drawn)
    yield Batch((direct,), failed or not wanted)
    if failed:
        return
    tc = replace(base, vs=cotangents(request["seed"], list(direct.outputs), base.call.diff_outputs, None))
    refs = [s for s in wanted if is_reference(s)]
    at64: Dict[str, Any] = {}  # the float64 call, and the references computed together (or None)

    def reference(s: str) -> ScenarioResult:
        # inside `timed`: an op without float64 kernels makes the references fail, not the worker
        if "call" not in at64:
            at64["call"] = bind_trial(adapter, fn, request, "float64", list(direct.outputs))
            try:  # all together; if one fails, each alone, with its own outcome
                at64["done"] = finite_differences(adapter, at64["call"], refs)
            except Exception:  # noqa: BLE001
                at64["done"] = None
        done = at64["done"]
        return done[s] if done is not None else finite_differences(adapter, at64["call"], [s])[s]

    fusable = [s for s in wanted if s != COMPILED and not is_reference(s) and s not in ENTRY_POINTS]
    done: Dict[str, ScenarioResult] = {}
    pending: List[ScenarioResult] = []
    for s in wanted:
        computed = s in done or (is_reference(s) and at64.get("done") is not None)
        if pending and not computed:
            yield Batch(tuple(pending), False)
            pending = []
        if fusable and s == fusable[0]:  # computed where the first of them runs (a crash in it is attributed there)
            done = _fused(adapter, tc, fusable)
        if s in done:
            pending.append(done[s])
        elif s == COMPILED:
            pending.append(timed(adapter, s, lambda: compiled_first_order(adapter, fn, request, list(direct.outputs))))
        elif is_reference(s):
            pending.append(timed(adapter, s, lambda: reference(s)))
        elif s in ENTRY_POINTS:
            pending.append(timed(adapter, s, lambda: entry_point(adapter, tc, s)))
        else:
            pending.append(timed(adapter, s, lambda: ad_scenario(adapter, tc, s)))
    if pending:
        yield Batch(tuple(pending), True)


def _fused(adapter: Adapter, tc: TrialCall, scenarios: Sequence[str]) -> Dict[str, ScenarioResult]:
    """The AD scenarios of a staged call in one compiled kernel (Note [staged scenarios]), each
    given an equal share of its time; {} where the call is not staged or the kernel fails or
    cannot be compiled (the scenarios then run one by one, each with its own outcome: Note
    [fused kernel alone] in libraries/base.py)."""
    if not adapter.stages or tc.call.key is None or len(scenarios) < 2:
        return {}
    start = time.perf_counter()
    try:
        got = adapter.fused(scenarios, tc.call, tc.xs, tc.us, tc.vs, tc.ws, tc.zs)
    except Exception:  # noqa: BLE001 - each scenario runs alone and reports its own error
        return {}
    share = (time.perf_counter() - start) / len(scenarios)
    return {s: _ad_result(adapter, s, r, share) for s, r in got.items()}


def probe(adapter: Adapter, fn: Any, request: Dict[str, Any]) -> List[float]:
    """Scalar values at perturbed points, in float64, for the filters.

    `request["function"]` is "direct" (P = <v, f>), a first-order mode (Q) or a second-order
    AD scenario; each point is (input index, flat element index, step) and (-1, 0, 0.0) means
    the unperturbed input.
    """
    outs = adapter.direct(*_direct_args(adapter, fn, request))
    tc = bind_trial(adapter, fn, request, "float64", outs)
    fname = request["function"]
    values = []
    for i, k, h in request["points"]:
        xs = [x.copy() for x in tc.xs]
        if i >= 0:
            xs[i].reshape(-1)[k] += h
        if fname == "direct":
            got = adapter.direct(tc.call, xs)
            picked = got if tc.call.diff_outputs is None else [got[j] for j in tc.call.diff_outputs]
            values.append(project(tc.vs, picked)[0])
        elif fname in ENTRY_POINTS:
            values.append(adapter.entry_point(fname, tc.call, xs, tc.us, tc.vs, tc.ws)[0])
        else:
            values.append(adapter.at(fname, tc.call, xs, tc.us, tc.vs, tc.ws, tc.zs).value)
    return values


def _direct_args(adapter: Adapter, fn: Any, request: Dict[str, Any]) -> Tuple[BoundCall, List[np.ndarray]]:
    tc = bind_trial(adapter, fn, request, "float64", None)
    return tc.call, tc.xs
