"""Model-fuzzing objectives (`nablafuzz modelfuzz`): the names the orchestrator and the worker share.

An objective is a predicate on one input of a model, evaluated per example in a batch by the
worker (worker/models.py; `cross` by the orchestrator, over several workers' answers).  Each
maps to the verdict and severity its findings carry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from .model import Severity, Verdict


@dataclass(frozen=True)
class Objective:
    name: str
    verdict: Verdict
    severity: Severity
    what: str  # one line for summaries and reports


OBJECTIVES: Dict[str, Objective] = {o.name: o for o in (
    Objective("nonfinite", Verdict.NONFINITE_VALUE, Severity.TAIL,
              "the loss or its gradient (w.r.t. the input or the parameters) is not finite"),
    Objective("grad-nonfinite", Verdict.NONFINITE_DERIVATIVE, Severity.WRONG,
              "the loss is finite but its gradient (w.r.t. the input or the parameters) is not"),
    Objective("rev-fwd-fd", Verdict.DERIVATIVE_MISMATCH, Severity.WRONG,
              "reverse mode, forward mode and float64 finite differences of <u, dloss/dx> or <w, dloss/dparams> disagree"),
    Objective("compiled", Verdict.DERIVATIVE_MISMATCH, Severity.WRONG,
              "the compiled gradient (jax.jit, torch.compile, tf.function with XLA) differs from the eager one"),
    Objective("fp16", Verdict.PRECISION_MISMATCH, Severity.ACCURACY,
              "float16 predicts another class than float32, or its input gradient is not finite where float32's is"),
    Objective("bf16", Verdict.PRECISION_MISMATCH, Severity.ACCURACY,
              "bfloat16 predicts another class than float32, or its input gradient is not finite where float32's is"),
    Objective("cross", Verdict.DERIVATIVE_MISMATCH, Severity.WRONG,
              "the same model with the same weights gives other gradients in another library (Keras backends)"),
)}

# objectives a worker evaluates on one library's batch (cross compares several workers' answers)
WORKER_OBJECTIVES: Tuple[str, ...] = tuple(n for n in OBJECTIVES if n != "cross")
LOW_PRECISION = {"fp16": "float16", "bf16": "bfloat16"}
COVERAGES = ("sumabs", "logits")  # or "layer:NAME"


def coverage_ok(name: str) -> bool:
    return name in COVERAGES or (name.startswith("layer:") and len(name) > len("layer:"))
