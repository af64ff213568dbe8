"""Runs trials on a worker: `Trial` in, `Execution` out (typed results, or how the worker died)."""
from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ..core.errors import BudgetExhausted, RefusedError, WorkerError
from ..core.model import (ApiSpec, ArgKind, Death, ErrorInfo, Execution, InputValue, Outcome, ScenarioResult,
                          TensorRecord, Trial, records)
from ..core.quantities import KERNELS
from ..core.tensors import to_array
from ..libraries import record
from ..libraries.descriptor import UNFORKED
from .process import Runtime, WorkerProcess


def _wire_value(i: InputValue) -> Any:
    if i.kind is ArgKind.DTYPE and i.value is not None:
        return {"dtype": i.value}  # the adapter turns it into its library's dtype object
    if isinstance(i.value, TensorRecord):
        return to_array(i.value)
    rs = records(i.value)
    if rs:
        return [to_array(r) for r in rs]
    return list(i.value) if isinstance(i.value, tuple) else i.value


def trial_request(trial: Trial, spec: ApiSpec, scenarios: Sequence[str], staged: bool = False) -> Dict[str, Any]:
    """The wire request.  The callable is named by the loaded spec, never by the trial (which may
    come from a report file): a trial that names another API is refused.  `staged` asks for
    compiled scenario kernels (Note [staged scenarios])."""
    if (trial.library, trial.api) != (spec.library, spec.name):
        raise RefusedError(f"trial names {trial.library}:{trial.api} but runs under the spec of "
                           f"{spec.library}:{spec.name}; refusing to run it (reports are data, never code)")
    return {
        "op": "run", "api": spec.name, "seed": trial.seed, "random": spec.random,
        "diff_outputs": None if trial.diff_outputs is None else list(trial.diff_outputs),
        "scenarios": list(scenarios),
        "module": {"init": list(spec.init), "kwargs": dict(spec.init_kwargs)} if spec.module else None,
        "inputs": [{"name": i.name, "value": _wire_value(i), "differentiable": i.differentiable,
                    "keyword": i.keyword} for i in trial.inputs],
        "layout": {name: list(perm) for name, perm in trial.layout},
        "projections": dict(trial.projections),
        "staged": staged,
    }


def _result(msg: Dict[str, Any]) -> ScenarioResult:
    err = msg.get("error")
    return ScenarioResult(
        scenario=msg["scenario"], outcome=Outcome(msg["outcome"]), value=msg.get("value"),
        scale=msg.get("scale"), error_estimate=msg.get("error_estimate"),
        outputs=tuple(msg.get("outputs") or ()), gradient=tuple(msg.get("gradient") or ()),
        error=None if err is None else ErrorInfo(err["type"], err["message"]),
        seconds=float(msg.get("seconds", 0.0)), emulated=bool(msg.get("emulated")),
    )


def _dead(scenario: str, death: Death) -> ScenarioResult:
    outcome = Outcome.TIMEOUT if death.kind == "timeout" else Outcome.CRASHED
    return ScenarioResult(scenario, outcome, error=ErrorInfo(death.kind, death.detail))


class Runner:
    """A worker plus the trial encoding; restarts the worker after a crash or timeout.

    `deadline` (time.monotonic) bounds every request: a request is given at most what is left,
    and one the deadline cut short raises BudgetExhausted instead of reporting a timeout.
    `staged` runs trials and probes with compiled scenario kernels (Note [staged scenarios]);
    `compiles` is the worker's count of compilations after its last trial (0 where none are counted);
    `library_seconds` the time its workers spent in the library's calls (scenarios and probes, as
    the worker times them), summed over the runner's life."""

    def __init__(self, runtime: Runtime, log_path: Path, timeout_s: float, deadline: Optional[float] = None,
                 staged: bool = False):
        self.worker = WorkerProcess(runtime, log_path)
        self.timeout_s = timeout_s
        self.deadline = deadline
        self.staged = staged
        self.compiles = 0
        self.library_seconds = 0.0
        self.runtime, self.log_path = runtime, log_path
        self.variant: Optional[WorkerProcess] = None  # the other kernels' worker, started on first use
        self.unforked: Optional[WorkerProcess] = None  # for APIs a forked worker is stuck on (Note [stuck child])
        self.stuck: Set[str] = set()  # those APIs

    def left(self) -> float:
        """Seconds left before the deadline (inf without one)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def _request(self, request: Dict[str, Any], timeout_s: Optional[float], until: str,
                 worker: Optional[WorkerProcess] = None):
        """One request, given at most what is left before the deadline; BudgetExhausted if
        none is left, or if the deadline (not the trial's own timeout) cut it short."""
        want = timeout_s or self.timeout_s
        left = self.left()
        if left <= 0:
            raise BudgetExhausted()
        if worker is None and request.get("api") in self.stuck:
            worker = self._unforked()
        ex = (worker or self.worker).request(request, min(want, left), until=until)
        if ex.death is not None and ex.death.kind == "stuck":  # Note [stuck child]: that API runs unforked
            self.stuck.add(request.get("api"))
            return self._request(request, timeout_s, until, self._unforked())
        if left < want and ex.death is not None and ex.death.kind == "timeout":
            raise BudgetExhausted()
        return ex

    def _unforked(self) -> WorkerProcess:
        if self.unforked is None:
            self.unforked = WorkerProcess(replace(self.runtime, env=self.runtime.env + ((UNFORKED, "1"),)),
                                          self.log_path.with_name(self.log_path.stem + "-unforked.log"))
        self.unforked.ensure()
        return self.unforked

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """Trials and probes run eagerly inside (a staged campaign re-establishes its findings so)."""
        was, self.staged = self.staged, False
        try:
            yield
        finally:
            self.staged = was

    def restart(self) -> None:
        """A fresh worker: nothing a previous trial left in the process survives."""
        self.worker.restart()
        for other in (self.variant, self.unforked):
            if other is not None:
                other.restart()

    @property
    def versions(self) -> Dict[str, str]:
        self.worker.ensure()
        return self.worker.versions

    def run(self, trial: Trial, spec: ApiSpec, scenarios: Sequence[str], timeout_s: Optional[float] = None) -> Execution:
        self.worker.ensure()
        order = ["direct"] + [s for s in scenarios if s not in ("direct", KERNELS)]
        ex = self._request(trial_request(trial, spec, order, self.staged), timeout_s, "done")
        done = ex.messages[-1] if ex.messages else {}
        self.compiles = int(done.get("compiles", 0)) if done.get("op") == "done" else self.compiles
        errors = [m for m in ex.messages if m.get("op") == "error"]
        if errors:
            raise WorkerError(f"{trial.library} worker refused {trial.api}: {errors[0]['type']}: {errors[0]['message']}")
        results = [_result(m) for m in ex.messages if m.get("op") == "result"]
        self.library_seconds += sum(r.seconds for r in results)
        if ex.death is not None:
            results.append(_dead(order[len(results)], ex.death))
        elif KERNELS in scenarios:
            results.append(self._kernels(trial, spec, timeout_s))
        return Execution(trial, tuple(results), ex.death)

    def _kernels(self, trial: Trial, spec: ApiSpec, timeout_s: Optional[float]) -> ScenarioResult:
        """The `kernels` scenario: the call and its VJP in a worker that runs the library's other
        kernels (its record's `kernels_env`), as one result: the VJP's value, the call's outputs."""
        env = record(trial.library).kernels_env
        if not env:
            return ScenarioResult(KERNELS, Outcome.UNSUPPORTED, error=ErrorInfo(
                "NotImplementedError", f"{trial.library} has no kernel variant to compare (Library.kernels_env)"))
        if self.variant is None:
            self.variant = WorkerProcess(replace(self.runtime, env=self.runtime.env + env),
                                         self.log_path.with_name(self.log_path.stem + "-kernels.log"))
        self.variant.ensure()
        ex = self._request(trial_request(trial, spec, ["direct", "rev"]), timeout_s, "done", self.variant)
        got = {r.scenario: r for r in (_result(m) for m in ex.messages if m.get("op") == "result")}
        if ex.death is not None:
            return _dead(KERNELS, ex.death)
        direct, rev = got.get("direct"), got.get("rev")
        failed = next((r for r in (direct, rev) if r is not None and r.outcome is not Outcome.OK), None)
        if failed is not None:
            return ScenarioResult(KERNELS, failed.outcome, error=failed.error)
        if direct is None or rev is None:
            return ScenarioResult(KERNELS, Outcome.UNSUPPORTED, error=ErrorInfo("RuntimeError", "no VJP ran"))
        return ScenarioResult(KERNELS, Outcome.OK, rev.value, rev.scale, outputs=direct.outputs)

    def probe(self, trial: Trial, spec: ApiSpec, function: str,
              points: Sequence[Tuple[int, int, float]]) -> Optional[List[float]]:
        """Scalar values at perturbed inputs (see scenarios.probe); None if the worker failed."""
        self.worker.ensure()
        request = dict(trial_request(trial, spec, (), self.staged), op="probe", function=function,
                       points=[list(p) for p in points])
        ex = self._request(request, None, "values")
        if ex.death is not None or not ex.messages or ex.messages[-1].get("op") != "values":
            return None
        self.library_seconds += float(ex.messages[-1].get("seconds", 0.0))
        return [float(v) for v in ex.messages[-1]["values"]]

    def close(self) -> None:
        self.worker.close()
        for other in (self.variant, self.unforked):
            if other is not None:
                other.close()


def versions_of(runner: Runner) -> Tuple[str, ...]:
    """`library version` lines of the runner's worker, sorted."""
    return tuple(sorted(f"{k} {v}" for k, v in runner.versions.items()))
