"""PyTorch cases of the GRIST benchmark, re-expressed in JAX and in PyTorch (for `nablafuzz numerics`;
models/grist.yaml).

GRIST ("Exposing Numerical Bugs in Deep Learning via Gradient Back-Propagation", FSE 2021;
github.com/Jacob-yen/GRIST) collects real numerical defects from open-source deep-learning programs,
one folder per case (`scripts/study_case/ID_<n>/`): an unguarded `log` of a softmax or a sigmoid, a
`log` of a value that can be <= 0, a `sqrt` of a softmax, an `exp` that overflows.  This module
re-expresses each PyTorch case's model and loss twice, in `jax.numpy` / `jax.nn` (``build_grist_<ID>``)
and in `torch` (``build_grist_<ID>_torch``), its own code, not the case's, at a small size, with the
vulnerable operation where the case has it; each builder's docstring names the case (`GRIST ID_<n>`).
A case's numpy parameters and seeds are made once (``_*_arrays``) and wrapped per library, so both
builders of a case compute the same function of the same numbers.

Every builder takes no argument and returns ``(fn, params, (x_seed, y_seed))``: ``fn(params, x, y)``
gives a dict with ``loss`` (per example, ``[B]``) and ``logits`` (``[B, C]``); ``params`` is a flat
dict of float32 arrays (jax arrays, or plain torch tensors; empty where the case has no parameters:
its input *is* what GRIST searches); the seeds are numpy arrays (float32 inputs, int64 labels) drawn
from ``np.random.default_rng(<ID>)`` (plus the case's own data rows where it has some).  Only numpy
and the library in question are imported (each lazily, inside its builder).

Where the ports depart from the cases (the yaml descriptions say so per case):

* Images (MNIST, FashionMNIST; 784 pixels in [0, 1]) become 64 synthetic pixels in [0, 1].
* Zero-initialised weights (logistic and softmax regressions) make the model constant, so the
  defect is unreachable before training; they are drawn instead from PyTorch's default
  ``nn.Linear`` range U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (the range ID_37 and ID_38 use).
* GRIST searches the inputs of most cases without clipping (``clip=False``): where the defect is
  unreachable inside the case's data range, the spec's ``input_range`` is widened to [-100, 100].
* The RBMs (ID_22, ID_51, ID_62, ID_63) draw their Gibbs-sampling noise once per builder (a fixed
  vector broadcast over the batch, so one example replays alone) and use weights N(0, 2^2) instead
  of N(0, 0.01^2): at the case's init scale ``exp(W v + b)`` stays below e^2 on [0, 1] inputs and
  the overflow (reached in GRIST after its SGD steps) cannot happen.
* Dropout (ID_12) is left out (evaluation mode).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import numpy as np

Built = Tuple[Callable[..., Dict[str, Any]], Dict[str, Any], Tuple[np.ndarray, np.ndarray]]
Arrays = Tuple[Dict[str, np.ndarray], Tuple[np.ndarray, np.ndarray]]  # numpy (params, seeds) of a case
N = 16  # seed examples per case

# the case data of the logistic and softmax regressions (ID_26, ID_32, ID_33, ID_34, ...)
LOGISTIC_X = [[1, 2], [2, 3], [3, 1], [4, 3], [5, 3], [6, 2]]
LOGISTIC_Y = [0, 0, 0, 1, 1, 1]
SOFTMAX_X = [[1, 2, 1, 1], [2, 1, 3, 2], [3, 1, 3, 4], [4, 1, 5, 5], [1, 7, 5, 5], [1, 2, 5, 6], [1, 6, 6, 6],
             [1, 7, 7, 7]]
SOFTMAX_Y = [2, 2, 2, 1, 1, 1, 0, 0]


def _jnp_params(params: Dict[str, np.ndarray]) -> Dict[str, Any]:
    import jax.numpy as jnp
    return {k: jnp.asarray(np.asarray(v, dtype=np.float32)) for k, v in params.items()}


def _torch_params(params: Dict[str, np.ndarray]) -> Dict[str, Any]:
    import torch
    return {k: torch.tensor(np.asarray(v, dtype=np.float32)) for k, v in params.items()}


def _linear(rng: np.random.Generator, fan_in: int, fan_out: int, bias_shape: Tuple[int, ...] = None
            ) -> Tuple[np.ndarray, np.ndarray]:
    """PyTorch's default nn.Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), weight [in, out]."""
    a = 1.0 / np.sqrt(fan_in)
    w = rng.uniform(-a, a, (fan_in, fan_out)).astype(np.float32)
    b = rng.uniform(-a, a, bias_shape if bias_shape is not None else (fan_out,)).astype(np.float32)
    return w, b


def _seeds(rng: np.random.Generator, data: Any, labels: Any, lo: float, hi: float, features: int,
           classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """The case's own rows first, then uniform rows in [lo, hi] up to N examples."""
    x = np.asarray(data, dtype=np.float32).reshape(-1, features) if data is not None else np.zeros((0, features))
    y = np.asarray(labels, dtype=np.int64) if labels is not None else np.zeros(0, np.int64)
    extra = N - len(x)
    x = np.concatenate([x, rng.uniform(lo, hi, (extra, features))]).astype(np.float32)
    y = np.concatenate([y, rng.integers(0, classes, extra)]).astype(np.int64)
    return x, y


def _onehot(y: Any, classes: int) -> Any:
    import jax.numpy as jnp
    return (y[..., None] == jnp.arange(classes)).astype(jnp.float32)


def _onehot_torch(y: Any, classes: int) -> Any:
    import torch
    return (y[..., None] == torch.arange(classes)).to(torch.float32)


def _binary_logits(z: Any) -> Any:
    """[B, 1] log-odds as two-class logits [0, z] (softmax([0, z]) = [1 - sigmoid z, sigmoid z])."""
    import jax.numpy as jnp
    return jnp.concatenate([jnp.zeros_like(z), z], axis=-1)


def _binary_logits_torch(z: Any) -> Any:
    import torch
    return torch.cat([torch.zeros_like(z), z], dim=-1)


# --------------------------------------------------------------------------- softmax of a free tensor
# ID_23, ID_27, ID_46, ID_57: a [3, 5] tensor z = torch.rand(...) is the searched input;
# the cost is (onehot(y) * -log(softmax(z))).sum(dim=1).mean(), y random in 0..4.

def _free_softmax_seeds(case: int) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(case)
    return rng.uniform(0.0, 1.0, (N, 5)).astype(np.float32), rng.integers(0, 5, N).astype(np.int64)


def build_grist_23() -> Built:
    """GRIST ID_23: softmax over a free [.,5] tensor, -log(softmax(z)) unguarded in the cost."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        hypothesis = jax.nn.softmax(x, axis=1)
        loss = jnp.sum(_onehot(y, 5) * -jnp.log(hypothesis), axis=1)
        return {"loss": loss, "logits": x}
    return fn, {}, _free_softmax_seeds(23)


def build_grist_23_torch() -> Built:
    """GRIST ID_23 in torch: softmax over a free [.,5] tensor, -log(softmax(z)) unguarded in the cost."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        hypothesis = torch.softmax(x, dim=1)
        loss = torch.sum(_onehot_torch(y, 5) * -torch.log(hypothesis), dim=1)
        return {"loss": loss, "logits": x}
    return fn, {}, _free_softmax_seeds(23)


def build_grist_27() -> Built:
    """GRIST ID_27: softmax-regression cost on a free [.,5] tensor, -log(softmax(z)) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        hypothesis = jax.nn.softmax(x, axis=1)
        cost = _onehot(y, 5) * -jnp.log(hypothesis)
        return {"loss": jnp.sum(cost, axis=1), "logits": x}
    return fn, {}, _free_softmax_seeds(27)


def build_grist_27_torch() -> Built:
    """GRIST ID_27 in torch: softmax-regression cost on a free [.,5] tensor, -log(softmax(z)) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        hypothesis = torch.softmax(x, dim=1)
        cost = _onehot_torch(y, 5) * -torch.log(hypothesis)
        return {"loss": cost.sum(dim=1), "logits": x}
    return fn, {}, _free_softmax_seeds(27)


def build_grist_46() -> Built:
    """GRIST ID_46: torch softmax tutorial, -log(softmax(z)) of a free [.,5] tensor unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        log_p = jnp.log(jax.nn.softmax(x, axis=1))
        return {"loss": -jnp.sum(_onehot(y, 5) * log_p, axis=1), "logits": x}
    return fn, {}, _free_softmax_seeds(46)


def build_grist_46_torch() -> Built:
    """GRIST ID_46 in torch: softmax tutorial, -log(softmax(z)) of a free [.,5] tensor unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        log_p = torch.log(torch.softmax(x, dim=1))
        return {"loss": -(_onehot_torch(y, 5) * log_p).sum(dim=1), "logits": x}
    return fn, {}, _free_softmax_seeds(46)


def build_grist_57() -> Built:
    """GRIST ID_57: softmax cost tutorial, -log(softmax(z)) of a free [.,5] tensor unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        hypothesis = jax.nn.softmax(x, axis=1)
        nll = -jnp.log(hypothesis)
        return {"loss": jnp.sum(_onehot(y, 5) * nll, axis=1), "logits": x}
    return fn, {}, _free_softmax_seeds(57)


def build_grist_57_torch() -> Built:
    """GRIST ID_57 in torch: softmax cost tutorial, -log(softmax(z)) of a free [.,5] tensor unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        hypothesis = torch.softmax(x, dim=1)
        nll = -torch.log(hypothesis)
        return {"loss": (_onehot_torch(y, 5) * nll).sum(dim=1), "logits": x}
    return fn, {}, _free_softmax_seeds(57)


# --------------------------------------------------------------------------- logistic regressions
# ID_26, ID_33, ID_37, ID_56: x [., 2] (case data in [1, 6]), h = sigmoid(x W + b), binary
# cross-entropy written as -(y log h + (1 - y) log(1 - h)); ID_38 the same on XOR data;
# ID_53 on one feature.

LOGISTIC = {  # case -> (features, the case's data rows, their labels)
    26: (2, LOGISTIC_X, LOGISTIC_Y), 33: (2, LOGISTIC_X, LOGISTIC_Y), 37: (2, LOGISTIC_X, LOGISTIC_Y),
    56: (2, LOGISTIC_X, LOGISTIC_Y), 38: (2, [[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0]),
    53: (1, [[1], [2], [3], [4], [5], [2.5], [3.5], [0], [3.1], [2.7], [2.8], [2.9]],
         [1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 1]),
}


def _logistic_arrays(case: int) -> Arrays:
    features, data, labels = LOGISTIC[case]
    rng = np.random.default_rng(case)
    w, b = _linear(rng, features, 1)
    x, y = _seeds(rng, data, labels, float(np.min(data)), float(np.max(data)), features, 2)
    return {"w": w, "b": b}, (x, y)


def build_grist_26() -> Built:
    """GRIST ID_26: logistic regression (2 features), log(h) and log(1 - h) of a sigmoid unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.sigmoid(z)
        t = y.astype(jnp.float32)[:, None]
        cost = -(t * jnp.log(hypothesis) + (1 - t) * jnp.log(1 - hypothesis))
        return {"loss": jnp.mean(cost, axis=1), "logits": _binary_logits(z)}
    params, seeds = _logistic_arrays(26)
    return fn, _jnp_params(params), seeds


def build_grist_26_torch() -> Built:
    """GRIST ID_26 in torch: logistic regression (2 features), log(h) and log(1 - h) of a sigmoid unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.sigmoid(z)
        t = y.to(torch.float32)[:, None]
        cost = -(t * torch.log(hypothesis) + (1 - t) * torch.log(1 - hypothesis))
        return {"loss": cost.mean(dim=1), "logits": _binary_logits_torch(z)}
    params, seeds = _logistic_arrays(26)
    return fn, _torch_params(params), seeds


def build_grist_33() -> Built:
    """GRIST ID_33: logistic classification (2 features), log(h) and log(1 - h) of a sigmoid unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        h = jax.nn.sigmoid(z)
        t = y.astype(jnp.float32)[:, None]
        losses = -(t * jnp.log(h) +
                   (1 - t) * jnp.log(1 - h))
        return {"loss": jnp.mean(losses, axis=1), "logits": _binary_logits(z)}
    params, seeds = _logistic_arrays(33)
    return fn, _jnp_params(params), seeds


def build_grist_33_torch() -> Built:
    """GRIST ID_33 in torch: logistic classification (2 features), log(h) and log(1 - h) of a sigmoid unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        h = torch.sigmoid(z)
        t = y.to(torch.float32)[:, None]
        losses = -(t * torch.log(h) +
                   (1 - t) * torch.log(1 - h))
        return {"loss": losses.mean(dim=1), "logits": _binary_logits_torch(z)}
    params, seeds = _logistic_arrays(33)
    return fn, _torch_params(params), seeds


def build_grist_37() -> Built:
    """GRIST ID_37: Linear(2,1)+Sigmoid, -(Y log h + (1 - Y) log(1 - h)) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.sigmoid(z)
        t = y.astype(jnp.float32)[:, None]
        cost = -(t * jnp.log(hypothesis) + (1 - t)
                 * jnp.log(1 - hypothesis))
        return {"loss": jnp.mean(cost, axis=1), "logits": _binary_logits(z)}
    params, seeds = _logistic_arrays(37)
    return fn, _jnp_params(params), seeds


def build_grist_37_torch() -> Built:
    """GRIST ID_37 in torch: Linear(2,1)+Sigmoid, -(Y log h + (1 - Y) log(1 - h)) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.sigmoid(z)
        t = y.to(torch.float32)[:, None]
        cost = -(t * torch.log(hypothesis) + (1 - t)
                 * torch.log(1 - hypothesis))
        return {"loss": cost.mean(dim=1), "logits": _binary_logits_torch(z)}
    params, seeds = _logistic_arrays(37)
    return fn, _torch_params(params), seeds


def build_grist_38() -> Built:
    """GRIST ID_38: Linear(2,1)+Sigmoid on XOR, -(Y log h + (1 - Y) log(1 - h)) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.sigmoid(z)
        t = y.astype(jnp.float32)[:, None]
        bce = -(t * jnp.log(hypothesis) + (1 - t) * jnp.log(1 - hypothesis))
        return {"loss": jnp.mean(bce, axis=1), "logits": _binary_logits(z)}
    params, seeds = _logistic_arrays(38)
    return fn, _jnp_params(params), seeds


def build_grist_38_torch() -> Built:
    """GRIST ID_38 in torch: Linear(2,1)+Sigmoid on XOR, -(Y log h + (1 - Y) log(1 - h)) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.sigmoid(z)
        t = y.to(torch.float32)[:, None]
        bce = -(t * torch.log(hypothesis) + (1 - t) * torch.log(1 - hypothesis))
        return {"loss": bce.mean(dim=1), "logits": _binary_logits_torch(z)}
    params, seeds = _logistic_arrays(38)
    return fn, _torch_params(params), seeds


def build_grist_53() -> Built:
    """GRIST ID_53: 1-feature logistic regression, -y log h - (1 - y) log(1 - h) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.sigmoid(z)
        t = y.astype(jnp.float32)[:, None]
        cost = -t * jnp.log(hypothesis) - (1 - t) * jnp.log(1 - hypothesis)
        return {"loss": jnp.mean(cost, axis=1), "logits": _binary_logits(z)}
    params, seeds = _logistic_arrays(53)
    return fn, _jnp_params(params), seeds


def build_grist_53_torch() -> Built:
    """GRIST ID_53 in torch: 1-feature logistic regression, -y log h - (1 - y) log(1 - h) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.sigmoid(z)
        t = y.to(torch.float32)[:, None]
        cost = -t * torch.log(hypothesis) - (1 - t) * torch.log(1 - hypothesis)
        return {"loss": cost.mean(dim=1), "logits": _binary_logits_torch(z)}
    params, seeds = _logistic_arrays(53)
    return fn, _torch_params(params), seeds


def build_grist_56() -> Built:
    """GRIST ID_56: Kaggle-beginner logistic regression (2 features), log(h), log(1 - h) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.sigmoid(z)
        t = y.astype(jnp.float32)[:, None]
        losses = -(t * jnp.log(hypothesis) +
                   (1 - t) * jnp.log(1 - hypothesis))
        return {"loss": jnp.mean(losses, axis=1), "logits": _binary_logits(z)}
    params, seeds = _logistic_arrays(56)
    return fn, _jnp_params(params), seeds


def build_grist_56_torch() -> Built:
    """GRIST ID_56 in torch: Kaggle-beginner logistic regression (2 features), log(h), log(1 - h) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.sigmoid(z)
        t = y.to(torch.float32)[:, None]
        losses = -(t * torch.log(hypothesis) +
                   (1 - t) * torch.log(1 - hypothesis))
        return {"loss": losses.mean(dim=1), "logits": _binary_logits_torch(z)}
    params, seeds = _logistic_arrays(56)
    return fn, _torch_params(params), seeds


# --------------------------------------------------------------------------- softmax regressions
# ID_32, ID_34, ID_47, ID_54: x [., 4] (case data in [1, 7]), softmax(x W + b) over 3 classes,
# cost (onehot * -log(softmax)).sum(...) unguarded.

SOFTMAX_BIAS = {32: (1,), 34: (1,), 47: (3,), 54: (1, 3)}  # case -> the shape of its bias


def _softmax_arrays(case: int) -> Arrays:
    rng = np.random.default_rng(case)
    w, b = _linear(rng, 4, 3, SOFTMAX_BIAS[case])
    x, y = _seeds(rng, SOFTMAX_X, SOFTMAX_Y, 1.0, 7.0, 4, 3)
    return {"w": w, "b": b}, (x, y)


def build_grist_32() -> Built:
    """GRIST ID_32: softmax regression 4->3 (scalar bias), -log(softmax(xW + b)) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.softmax(z, axis=1)
        cost = (_onehot(y, 3) * -jnp.log(hypothesis)).sum(axis=1)
        return {"loss": cost, "logits": z}
    params, seeds = _softmax_arrays(32)
    return fn, _jnp_params(params), seeds


def build_grist_32_torch() -> Built:
    """GRIST ID_32 in torch: softmax regression 4->3 (scalar bias), -log(softmax(xW + b)) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.softmax(z, dim=1)
        cost = (_onehot_torch(y, 3) * -torch.log(hypothesis)).sum(dim=1)
        return {"loss": cost, "logits": z}
    params, seeds = _softmax_arrays(32)
    return fn, _torch_params(params), seeds


def build_grist_34() -> Built:
    """GRIST ID_34: softmax classification 4->3 (scalar bias), -log(softmax(xW + b)) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.softmax(z, axis=1)
        nll = _onehot(y, 3) * -jnp.log(hypothesis)
        return {"loss": nll.sum(axis=1), "logits": z}
    params, seeds = _softmax_arrays(34)
    return fn, _jnp_params(params), seeds


def build_grist_34_torch() -> Built:
    """GRIST ID_34 in torch: softmax classification 4->3 (scalar bias), -log(softmax(xW + b)) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.softmax(z, dim=1)
        nll = _onehot_torch(y, 3) * -torch.log(hypothesis)
        return {"loss": nll.sum(dim=1), "logits": z}
    params, seeds = _softmax_arrays(34)
    return fn, _torch_params(params), seeds


def build_grist_47() -> Built:
    """GRIST ID_47: softmax regression 4->3 (bias [3]), -log(softmax(xW + b)) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.softmax(z, axis=1)
        return {"loss": (_onehot(y, 3) * -jnp.log(hypothesis)).sum(axis=1), "logits": z}
    params, seeds = _softmax_arrays(47)
    return fn, _jnp_params(params), seeds


def build_grist_47_torch() -> Built:
    """GRIST ID_47 in torch: softmax regression 4->3 (bias [3]), -log(softmax(xW + b)) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.softmax(z, dim=1)
        return {"loss": (_onehot_torch(y, 3) * -torch.log(hypothesis)).sum(dim=1), "logits": z}
    params, seeds = _softmax_arrays(47)
    return fn, _torch_params(params), seeds


def build_grist_54() -> Built:
    """GRIST ID_54: softmax regression 4->3 (Adam in the case), -sum(y log softmax(xW + b)) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = jax.nn.softmax(z, axis=1)
        cost = -jnp.sum(_onehot(y, 3) * jnp.log(hypothesis), axis=1)
        return {"loss": cost, "logits": z}
    params, seeds = _softmax_arrays(54)
    return fn, _jnp_params(params), seeds


def build_grist_54_torch() -> Built:
    """GRIST ID_54 in torch: softmax regression 4->3 (Adam in the case), -sum(y log softmax(xW + b)) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        z = x @ p["w"] + p["b"]
        hypothesis = torch.softmax(z, dim=1)
        cost = -torch.sum(_onehot_torch(y, 3) * torch.log(hypothesis), dim=1)
        return {"loss": cost, "logits": z}
    params, seeds = _softmax_arrays(54)
    return fn, _torch_params(params), seeds


# --------------------------------------------------------------------------- library cases

def _arrays_4() -> Arrays:
    rng = np.random.default_rng(4)
    x, _ = _seeds(rng, [[1, -1], [1, 2], [2, 1]], None, -1.0, 2.0, 2, 1)
    return {}, (x, np.zeros(N, np.int64))


def build_grist_4() -> Built:
    """GRIST ID_4: VGAE (identity encoder, mu = logvar = x) KL loss with logvar.log() (mutated from exp) unguarded."""
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        mu, logvar = x, x  # encoder = lambda x: (x, x)
        kl = -0.5 * jnp.sum(1 + logvar - mu ** 2 - jnp.log(logvar), axis=1)
        return {"loss": kl, "logits": mu}  # eval mode: z = mu
    return (fn, *_arrays_4())


def build_grist_4_torch() -> Built:
    """GRIST ID_4 in torch: VGAE (identity encoder, mu = logvar = x) KL loss with logvar.log() unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        mu, logvar = x, x  # encoder = lambda x: (x, x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.log(), dim=1)
        return {"loss": kl, "logits": mu}  # eval mode: z = mu
    return (fn, *_arrays_4())


def _arrays_5() -> Arrays:
    rng = np.random.default_rng(5)
    return {}, _seeds(rng, [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]], [0, 1], 0.0, 1.0, 3, 3)


def build_grist_5() -> Built:
    """GRIST ID_5: MatchZoo rank cross-entropy, -sum(labels * sqrt(softmax(scores))), sqrt unguarded (backward)."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        # one example: a group of 1 + num_neg (= 2) scores; y: which of them is relevant
        labels = _onehot(y, 3)
        loss = -jnp.sum(labels * jnp.sqrt(jax.nn.softmax(x, axis=-1)), axis=-1)
        return {"loss": loss, "logits": x}
    return (fn, *_arrays_5())


def build_grist_5_torch() -> Built:
    """GRIST ID_5 in torch: MatchZoo rank cross-entropy, -sum(labels * sqrt(softmax(scores))), sqrt unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        # one example: a group of 1 + num_neg (= 2) scores; y: which of them is relevant
        labels = _onehot_torch(y, 3)
        loss = -torch.sum(labels * torch.sqrt(torch.softmax(x, dim=-1)), dim=-1)
        return {"loss": loss, "logits": x}
    return (fn, *_arrays_5())


SCATTER_INDEX = np.array([0, 0, 0, 1, 1, 1])  # ID_13, one example: 6 edges from 2 source nodes
SCATTER_MEMBER = (SCATTER_INDEX[:, None] == np.arange(2)).astype(np.float32)  # scatter_add as a [6, 2] incidence matrix


def _arrays_13() -> Arrays:
    rng = np.random.default_rng(13)
    x, _ = _seeds(rng, [[0, 1, 2, 0, 1, 2]], None, 0.0, 2.0, 6, 1)
    return {}, (x, np.zeros(N, np.int64))


def build_grist_13() -> Built:
    """GRIST ID_13: torch_geometric scatter softmax mutated to log(src) / scatter_add(log(src))[index]; log and div unguarded."""
    import jax.numpy as jnp
    index, member = SCATTER_INDEX, SCATTER_MEMBER

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        out = jnp.log(x)
        out = out / (out @ member)[:, index]
        return {"loss": jnp.mean(out, axis=1), "logits": out}
    return (fn, *_arrays_13())


def build_grist_13_torch() -> Built:
    """GRIST ID_13 in torch: scatter softmax mutated to log(src) / scatter_add(log(src))[index], unguarded."""
    import torch
    index, member = torch.from_numpy(SCATTER_INDEX), torch.from_numpy(SCATTER_MEMBER)

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        out = torch.log(x)
        out = out / (out @ member)[:, index]
        return {"loss": out.mean(dim=1), "logits": out}
    return (fn, *_arrays_13())


def _arrays_12() -> Arrays:
    rng = np.random.default_rng(12)
    w1, b1 = _linear(rng, 64, 32)
    w2, b2 = _linear(rng, 32, 10)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, _seeds(rng, None, None, 0.0, 1.0, 64, 10)


def build_grist_12() -> Built:
    """GRIST ID_12: skorch MLP 64-32-10 (ReLU) with softmax output; NLLLoss on torch.log(softmax) unguarded."""
    import jax
    import jax.numpy as jnp

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        h = jax.nn.relu(x @ p["w1"] + p["b1"])
        z = h @ p["w2"] + p["b2"]
        y_pred = jax.nn.softmax(z, axis=-1)
        y_pred = jnp.log(y_pred)  # skorch: NLLLoss gets log(y_pred)
        loss = -jnp.take_along_axis(y_pred, y[:, None], axis=-1)[:, 0]
        return {"loss": loss, "logits": z}
    params, seeds = _arrays_12()
    return fn, _jnp_params(params), seeds


def build_grist_12_torch() -> Built:
    """GRIST ID_12 in torch: skorch MLP 64-32-10 (ReLU) with softmax output; NLLLoss on torch.log(softmax) unguarded."""
    import torch

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        h = torch.relu(x @ p["w1"] + p["b1"])
        z = h @ p["w2"] + p["b2"]
        y_pred = torch.softmax(z, dim=-1)
        y_pred = torch.log(y_pred)  # skorch: NLLLoss gets log(y_pred)
        loss = -torch.gather(y_pred, -1, y[:, None])[:, 0]
        return {"loss": loss, "logits": z}
    params, seeds = _arrays_12()
    return fn, _torch_params(params), seeds


# --------------------------------------------------------------------------- RBMs
# ID_22, ID_51, ID_62, ID_63: RBM (64 visible, 32 hidden, k = 1 Gibbs step), loss
# F(v) - F(v1) with free energy F(v) = -v.v_bias - sum(log(exp(v W^T + h_bias) + 1)): exp unguarded.

def _rbm_arrays(case: int) -> Tuple[Dict[str, np.ndarray], Tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """(params, seeds, u_h, u_v): u_h and u_v are the Gibbs step's torch.rand, drawn once."""
    rng = np.random.default_rng(case)
    params = {"W": (rng.standard_normal((32, 64)) * 2.0).astype(np.float32),
              "v_bias": np.zeros(64, np.float32), "h_bias": np.zeros(32, np.float32)}
    u_h = rng.uniform(0.0, 1.0, 32).astype(np.float32)
    u_v = rng.uniform(0.0, 1.0, 64).astype(np.float32)
    x = rng.uniform(0.0, 1.0, (N, 64)).astype(np.float32)
    return params, (x, np.zeros(N, np.int64)), u_h, u_v


def _rbm_params(case: int) -> Tuple[Dict[str, Any], Tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    params, seeds, u_h, u_v = _rbm_arrays(case)
    return _jnp_params(params), seeds, u_h, u_v


def _rbm_params_torch(case: int) -> Tuple[Dict[str, Any], Tuple[np.ndarray, np.ndarray], Any, Any]:
    import torch
    params, seeds, u_h, u_v = _rbm_arrays(case)
    return _torch_params(params), seeds, torch.from_numpy(u_h), torch.from_numpy(u_v)


def _gibbs(p: Dict[str, Any], v: Any, u_h: Any, u_v: Any) -> Any:
    """v -> sample h -> sample v1 (sample = relu(sign(p - u)))."""
    import jax
    import jax.numpy as jnp
    p_h = jax.nn.sigmoid(v @ p["W"].T + p["h_bias"])
    h = jax.nn.relu(jnp.sign(p_h - u_h))
    p_v = jax.nn.sigmoid(h @ p["W"] + p["v_bias"])
    return jax.nn.relu(jnp.sign(p_v - u_v))


def _gibbs_torch(p: Dict[str, Any], v: Any, u_h: Any, u_v: Any) -> Any:
    """v -> sample h -> sample v1 (sample = relu(sign(p - u)))."""
    import torch
    p_h = torch.sigmoid(v @ p["W"].t() + p["h_bias"])
    h = torch.relu(torch.sign(p_h - u_h))
    p_v = torch.sigmoid(h @ p["W"] + p["v_bias"])
    return torch.relu(torch.sign(p_v - u_v))


def build_grist_22() -> Built:
    """GRIST ID_22: RBM free energy, wx_b.exp().add(1).log() with exp unguarded (overflow)."""
    import jax.numpy as jnp
    params, seeds, u_h, u_v = _rbm_params(22)

    def free_energy(p: Dict[str, Any], v: Any) -> Any:
        wx_b = v @ p["W"].T + p["h_bias"]
        vbias_term = v @ p["v_bias"]
        hidden_term = jnp.log(jnp.exp(wx_b) + 1).sum(axis=1)
        return -hidden_term - vbias_term

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        f0 = free_energy(p, x)
        loss = f0 - free_energy(p, _gibbs(p, x, u_h, u_v))
        return {"loss": loss, "logits": f0[:, None]}
    return fn, params, seeds


def build_grist_22_torch() -> Built:
    """GRIST ID_22 in torch: RBM free energy, wx_b.exp().add(1).log() with exp unguarded (overflow)."""
    params, seeds, u_h, u_v = _rbm_params_torch(22)

    def free_energy(p: Dict[str, Any], v: Any) -> Any:
        wx_b = v @ p["W"].t() + p["h_bias"]
        vbias_term = v @ p["v_bias"]
        hidden_term = wx_b.exp().add(1).log().sum(dim=1)
        return -hidden_term - vbias_term

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        f0 = free_energy(p, x)
        loss = f0 - free_energy(p, _gibbs_torch(p, x, u_h, u_v))
        return {"loss": loss, "logits": f0[:, None]}
    return fn, params, seeds


def build_grist_51() -> Built:
    """GRIST ID_51: RBM (k=1) free energy, wx_b.exp().add(1).log() with exp unguarded (overflow)."""
    import jax.numpy as jnp
    params, seeds, u_h, u_v = _rbm_params(51)

    def free_energy(p: Dict[str, Any], v: Any) -> Any:
        vbias_term = v @ p["v_bias"]
        wx_b = v @ p["W"].T + p["h_bias"]
        hidden_term = jnp.sum(jnp.log(jnp.exp(wx_b) + 1), axis=1)
        return -hidden_term - vbias_term

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        output1 = free_energy(p, x)
        output2 = free_energy(p, _gibbs(p, x, u_h, u_v))
        return {"loss": output1 - output2, "logits": output1[:, None]}
    return fn, params, seeds


def build_grist_51_torch() -> Built:
    """GRIST ID_51 in torch: RBM (k=1) free energy, wx_b.exp().add(1).log() with exp unguarded (overflow)."""
    params, seeds, u_h, u_v = _rbm_params_torch(51)

    def free_energy(p: Dict[str, Any], v: Any) -> Any:
        vbias_term = v.mv(p["v_bias"])
        wx_b = v.mm(p["W"].t()) + p["h_bias"]
        hidden_term = wx_b.exp().add(1).log().sum(dim=1)
        return -hidden_term - vbias_term

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        output1 = free_energy(p, x)
        output2 = free_energy(p, _gibbs_torch(p, x, u_h, u_v))
        return {"loss": output1 - output2, "logits": output1[:, None]}
    return fn, params, seeds


def build_grist_62() -> Built:
    """GRIST ID_62: denoising RBM on FashionMNIST, log(exp(wx_b) + 1) with exp unguarded (overflow)."""
    import jax.numpy as jnp
    params, seeds, u_h, u_v = _rbm_params(62)

    def free_energy(p: Dict[str, Any], v: Any) -> Any:
        vbias_term = v @ p["v_bias"]
        wx_b = v @ p["W"].T + p["h_bias"]
        temp = jnp.log(jnp.exp(wx_b) + 1)
        hidden_term = jnp.sum(temp, axis=1)
        return -hidden_term - vbias_term

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        f0 = free_energy(p, x)
        return {"loss": f0 - free_energy(p, _gibbs(p, x, u_h, u_v)), "logits": f0[:, None]}
    return fn, params, seeds


def build_grist_62_torch() -> Built:
    """GRIST ID_62 in torch: denoising RBM on FashionMNIST, log(exp(wx_b) + 1) with exp unguarded (overflow)."""
    import torch
    params, seeds, u_h, u_v = _rbm_params_torch(62)

    def free_energy(p: Dict[str, Any], v: Any) -> Any:
        vbias_term = torch.matmul(v, p["v_bias"])
        wx_b = torch.matmul(v, p["W"].t()) + p["h_bias"]
        temp = torch.log(torch.exp(wx_b) + 1)
        hidden_term = torch.sum(temp, dim=1)
        return -hidden_term - vbias_term

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        f0 = free_energy(p, x)
        return {"loss": f0 - free_energy(p, _gibbs_torch(p, x, u_h, u_v)), "logits": f0[:, None]}
    return fn, params, seeds


def build_grist_63() -> Built:
    """GRIST ID_63: RBM on MNIST, log(exp(wx_b) + 1) with exp unguarded (overflow)."""
    import jax.numpy as jnp
    params, seeds, u_h, u_v = _rbm_params(63)

    def free_energy(p: Dict[str, Any], v: Any) -> Any:
        vbias_term = v @ p["v_bias"]
        wx_b = v @ p["W"].T + p["h_bias"]
        temp = jnp.log(
            jnp.exp(wx_b) + 1
        )
        return -jnp.sum(temp, axis=1) - vbias_term

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        f0 = free_energy(p, x)
        return {"loss": f0 - free_energy(p, _gibbs(p, x, u_h, u_v)), "logits": f0[:, None]}
    return fn, params, seeds


def build_grist_63_torch() -> Built:
    """GRIST ID_63 in torch: RBM on MNIST, log(exp(wx_b) + 1) with exp unguarded (overflow)."""
    import torch
    params, seeds, u_h, u_v = _rbm_params_torch(63)

    def free_energy(p: Dict[str, Any], v: Any) -> Any:
        vbias_term = torch.matmul(v, p["v_bias"])
        wx_b = torch.matmul(v, p["W"].t()) + p["h_bias"]
        temp = torch.log(
            torch.exp(wx_b) + 1
        )
        return -torch.sum(temp, dim=1) - vbias_term

    def fn(p: Dict[str, Any], x: Any, y: Any) -> Dict[str, Any]:
        f0 = free_energy(p, x)
        return {"loss": f0 - free_energy(p, _gibbs_torch(p, x, u_h, u_v)), "logits": f0[:, None]}
    return fn, params, seeds
