"""Repro scripts for model reports (`model:<name>`): rebuild the model from its spec's builder,
load the literal input, evaluate the objective with the library's own AD, print the numbers
and exit 1 while the defect is there.  The builder is named by the loaded model spec, never
by the report (Note [model names]); names are checked before they enter the script.
"""
from __future__ import annotations

import re
from typing import Dict

from ..core.model import BugReport
from ..core.tensors import to_array
from ..specs.models import ModelSpec, model_name
from .repro import DIRECTION, ReproError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

# per library: imports, `grads(dtype, x, y)` -> (loss, dloss/dx, [dloss/dparam]) as float64
# numpy (the loss summed over the batch of one), `jvp(x, y, u)` -> the loss's derivative along u
_LIBRARY: Dict[str, str] = {
    "torch": '''
import torch

fn, params, _ = build()


def grads(dtype, x, y):
    ps = {k: v.detach().to(getattr(torch, dtype)).requires_grad_() for k, v in params.items()}
    xs = torch.from_numpy(x).to(getattr(torch, dtype)).requires_grad_()
    out = fn(ps, xs, torch.from_numpy(y))
    g = torch.autograd.grad(out["loss"].sum(), [xs, *ps.values()], allow_unused=True)
    num = lambda t: t.detach().double().numpy()
    return num(out["loss"]), num(out["logits"]), num(g[0]), [num(t) for t in g[1:] if t is not None]


def jvp(x, y, u):  # float64
    ps = {k: v.detach().double() for k, v in params.items()}
    _, t = torch.func.jvp(lambda xs: fn(ps, xs, torch.from_numpy(y))["loss"], (torch.from_numpy(x).double(),),
                          (torch.from_numpy(u).double(),))
    return t.numpy()


def jvp_params(x, y, ws):  # float64, along ws in parameter space
    ps = {k: v.detach().double() for k, v in params.items()}
    ts = {k: torch.from_numpy(ws[k]) for k in ps}
    _, t = torch.func.jvp(lambda p: fn(p, torch.from_numpy(x).double(), torch.from_numpy(y))["loss"], (ps,), (ts,))
    return t.numpy()


def loss_at(x, y, shift):  # float64, parameters + shift
    ps = {k: v.detach().double() + torch.from_numpy(shift[k]) for k, v in params.items()}
    with torch.no_grad():
        return fn(ps, torch.from_numpy(x).double(), torch.from_numpy(y))["loss"].numpy()
''',
    "jax": '''
import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)
fn, params, _ = build()


def grads(dtype, x, y):
    ps = {k: jnp.asarray(v).astype(dtype) for k, v in params.items()}

    def total(p, xs):
        out = fn(p, xs, jnp.asarray(y))
        return out["loss"].sum(), out
    # jitted, as nablafuzz's worker runs it (XLA's fused kernels round differently from op-by-op)
    (gp, gx), out = jax.jit(jax.grad(total, argnums=(0, 1), has_aux=True))(ps, jnp.asarray(x, dtype=dtype))
    num = lambda a: np.asarray(a).astype(np.float64)
    return num(out["loss"]), num(out["logits"]), num(gx), [num(g) for g in gp.values()]


def jvp(x, y, u):  # float64
    ps = {k: jnp.asarray(v).astype(jnp.float64) for k, v in params.items()}
    return np.asarray(jax.jvp(lambda xs: fn(ps, xs, jnp.asarray(y))["loss"], (jnp.asarray(x, dtype=jnp.float64),),
                              (jnp.asarray(u, dtype=jnp.float64),))[1])


def jvp_params(x, y, ws):  # float64, along ws in parameter space
    ps = {k: jnp.asarray(v).astype(jnp.float64) for k, v in params.items()}
    ts = {k: jnp.asarray(ws[k]) for k in ps}
    return np.asarray(jax.jvp(lambda p: fn(p, jnp.asarray(x, dtype=jnp.float64), jnp.asarray(y))["loss"], (ps,), (ts,))[1])


def loss_at(x, y, shift):  # float64, parameters + shift
    ps = {k: jnp.asarray(v).astype(jnp.float64) + shift[k] for k, v in params.items()}
    return np.asarray(jax.jit(fn)(ps, jnp.asarray(x, dtype=jnp.float64), jnp.asarray(y))["loss"])
''',
    "tensorflow": '''
import tensorflow as tf

fn, params, _ = build()


def grads(dtype, x, y):
    ps = {k: tf.cast(v, dtype) for k, v in params.items()}
    xs = tf.cast(tf.constant(x), dtype)
    with tf.GradientTape() as tape:
        tape.watch([xs, *ps.values()])
        out = fn(ps, xs, tf.constant(y))
        total = tf.reduce_sum(out["loss"])
    g = tape.gradient(total, [xs, *ps.values()])
    num = lambda t: np.asarray(tf.cast(t, tf.float64))
    return num(out["loss"]), num(out["logits"]), num(g[0]), [num(t) for t in g[1:] if t is not None]


def jvp(x, y, u):  # float64
    xs = tf.constant(x.astype(np.float64))
    with tf.autodiff.ForwardAccumulator(xs, tf.constant(u.astype(np.float64))) as acc:
        loss = fn({k: tf.cast(v, tf.float64) for k, v in params.items()}, xs, tf.constant(y))["loss"]
    return np.asarray(acc.jvp(loss))


def jvp_params(x, y, ws):  # float64, along ws in parameter space
    ps = {k: tf.cast(v, tf.float64) for k, v in params.items()}
    keys = list(ps)
    with tf.autodiff.ForwardAccumulator([ps[k] for k in keys], [tf.constant(ws[k]) for k in keys]) as acc:
        loss = fn(ps, tf.constant(x.astype(np.float64)), tf.constant(y))["loss"]
    return np.asarray(acc.jvp(loss))


def loss_at(x, y, shift):  # float64, parameters + shift
    ps = {k: tf.cast(v, tf.float64) + shift[k] for k, v in params.items()}
    return np.asarray(fn(ps, tf.constant(x.astype(np.float64)), tf.constant(y))["loss"])
''',
}

_DIRECTION = "\n" + DIRECTION

_CHECK: Dict[str, str] = {
    "nonfinite": '''
loss, logits, gx, gp = grads("float32", X, Y)
finite_grad = bool(np.isfinite(gx).all() and all(np.isfinite(g).all() for g in gp))
print("loss:", loss, " gradient finite:", finite_grad)
bad = not np.isfinite(loss).all() or not finite_grad
print("DEFECT: the loss or its gradient is not finite" if bad else "OK: loss and gradient finite")
sys.exit(1 if bad else 0)
''',
    "grad-nonfinite": '''
loss, logits, gx, gp = grads("float32", X, Y)
finite_grad = bool(np.isfinite(gx).all() and all(np.isfinite(g).all() for g in gp))
print("loss:", loss, " gradient finite:", finite_grad)
bad = np.isfinite(loss).all() and not finite_grad
print("DEFECT: the loss is finite, its gradient is not" if bad else "OK")
sys.exit(1 if bad else 0)
''',
    "rev-fwd-fd": '''
# in float64: a wrong derivative rule shows there, float32 rounding under cancellation does not
U = direction(SEED, "u", 0, X.shape[1:], "float64")[None]
X64 = X.astype(np.float64)
loss, logits, gx, gp = grads("float64", X64, Y)
rev = float(np.sum(U * gx))
scale = float(np.sum(np.abs(U * gx)))
fwd = float(jvp(X64, Y, U)[0])
h = 1e-4 / 4
fd = float((grads("float64", X64 + h * U, Y)[0] - grads("float64", X64 - h * U, Y)[0])[0] / (2 * h))
print(f"<u, dloss/dx>: reverse {rev!r}, forward {fwd!r}, central differences {fd!r} (scale {scale:.3g})")
bad = abs(rev - fwd) > 1e-7 * scale or abs(rev - fd) > 1e-5 * max(scale, abs(fd))
# the same along a direction w in parameter space (one direction per parameter, by sorted name)
names = sorted(params)
W = {k: direction(SEED, "w", i, tuple(params[k].shape), "float64") for i, k in enumerate(names)}
gps = dict(zip(list(params), gp))
p_rev = sum(float(np.sum(W[k] * gps[k])) for k in names)
p_scale = sum(float(np.sum(np.abs(W[k] * gps[k]))) for k in names)
p_fwd = float(jvp_params(X64, Y, W)[0])
p_fd = float((loss_at(X64, Y, {k: h * w for k, w in W.items()}) - loss_at(X64, Y, {k: -h * w for k, w in W.items()}))[0]
             / (2 * h))
print(f"<w, dloss/dparams>: reverse {p_rev!r}, forward {p_fwd!r}, central differences {p_fd!r} (scale {p_scale:.3g})")
bad = bad or abs(p_rev - p_fwd) > 1e-7 * p_scale or abs(p_rev - p_fd) > 1e-5 * max(p_scale, abs(p_fd))
print("DISAGREEMENT" if bad else "AGREEMENT")
sys.exit(1 if bad else 0)
''',
    "fp16": '''
_, logits32, gx32, _ = grads("float32", X, Y)
loss16, logits16, gx16, _ = grads("float16", X, Y)
print("predicted class: float32", int(np.argmax(logits32)), " float16", int(np.argmax(logits16)))
print("float16 loss", loss16, " input gradient finite:", bool(np.isfinite(gx16).all()))
bad = np.argmax(logits32) != np.argmax(logits16) or (np.isfinite(loss16).all() and not np.isfinite(gx16).all()
                                                     and np.isfinite(gx32).all())
print("DISAGREEMENT" if bad else "AGREEMENT")
sys.exit(1 if bad else 0)
''',
}
_CHECK["bf16"] = _CHECK["fp16"].replace("float16", "bfloat16")


def render_model(report: BugReport, specs: Dict[str, ModelSpec]) -> str:
    fp, trial = report.fingerprint, report.trial
    name = model_name(fp.api)
    spec = specs.get(name or "")
    if spec is None or (trial.library, trial.api) != (fp.library, fp.api):
        raise ReproError(f"repro: the report names model {fp.api!r}, which no loaded model spec declares "
                         "(fix: pass its model spec file with --models)")
    objective = fp.scenarios[0] if fp.scenarios else ""
    if objective not in _CHECK:
        raise ReproError(f"repro: objective {objective!r} compares compiled kernels or several libraries; replay the "
                         "report with `nablafuzz replay`")
    build = spec.builder(fp.library)
    if fp.library not in _LIBRARY or build is None:
        raise ReproError(f"repro: no model script for {fp.library}")
    module, function = build.split(":")
    if not (_NAME.match(module) and _NAME.match(function)):
        raise ReproError(f"repro: builder {build!r} is not module:function")
    named = {i.name: to_array(i.value) for i in trial.inputs}
    x, y = named["x"], named["y"]
    rows = [f"    {', '.join(repr(float(v)) for v in x.ravel()[i:i + 8])}," for i in range(0, x.size, 8)]
    head = [f'"""nablafuzz repro: model {name} ({fp.library}), objective {objective}.', "",
            report.evidence.message.replace('"""', "'''"), '"""', "import sys", "", "import numpy as np", "",
            f"sys.path.insert(0, {spec.directory!r})  # the model spec's directory ({spec.source})",
            f"from {module} import {function} as build  # noqa: E402", "",
            "X = np.array([", *rows, f"], dtype=np.float32).reshape({tuple(x.shape)!r})",
            f"Y = np.array({[int(v) for v in y.ravel()]!r}, dtype=np.int64)", f"SEED = {int(trial.seed)}"]
    return "\n".join(head) + "\n" + _LIBRARY[fp.library] + _DIRECTION + _CHECK[objective]
