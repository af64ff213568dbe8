"""PyTorch side of model fuzzing (worker/models.py): a built model's forward pass, its
gradients by torch.autograd, forward mode by torch.func.jvp, compiled by torch.compile."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch


@dataclass
class Built:
    fn: Any
    params: Dict[str, torch.Tensor]
    seeds: Tuple[Any, Any]
    cast: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict)
    compiled: Any = None


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
