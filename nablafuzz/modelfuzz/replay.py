"""`nablafuzz replay` of a model report: the literal input run again through its objective.

Note [model names]: a report names a model (`model:<name>`) and an objective, never code; the
model is built only from a loaded model spec's builder, so a report naming an unknown model
or objective is refused."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from ..core.errors import RefusedError
from ..core.fingerprint import describe
from ..core.fingerprint import key as fingerprint_key
from ..core.model import BugReport
from ..core.objectives import OBJECTIVES
from ..reports.replay import ReplayOutcome, ReplayResult
from ..specs.models import ModelSpec, model_name
from .client import ModelClient
from .findings import trial_arrays


def model_spec_for(report: BugReport, specs: Dict[str, ModelSpec]) -> ModelSpec:
    fp = report.fingerprint
    name = model_name(fp.api)
    if name not in specs or fp.api != report.trial.api or fp.library != report.trial.library:
        raise RefusedError(f"report names model {fp.api!r}, which no loaded model spec declares; refusing to run it "
                           "(reports are data, never code). Fix: pass its model spec file with --models")
    if len(fp.scenarios) != 1 or fp.scenarios[0] not in OBJECTIVES:
        raise RefusedError(f"report names objective {'+'.join(fp.scenarios)!r}; fix: one of {', '.join(OBJECTIVES)}")
    return specs[name]


def replay_model_report(report: BugReport, specs: Dict[str, ModelSpec],
                        log: Path = Path(".nablafuzz/replay.log")) -> ReplayResult:
    from .run import cross_evaluate, single_evaluate
    spec = model_spec_for(report, specs)
    objective = report.fingerprint.scenarios[0]
    libraries = spec.libraries if objective == "cross" else (report.fingerprint.library,)
    clients = [ModelClient(spec, lib, log) for lib in libraries]
    try:
        evaluate = (cross_evaluate(clients, (objective,), "sumabs") if objective == "cross"
                    else single_evaluate(clients[0], (objective,), "sumabs"))
        x, y = trial_arrays(report.trial)
        hit = bool(evaluate(x, y, [report.trial.seed]).hits.get(objective, np.zeros(1, bool))[0])
        versions = tuple(v for c in clients for v in c.versions)
    finally:
        for c in clients:
            c.close()
    fp = report.fingerprint
    found = (f"{describe(fp)} [{fingerprint_key(fp)}]",) if hit else ()
    return ReplayResult(ReplayOutcome.REPRODUCED if hit else ReplayOutcome.NOT_REPRODUCED, report, found, versions)
