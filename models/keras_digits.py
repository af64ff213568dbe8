"""One Keras 3 digits MLP on the torch, JAX and TensorFlow backends, with identical weights.

Each ``build_keras_*`` function takes no argument, selects its backend through
``KERAS_BACKEND`` before importing keras (so it must run in a process where keras is not
yet imported, or already imported with that same backend), builds::

    keras.Sequential([keras.Input((64,)), Dense(200, "relu"), Dense(100, "relu"), Dense(10)])

loads the weights of ``weights/digits_mlp.npz`` (the model of ``digits.py``) and returns
``(fn, params, (x_seed, y_seed))``:

* ``params``: flat dict ``{"0": kernel1, "1": bias1, ..., "5": bias3}`` of plain
  backend-native float32 tensors, in ``model.trainable_variables`` order;
* ``fn(params, x, y)`` runs ``model.stateless_call`` with those values and returns
  ``{"loss": [B], "logits": [B, 10]}``, the loss being a safe log-softmax cross-entropy
  written with ``keras.ops``. It is differentiable by the backend's own AD w.r.t. ``x`` and
  ``params``. Keras casts variables and inputs to the model's float32 compute dtype, so other
  floating dtypes are computed in float32.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

WEIGHTS = Path(__file__).with_name("weights") / "digits_mlp.npz"
PARAM_NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")
N_CLASSES = 10

Built = tuple[Callable[..., dict[str, Any]], dict[str, Any], tuple[np.ndarray, np.ndarray]]


def _import_keras(backend: str) -> Any:
    """Import keras with ``backend``; RuntimeError if keras already runs another backend."""
    if "keras" in sys.modules:
        active = sys.modules["keras"].backend.backend()
        if active != backend:
            raise RuntimeError(
                f"keras is already imported with the {active!r} backend in this process; "
                f"the {backend!r} backend needs a fresh process (KERAS_BACKEND is read once)"
            )
    os.environ["KERAS_BACKEND"] = backend
    import keras

    return keras


def _build(backend: str) -> Built:
    """Build the model on ``backend`` and wrap it in the (fn, params, seeds) contract."""
    keras = _import_keras(backend)
    ops = keras.ops
    with np.load(WEIGHTS, allow_pickle=False) as data:
        weights = [np.array(data[name], dtype=np.float32) for name in PARAM_NAMES]
        seeds = (np.array(data["x_test"], dtype=np.float32), np.array(data["y_test"], dtype=np.int64))
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(200, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(N_CLASSES),
        ]
    )
    model.set_weights(weights)
    # Fresh tensors (copies of the variables' values): plain tensors, no gradient tracking.
    params = {
        str(i): ops.convert_to_tensor(ops.convert_to_numpy(variable.value))
        for i, variable in enumerate(model.trainable_variables)
    }

    def fn(params: dict[str, Any], x: Any, y: Any) -> dict[str, Any]:
        values = [params[str(i)] for i in range(len(params))]
        logits, _ = model.stateless_call(values, [], x)
        log_p = ops.log_softmax(logits, axis=-1)
        onehot = ops.one_hot(y, N_CLASSES, dtype=logits.dtype)
        loss = -ops.sum(onehot * log_p, axis=-1)
        return {"loss": loss, "logits": logits}

    return fn, params, seeds


def build_keras_torch() -> Built:
    """The Keras MLP on the torch backend."""
    return _build("torch")


def build_keras_jax() -> Built:
    """The Keras MLP on the JAX backend."""
    return _build("jax")


def build_keras_tensorflow() -> Built:
    """The Keras MLP on the TensorFlow backend."""
    return _build("tensorflow")
