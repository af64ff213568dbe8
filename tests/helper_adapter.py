"""Shared pieces of the library-specific adapter tests: a worker of a real runtime, literal
tensor inputs, and one trial of a spec given as a dict."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nablafuzz.core.model import ArgKind, InputValue, Trial
from nablafuzz.core.tensors import to_record
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.runtime.runner import Runner
from nablafuzz.specs.spec import spec_from_dict

TESTS = Path(__file__).resolve().parent


def library_runner(library: str, log: Path, timeout_s: float = 120.0) -> Runner:
    """A runner of `library`'s installed runtime that can also resolve `tests/helper_*` functions."""
    return Runner(resolve_runtime(library, [str(TESTS)]), log, timeout_s)


def worker_catalogue(library: str, log: Path) -> dict:
    """The `catalogue` answer of `library`'s real worker: {"entries": [...], "dropped": [...]}."""
    from nablafuzz.runtime.process import WorkerProcess
    worker = WorkerProcess(resolve_runtime(library), log)
    worker.start()
    try:
        ex = worker.request({"op": "catalogue"}, 300.0, until="catalogue")
    finally:
        worker.close()
    return ex.messages[-1]


def tensor_input(name, values, dtype="float64", diff=True, keyword=False) -> InputValue:
    return InputValue(name, ArgKind.TENSOR, to_record(np.array(values, dtype=dtype)), diff, keyword)


def run_spec(runner: Runner, library: str, spec_dict, inputs, scenarios, dtype: str, seed: int):
    """(spec, execution) of one trial with these literal inputs."""
    spec = spec_from_dict(library, spec_dict, "test")
    trial = Trial(library, spec.name, seed, dtype, tuple(inputs), spec.differentiable_outputs)
    return spec, runner.run(trial, spec, scenarios)
