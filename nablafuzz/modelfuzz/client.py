"""A model's worker: model requests over the usual pipe (worker/models.py answers them)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from ..core.errors import ConfigError, WorkerError
from ..core.objectives import WORKER_OBJECTIVES
from ..runtime.process import WorkerProcess
from ..runtime.registry import resolve_runtime
from ..specs.models import ModelSpec

TIMEOUT_S = 600.0  # a first batch may compile (torch.compile: tens of seconds)


@dataclass(frozen=True)
class Batch:
    """A worker's answer for B inputs: coverage [B, d], per objective a bool [B], the numbers."""

    coverage: np.ndarray
    hits: Dict[str, np.ndarray]
    detail: Dict[str, np.ndarray]


class ModelClient:
    def __init__(self, spec: ModelSpec, library: str, log: Path):
        build = spec.builder(library)
        if build is None:
            raise ConfigError(f"model {spec.name!r} ({spec.source}) has no builder for {library}; fix: choose one "
                              f"of {', '.join(spec.libraries)} with -l, or add `build: {{{library}: module:function}}`")
        self.spec, self.library, self.build = spec, library, build
        self.worker = WorkerProcess(resolve_runtime(library, [spec.directory]), log)

    def _ask(self, message: Dict[str, Any]) -> Dict[str, Any]:
        self.worker.ensure()
        ex = self.worker.request(dict(message, op="model", build=self.build), TIMEOUT_S, until="model")
        if ex.death is not None:
            raise WorkerError(f"the {self.library} worker died running model {self.spec.name!r} ({ex.death.detail}); "
                              f"its log ends with:\n{ex.death.log}")
        answer = ex.messages[-1] if ex.messages else {}
        if answer.get("op") != "model":
            raise WorkerError(f"model {self.spec.name!r} in {self.library}: {answer.get('type')}: "
                              f"{answer.get('message')} (fix: check the builder {self.build} named in {self.spec.source})")
        return answer

    def seeds(self) -> Tuple[np.ndarray, np.ndarray, Dict[str, Sequence[int]]]:
        """The builder's seed inputs and labels, and its outputs' per-example shapes."""
        a = self._ask({"action": "info"})
        return np.asarray(a["x"]), np.asarray(a["y"]), a["outputs"]

    def graph(self, backward: bool) -> Tuple[Dict[str, Any], Dict[str, Sequence[float]], int]:
        """The traced loss (or its gradient), the parameters' value ranges, the number of classes."""
        a = self._ask({"action": "graph", "backward": backward})
        return a["graph"], a["ranges"], int(a["classes"])

    def confirm(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """`nablafuzz numerics --confirm`: the worker's search for a failing input (libraries/jax/models.py)."""
        return self._ask(dict(request, action="confirm"))

    def batch(self, x: np.ndarray, y: np.ndarray, seeds: Sequence[int], objectives: Sequence[str],
              coverage: str) -> Batch:
        wanted = [o for o in objectives if o in WORKER_OBJECTIVES]
        a = self._ask({"action": "batch", "x": np.ascontiguousarray(x, dtype=np.float32),
                       "y": np.ascontiguousarray(y, dtype=np.int64), "seeds": [int(s) for s in seeds],
                       "objectives": wanted, "coverage": coverage, "project": "cross" in objectives})
        return Batch(np.asarray(a["coverage"]), {k: np.asarray(v, dtype=bool) for k, v in a["hits"].items()},
                     {k: np.asarray(v) for k, v in a["detail"].items()})

    @property
    def versions(self) -> Tuple[str, ...]:
        self.worker.ensure()
        return tuple(sorted(f"{k} {v}" for k, v in self.worker.versions.items()))

    def close(self) -> None:
        self.worker.close()
