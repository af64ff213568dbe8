"""Planted numerical defects, one per vulnerable operation, each with a safe twin that already
clamps (for `nablafuzz numerics`; models/numerics.yaml), in JAX and in PyTorch.

Each model: z = x @ W (x in [-1, 1]^4, W in [-0.5, 0.5]^{4x3}, so z in [-2, 2]), h = OP(z),
logits = h @ V, a log-softmax cross-entropy.  The defect is in OP alone; the two last ones
exist only in the backward pass (sqrt and a norm, both finite at 0, their derivatives not).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np

OPS: Dict[str, Tuple[str, str]] = {}  # name -> (unsafe expression, safe twin), for the README table


def _arrays() -> Tuple[Dict[str, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    params = {"w": rng.uniform(-0.5, 0.5, (4, 3)).astype(np.float32),
              "v": rng.uniform(-1.0, 1.0, (3, 2)).astype(np.float32)}
    x = rng.uniform(-1.0, 1.0, (16, 4)).astype(np.float32)
    return params, (x, (np.arange(16) % 2).astype(np.int64))


def _build(op: Callable[[Any, Any], Any]) -> Any:
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        h = op(jnp, x @ p["w"])
        logits = h @ p["v"]
        loss = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), y[:, None], axis=-1)[:, 0]
        return {"loss": loss, "logits": logits, "h": h}
    params, seeds = _arrays()
    return fn, {k: jnp.asarray(v) for k, v in params.items()}, seeds


def _rsqrt(jnp: Any, z: Any) -> Any:
    import jax
    return jax.lax.rsqrt(z)


def _rsqrt_safe(jnp: Any, z: Any) -> Any:
    import jax
    return jax.lax.rsqrt(jnp.maximum(z, 0.0) + 1e-3)


PLANTED: Dict[str, Tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "log": (lambda jnp, z: jnp.log(z), lambda jnp, z: jnp.log(jnp.maximum(z, 1e-3))),
    "log1p": (lambda jnp, z: jnp.log1p(z), lambda jnp, z: jnp.log1p(jnp.maximum(z, -0.5))),
    "sqrt": (lambda jnp, z: jnp.sqrt(z), lambda jnp, z: jnp.sqrt(jnp.maximum(z, 0.0) + 1e-6)),
    "rsqrt": (_rsqrt, _rsqrt_safe),
    "div": (lambda jnp, z: 1.0 / z, lambda jnp, z: 1.0 / (jnp.abs(z) + 1.0)),
    "pow": (lambda jnp, z: z ** -2, lambda jnp, z: (z * z + 1.0) ** -1),
    "exp": (lambda jnp, z: jnp.exp(60.0 * z), lambda jnp, z: jnp.exp(jnp.minimum(60.0 * z, 80.0))),
    # backward only: finite forward, an infinite derivative at 0
    "sqrt_at_zero": (lambda jnp, z: jnp.sqrt(jnp.maximum(z, 0.0)),
                     lambda jnp, z: jnp.sqrt(jnp.maximum(z, 0.0) + 1e-6)),
    "norm_at_zero": (lambda jnp, z: z * jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True)),
                     lambda jnp, z: z * jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True) + 1e-6)),
}


# the same operations in PyTorch
TORCH: Dict[str, Tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "log": (lambda t, z: t.log(z), lambda t, z: t.log(t.clamp_min(z, 1e-3))),
    "log1p": (lambda t, z: t.log1p(z), lambda t, z: t.log1p(t.clamp_min(z, -0.5))),
    "sqrt": (lambda t, z: t.sqrt(z), lambda t, z: t.sqrt(t.clamp_min(z, 0.0) + 1e-6)),
    "rsqrt": (lambda t, z: t.rsqrt(z), lambda t, z: t.rsqrt(t.clamp_min(z, 0.0) + 1e-3)),
    "div": (lambda t, z: 1.0 / z, lambda t, z: 1.0 / (t.abs(z) + 1.0)),
    "pow": (lambda t, z: z ** -2, lambda t, z: (z * z + 1.0) ** -1),
    "exp": (lambda t, z: t.exp(60.0 * z), lambda t, z: t.exp(t.clamp_max(60.0 * z, 80.0))),
    "sqrt_at_zero": (lambda t, z: t.sqrt(t.clamp_min(z, 0.0)), lambda t, z: t.sqrt(t.clamp_min(z, 0.0) + 1e-6)),
    "norm_at_zero": (lambda t, z: z * t.sqrt((z * z).sum(-1, keepdim=True)),
                     lambda t, z: z * t.sqrt((z * z).sum(-1, keepdim=True) + 1e-6)),
}


def _build_torch(op: Callable[[Any, Any], Any]) -> Any:
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        h = op(torch, x @ p["w"])
        logits = h @ p["v"]
        onehot = (y[:, None] == torch.arange(logits.shape[-1])).to(logits.dtype)
        loss = -(onehot * torch.log_softmax(logits, dim=-1)).sum(-1)
        return {"loss": loss, "logits": logits, "h": h}
    params, seeds = _arrays()
    return fn, {k: torch.from_numpy(v) for k, v in params.items()}, seeds


def _builder(name: str, safe: bool, torch: bool = False) -> Callable[[], Any]:
    def build() -> Any:
        return _build_torch(TORCH[name][int(safe)]) if torch else _build(PLANTED[name][int(safe)])
    build.__name__ = f"build_{'torch_' if torch else ''}{name}{'_safe' if safe else ''}"
    return build


for _name in PLANTED:
    for _safe in (False, True):
        for _torch in (False, True):
            _fn = _builder(_name, _safe, _torch)
            globals()[_fn.__name__] = _fn
