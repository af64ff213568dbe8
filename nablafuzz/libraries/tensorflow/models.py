"""TensorFlow side of model fuzzing (worker/models.py): forward pass, gradients by
tf.GradientTape, forward mode by tf.autodiff.ForwardAccumulator, compiled by
tf.function(jit_compile=True)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf


@dataclass
class Built:
    fn: Any
    params: Dict[str, Any]
    seeds: Tuple[Any, Any]
    cast: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    compiled: Any = None


def _np(t: Any) -> np.ndarray:
    a = np.asarray(t.numpy() if hasattr(t, "numpy") else t)
    return a.astype(np.float64) if a.dtype.kind == "f" or a.dtype.name == "bfloat16" else a


class ModelOps:
    def wrap(self, fn: Any, params: Dict[str, Any], seeds: Tuple[Any, Any]) -> Built:
        return Built(fn, {k: tf.convert_to_tensor(v) for k, v in params.items()}, seeds)

    def numpy_params(self, m: Built) -> Dict[str, np.ndarray]:
        return {k: np.asarray(v.numpy(), dtype=np.float64) for k, v in m.params.items()}

    def shapes(self, m: Built) -> List[Tuple[int, ...]]:
        return [tuple(p.shape) for p in m.params.values()]

    def _params(self, m: Built, dtype: str) -> Dict[str, Any]:
        if dtype not in m.cast:
            m.cast[dtype] = {k: tf.cast(v, dtype) for k, v in m.params.items()}
        return m.cast[dtype]

    def forward(self, m: Built, x: np.ndarray, y: np.ndarray, dtype: str,
                shift: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """Outputs at the parameters (plus `shift`, per parameter name)."""
        params = self._params(m, dtype)
        if shift:
            params = {k: v + tf.cast(tf.constant(shift[k]), dtype) if k in shift else v for k, v in params.items()}
        out = m.fn(params, tf.cast(tf.constant(x), dtype), tf.constant(y))
        return {k: _np(v) for k, v in out.items()}

    def gradients(self, m: Built, x: np.ndarray, y: np.ndarray,
                  dtype: str) -> Tuple[Dict[str, np.ndarray], np.ndarray, Dict[str, np.ndarray]]:
        params = self._params(m, dtype)
        xs = tf.cast(tf.constant(x), dtype)
        with tf.GradientTape() as tape:
            tape.watch([xs, *params.values()])
            out = m.fn(params, xs, tf.constant(y))
            loss = tf.reduce_sum(out["loss"])
        grads = tape.gradient(loss, [xs, *params.values()])
        gp = {k: _np(g) if g is not None else np.zeros(tuple(p.shape)) for g, (k, p) in zip(grads[1:], params.items())}
        return {k: _np(v) for k, v in out.items()}, _np(grads[0]), gp

    def jvp(self, m: Built, x: np.ndarray, y: np.ndarray, u: np.ndarray, dtype: str) -> np.ndarray:
        xs = tf.cast(tf.constant(x), dtype)
        with tf.autodiff.ForwardAccumulator(xs, tf.cast(tf.constant(u), dtype)) as acc:
            loss = m.fn(self._params(m, dtype), xs, tf.constant(y))["loss"]
        return _np(acc.jvp(loss))

    def jvp_params(self, m: Built, x: np.ndarray, y: np.ndarray, w: Dict[str, np.ndarray], dtype: str) -> np.ndarray:
        """Per example: the loss's derivative along w in parameter space (ForwardAccumulator)."""
        params = self._params(m, dtype)
        keys = list(params)
        tangents = [tf.cast(tf.constant(w[k]), dtype) if k in w else tf.zeros_like(params[k]) for k in keys]
        with tf.autodiff.ForwardAccumulator([params[k] for k in keys], tangents) as acc:
            loss = m.fn(params, tf.cast(tf.constant(x), dtype), tf.constant(y))["loss"]
        return _np(acc.jvp(loss))

    def compiled_gradients(self, m: Built, x: np.ndarray, y: np.ndarray, dtype: str) -> Tuple[np.ndarray, np.ndarray]:
        if m.compiled is None:
            fn = m.fn

            @tf.function(jit_compile=True)
            def grads(params: Any, xs: Any, ys: Any) -> Any:
                with tf.GradientTape() as tape:
                    tape.watch(xs)
                    loss = fn(params, xs, ys)["loss"]
                return loss, tape.gradient(tf.reduce_sum(loss), xs)
            m.compiled = grads
        loss, gx = m.compiled(self._params(m, dtype), tf.cast(tf.constant(x), dtype), tf.constant(y))
        return _np(loss), _np(gx)
