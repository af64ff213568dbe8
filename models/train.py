"""Train the digits MLP used by the model fuzzing specs (models.yaml).

Run with an interpreter that has scikit-learn and numpy installed::

    python models/train.py

The network is 64-200-100-10 with ReLU hidden layers, trained in plain numpy
float64 with minibatch SGD on scikit-learn's 8x8 digits. Everything is seeded,
and the archive is written with fixed zip timestamps, so each run writes the
same bytes. The weights are stored as float32 in ``weights/digits_mlp.npz``
together with the held-out test images and labels (the fuzzing seeds).
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

HIDDEN = (200, 100)
N_TRAIN = 1500
STEPS = 3000
BATCH = 64
LR = 0.05
SEED = 0
OUT = Path(__file__).with_name("weights") / "digits_mlp.npz"

Params = dict[str, np.ndarray]


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test), x scaled to [-1, 1] as x / 8 - 1."""
    digits = load_digits()
    x = digits.data.astype(np.float64) / 8.0 - 1.0
    y = digits.target.astype(np.int64)
    order = np.random.Generator(np.random.PCG64(SEED)).permutation(len(x))
    train, test = order[:N_TRAIN], order[N_TRAIN:]
    return x[train], y[train], x[test], y[test]


def init_params(rng: np.random.Generator) -> Params:
    """Weights uniform in [-0.5, 0.5), biases zero."""
    sizes = (64, *HIDDEN, 10)
    params: Params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"w{i}"] = rng.uniform(-0.5, 0.5, size=(n_in, n_out))
        params[f"b{i}"] = np.zeros(n_out)
    return params


def forward(params: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (h1, h2, logits)."""
    h1 = np.maximum(x @ params["w1"] + params["b1"], 0.0)
    h2 = np.maximum(h1 @ params["w2"] + params["b2"], 0.0)
    return h1, h2, h2 @ params["w3"] + params["b3"]


def loss_and_grads(params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
    """Mean cross-entropy (stable softmax) and its gradients by hand-written backprop."""
    h1, h2, logits = forward(params, x)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(x)
    loss = -log_p[np.arange(n), y].mean()
    d_logits = np.exp(log_p)
    d_logits[np.arange(n), y] -= 1.0
    d_logits /= n
    d_h2 = (d_logits @ params["w3"].T) * (h2 > 0)
    d_h1 = (d_h2 @ params["w2"].T) * (h1 > 0)
    grads = {
        "w3": h2.T @ d_logits, "b3": d_logits.sum(axis=0),
        "w2": h1.T @ d_h2, "b2": d_h2.sum(axis=0),
        "w1": x.T @ d_h1, "b1": d_h1.sum(axis=0),
    }
    return float(loss), grads


def accuracy(params: Params, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of images whose argmax logit is the label."""
    return float((forward(params, x)[2].argmax(axis=1) == y).mean())


def train(x: np.ndarray, y: np.ndarray) -> Params:
    """Minibatch SGD over reshuffled epochs for STEPS steps."""
    rng = np.random.Generator(np.random.PCG64(SEED))
    params = init_params(rng)
    order = np.empty(0, dtype=np.int64)
    for _ in range(STEPS):
        if len(order) < BATCH:
            order = rng.permutation(len(x))
        batch, order = order[:BATCH], order[BATCH:]
        _, grads = loss_and_grads(params, x[batch], y[batch])
        for name, grad in grads.items():
            params[name] -= LR * grad
    return params


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a deflated .npz with fixed zip timestamps (byte-identical across runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def main() -> None:
    """Train, report accuracy and the logit range, save the weights and seeds."""
    x_train, y_train, x_test, y_test = load_data()
    start = time.perf_counter()
    params = train(x_train, y_train)
    seconds = time.perf_counter() - start
    stored = {name: value.astype(np.float32) for name, value in params.items()}
    stored_64 = {name: value.astype(np.float64) for name, value in stored.items()}
    x_test_32 = x_test.astype(np.float32)
    logits = forward(stored_64, x_test_32.astype(np.float64))[2]
    logit_range = float((logits.max(axis=1) - logits.min(axis=1)).max())
    print(f"training: {STEPS} steps, batch {BATCH}, lr {LR}, {seconds:.1f} s")
    print(f"train accuracy: {accuracy(stored_64, x_train, y_train):.4f}")
    print(f"test accuracy:  {accuracy(stored_64, x_test, y_test):.4f}")
    print(f"max over test images of (max logit - min logit): {logit_range:.2f}")
    save_npz(OUT, {**stored, "x_test": x_test_32, "y_test": y_test.astype(np.int64)})
    print(f"saved {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
