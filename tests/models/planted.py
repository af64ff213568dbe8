"""Planted AD defects in tiny models, for tests of `nablafuzz modelfuzz` (tests/models/models.yaml).

A 4-3-2 network whose hidden activation is softplus; the planted variants get softplus's
derivative wrong where its input exceeds 1 (seed inputs stay below, so only fuzzing finds it):
torch's reverse rule (its forward rule is right), JAX's derivative rule (forward and reverse
agree, finite differences do not).  A last torch variant gets the output layer's reverse rule
wrong for its weight only: the input gradient is right, the parameter gradient is not.  Seeds: 20 small inputs, labels 0/1.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

WRONG_ABOVE = 1.0


def _arrays() -> Tuple[Dict[str, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    params = {"w": rng.uniform(-0.5, 0.5, (4, 3)).astype(np.float32),
              "v": rng.uniform(-1.0, 1.0, (3, 2)).astype(np.float32)}
    x = rng.uniform(-0.3, 0.3, (20, 4)).astype(np.float32)
    return params, (x, (np.arange(20) % 2).astype(np.int64))


def _torch(planted: bool, param_rule: bool = False) -> Tuple[Any, Dict[str, Any], Tuple[np.ndarray, np.ndarray]]:
    import torch

    class Matmul(torch.autograd.Function):
        """h @ v whose reverse rule for v (only) is 1.5 times too large when `param_rule`."""

        @staticmethod
        def forward(h: Any, v: Any) -> Any:
            return h @ v

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(*inputs)
            ctx.save_for_forward(*inputs)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            h, v = ctx.saved_tensors
            return g @ v.T, (1.5 if param_rule else 1.0) * (h.T @ g)

        @staticmethod
        def jvp(ctx: Any, th: Any, tv: Any) -> Any:
            h, v = ctx.saved_tensors
            return th @ v + h @ tv

    class Softplus(torch.autograd.Function):
        @staticmethod
        def forward(z: Any) -> Any:
            return torch.nn.functional.softplus(z)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (z,) = ctx.saved_tensors
            d = torch.sigmoid(z)
            return g * (torch.where(z > WRONG_ABOVE, 0.5 * d, d) if planted else d)

        @staticmethod
        def jvp(ctx: Any, t: Any) -> Any:
            (z,) = ctx.saved_tensors
            return t * torch.sigmoid(z)

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        h = Softplus.apply(x @ p["w"])
        logits = Matmul.apply(h, p["v"])
        loss = torch.logsumexp(logits, -1) - logits.gather(-1, y[:, None])[:, 0]
        return {"loss": loss, "logits": logits, "h": h}
    params, seeds = _arrays()
    return fn, {k: torch.from_numpy(v) for k, v in params.items()}, seeds


def _jax(planted: bool) -> Tuple[Any, Dict[str, Any], Tuple[np.ndarray, np.ndarray]]:
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def softplus(z: Any) -> Any:
        return jax.nn.softplus(z)

    @softplus.defjvp
    def softplus_jvp(primals: Any, tangents: Any) -> Any:
        (z,), (t,) = primals, tangents
        d = jax.nn.sigmoid(z)
        return softplus(z), t * (jnp.where(z > WRONG_ABOVE, 0.5 * d, d) if planted else d)

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        h = softplus(x @ p["w"])
        logits = h @ p["v"]
        loss = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0]
        return {"loss": loss, "logits": logits, "h": h}
    params, seeds = _arrays()
    return fn, {k: jnp.asarray(v) for k, v in params.items()}, seeds


def build_torch() -> Any:
    return _torch(False)


def build_torch_wrong_vjp() -> Any:
    return _torch(True)


def build_torch_wrong_param_vjp() -> Any:
    return _torch(False, param_rule=True)


def build_jax() -> Any:
    return _jax(False)


def build_jax_wrong_rule() -> Any:
    return _jax(True)
