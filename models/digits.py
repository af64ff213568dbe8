"""Digits MLP (64-200-100-10, ReLU) for torch, JAX and TensorFlow, from one weight file.

Each ``build_*`` function takes no argument and returns ``(fn, params, (x_seed, y_seed))``:

* ``params``: flat dict ``{"w1", "b1", "w2", "b2", "w3", "b3"}`` of float32 library tensors
  (plain tensors: no ``requires_grad``, no ``tf.Variable``);
* ``x_seed`` (float32 ``[N, 64]`` in [-1, 1]) and ``y_seed`` (int64 ``[N]``): numpy arrays, the
  held-out test images of ``train.py``;
* ``fn(params, x, y)`` returns a dict of library tensors: ``loss`` (per example, ``[B]``),
  ``logits`` (``[B, 10]``), ``h1`` (``[B, 200]``) and ``h2`` (``[B, 100]``, post-ReLU).
  It computes in the floating dtype of ``params`` and ``x`` (nothing is fixed to float32), and
  also accepts a single example (``x`` of shape ``[64]``, ``y`` a scalar) as under ``vmap``.

``build_torch``, ``build_jax`` and ``build_tensorflow`` carry TensorFuzz's planted defect: the
cross-entropy takes ``exp`` of the raw logits (no max subtraction) and the log of the quotient,
so the loss becomes NaN/inf once the logit range nears ~88 in float32 (~11 in float16).
``build_torch_safe`` and ``build_jax_safe`` use a log-softmax instead: numerically safe controls.

Only numpy and the library in question are imported (each lazily, inside its builder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

WEIGHTS = Path(__file__).with_name("weights") / "digits_mlp.npz"
PARAM_NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")
N_CLASSES = 10

Built = tuple[Callable[..., dict[str, Any]], dict[str, Any], tuple[np.ndarray, np.ndarray]]


def load_arrays() -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return (float32 weights by name, (x_test, y_test)) read from ``weights/digits_mlp.npz``."""
    with np.load(WEIGHTS, allow_pickle=False) as data:
        weights = {name: np.array(data[name], dtype=np.float32) for name in PARAM_NAMES}
        seeds = (np.array(data["x_test"], dtype=np.float32), np.array(data["y_test"], dtype=np.int64))
    return weights, seeds


# --------------------------------------------------------------------------- torch

def _torch_fn(safe: bool) -> Callable[..., dict[str, Any]]:
    """The torch forward pass with the unsafe (or safe) cross-entropy."""
    import torch

    def fn(params: dict[str, Any], x: Any, y: Any) -> dict[str, Any]:
        h1 = torch.relu(x @ params["w1"] + params["b1"])
        h2 = torch.relu(h1 @ params["w2"] + params["b2"])
        logits = h2 @ params["w3"] + params["b3"]
        classes = torch.arange(N_CLASSES, device=y.device)
        onehot = (y.unsqueeze(-1) == classes).to(logits.dtype)
        if safe:
            log_p = torch.log_softmax(logits, dim=-1)
        else:
            e = torch.exp(logits)
            log_p = torch.log(e / e.sum(dim=-1, keepdim=True))
        loss = -(onehot * log_p).sum(dim=-1)
        return {"loss": loss, "logits": logits, "h1": h1, "h2": h2}

    return fn


def _torch_build(safe: bool) -> Built:
    import torch

    weights, seeds = load_arrays()
    params = {name: torch.tensor(value) for name, value in weights.items()}
    return _torch_fn(safe), params, seeds


def build_torch() -> Built:
    """Torch MLP with the unsafe softmax cross-entropy (planted defect)."""
    return _torch_build(safe=False)


def build_torch_safe() -> Built:
    """Torch MLP with a log-softmax cross-entropy (safe control)."""
    return _torch_build(safe=True)


# --------------------------------------------------------------------------- JAX

def _jax_fn(safe: bool) -> Callable[..., dict[str, Any]]:
    """The JAX forward pass with the unsafe (or safe) cross-entropy."""
    import jax
    import jax.numpy as jnp

    def fn(params: dict[str, Any], x: Any, y: Any) -> dict[str, Any]:
        h1 = jax.nn.relu(x @ params["w1"] + params["b1"])
        h2 = jax.nn.relu(h1 @ params["w2"] + params["b2"])
        logits = h2 @ params["w3"] + params["b3"]
        onehot = (jnp.expand_dims(y, -1) == jnp.arange(N_CLASSES)).astype(logits.dtype)
        if safe:
            log_p = jax.nn.log_softmax(logits, axis=-1)
        else:
            e = jnp.exp(logits)
            log_p = jnp.log(e / jnp.sum(e, axis=-1, keepdims=True))
        loss = -jnp.sum(onehot * log_p, axis=-1)
        return {"loss": loss, "logits": logits, "h1": h1, "h2": h2}

    return fn


def _jax_build(safe: bool) -> Built:
    import jax.numpy as jnp

    weights, seeds = load_arrays()
    params = {name: jnp.asarray(value) for name, value in weights.items()}
    return _jax_fn(safe), params, seeds


def build_jax() -> Built:
    """JAX MLP with the unsafe softmax cross-entropy (planted defect)."""
    return _jax_build(safe=False)


def build_jax_safe() -> Built:
    """JAX MLP with a log-softmax cross-entropy (safe control)."""
    return _jax_build(safe=True)


# --------------------------------------------------------------------------- TensorFlow

def _tensorflow_fn() -> Callable[..., dict[str, Any]]:
    """The TensorFlow forward pass with the unsafe softmax cross-entropy."""
    import tensorflow as tf

    def fn(params: dict[str, Any], x: Any, y: Any) -> dict[str, Any]:
        h1 = tf.nn.relu(_tf_dense(x, params["w1"], params["b1"]))
        h2 = tf.nn.relu(_tf_dense(h1, params["w2"], params["b2"]))
        logits = _tf_dense(h2, params["w3"], params["b3"])
        onehot = tf.one_hot(y, N_CLASSES, dtype=logits.dtype)
        e = tf.exp(logits)
        log_p = tf.math.log(e / tf.reduce_sum(e, axis=-1, keepdims=True))
        loss = -tf.reduce_sum(onehot * log_p, axis=-1)
        return {"loss": loss, "logits": logits, "h1": h1, "h2": h2}

    return fn


def _tf_dense(x: Any, w: Any, b: Any) -> Any:
    """``x @ w + b`` for a batch ``[B, n]`` or a single example ``[n]``."""
    import tensorflow as tf

    if x.shape.rank == 1:
        return tf.linalg.matvec(w, x, transpose_a=True) + b
    return tf.matmul(x, w) + b


def build_tensorflow() -> Built:
    """TensorFlow MLP with the unsafe softmax cross-entropy (planted defect)."""
    import tensorflow as tf

    weights, seeds = load_arrays()
    params = {name: tf.constant(value) for name, value in weights.items()}
    return _tensorflow_fn(), params, seeds
