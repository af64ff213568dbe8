"""The same calls written by hand: a trial's default scenarios in plain library code, timed.

    python bench/handwritten.py LIBRARY TRIALS.pkl   (run by bench/throughput.py in the library's interpreter)

TRIALS.pkl is a list of (api, [(value, differentiable, keyword, name)], scenarios) that
bench/throughput.py wrote (its own data).  For each trial this computes what nablafuzz's scenarios
compute, the way a maintainer would write it, eagerly and with no nablafuzz code: the call; the VJP
and the JVP; finite differences of <v, f> (seven evaluations); the four second-order compositions;
finite differences of the two first-order projections (seven evaluations each); and for JAX the VJP
of jax.jit of the call.  Prints one JSON list: per trial, its seconds, or null where the plain code
failed (a trial with several outputs or one it cannot bind by hand: left out of the ratio).
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
import time

import numpy as np

STEPS = (0.0, 1e-3, -1e-3, 5e-4, -5e-4, 2.5e-4, -2.5e-4)


def _resolve(api: str):
    parts = api.split(".")
    root = {"tf": "tensorflow"}.get(parts[0], parts[0])
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join([root] + parts[1:cut]))
        except ImportError:
            continue
        for p in parts[cut:]:
            obj = getattr(obj, p)
        return obj
    raise LookupError(api)


def _torch():
    import torch
    import torch.autograd.forward_ad as fwad

    def native(a, grad=False):
        t = torch.from_numpy(np.array(a))
        return t.requires_grad_() if grad else t

    def vjp(f, xs, vs, create_graph=False):
        outs = f(*xs)
        if not outs.requires_grad:  # a derivative that does not depend on x (a linear op's Q)
            return [torch.zeros_like(x) for x in xs]
        return torch.autograd.grad(outs, xs, vs, create_graph=create_graph, allow_unused=True, materialize_grads=True)

    def jvp(f, xs, us):
        return torch.func.jvp(f, tuple(xs), tuple(us))[1]
    return torch, native, vjp, jvp, lambda t: t.detach().numpy(), None


def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def vjp(f, xs, vs, create_graph=False):
        return jax.vjp(f, *xs)[1](vs)

    def jvp(f, xs, us):
        return jax.jvp(f, tuple(xs), tuple(us))[1]

    def compiled_vjp(f, xs, vs):
        return jax.vjp(jax.jit(f), *xs)[1](vs)
    return jnp, lambda a, grad=False: jnp.asarray(a), vjp, jvp, np.asarray, compiled_vjp


def _tensorflow():
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    def vjp(f, xs, vs, create_graph=False):
        with tf.GradientTape() as tape:
            tape.watch(xs)
            out = f(*xs)
        return tape.gradient(out, xs, output_gradients=vs, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def jvp(f, xs, us):
        with tf.autodiff.ForwardAccumulator(xs, us) as acc:
            out = f(*xs)
        return acc.jvp(out, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return tf, lambda a, grad=False: tf.constant(a), vjp, jvp, lambda t: t.numpy(), None


def _oneflow():
    import oneflow as flow

    def native(a, grad=False):
        t = flow.tensor(np.array(a))
        return t.requires_grad_() if grad else t

    def vjp(f, xs, vs, create_graph=False):
        out = f(*xs)
        if not out.requires_grad:  # a derivative that does not depend on x (a linear op's Q)
            return [flow.zeros_like(x) for x in xs]
        return flow.autograd.grad(out, xs, vs, retain_graph=True, create_graph=create_graph)

    def jvp(f, xs, us):  # OneFlow has no forward mode: J u by two reverse passes
        out = f(*xs)
        if not out.requires_grad:
            return flow.zeros_like(out)
        dummy = flow.zeros_like(out).requires_grad_()
        g = flow.autograd.grad(out, xs, dummy, create_graph=True)
        return flow.autograd.grad(g, dummy, us, create_graph=True)[0]
    return flow, native, vjp, jvp, lambda t: t.detach().numpy(), None


def main() -> int:
    library, path = sys.argv[1], sys.argv[2]
    lib, native, vjp, jvp, to_numpy, compiled_vjp = {"torch": _torch, "jax": _jax, "tensorflow": _tensorflow,
                                                     "oneflow": _oneflow}[library]()
    trials = pickle.load(open(path, "rb"))
    rng = np.random.default_rng(0)
    times = []
    for api, inputs, scenarios in trials:
        start = time.perf_counter()
        fn = _resolve(api)
        diff = [v for v, d, _, _ in inputs if d]

        def f(*xs, _fn=fn, _inputs=inputs):
            it = iter(xs)
            args, kwargs = [], {}
            for v, d, k, n in _inputs:
                value = next(it) if d else (native(v) if isinstance(v, np.ndarray) else v)
                if k:
                    kwargs[n] = value
                else:
                    args.append(value)
            out = _fn(*args, **kwargs)
            return out[0] if isinstance(out, (tuple, list)) else out

        def p(xs, v):  # <v, f(xs)> in numpy
            return float(np.sum(to_numpy(f(*[native(x) for x in xs])) * v))
        try:
            y = to_numpy(f(*[native(x) for x in diff]))
            v = rng.standard_normal(y.shape).astype(y.dtype)
            us = [rng.standard_normal(x.shape).astype(x.dtype) for x in diff]
            ws = [rng.standard_normal(x.shape).astype(x.dtype) for x in diff]
            nx, nv, nu, nw = [native(x, True) for x in diff], native(v), [native(u) for u in us], [native(w) for w in ws]
            [to_numpy(g) for g in vjp(f, nx, nv)]                                          # rev
            to_numpy(jvp(f, nx, nu))                                                       # fwd
            x64 = [x.astype(np.float64) for x in diff]
            [p([x + h * u for x, u in zip(x64, us)], v) for h in STEPS]                    # fd

            def q_rev(*xs):
                return lib.add_n([lib.reduce_sum(g * u) for g, u in zip(vjp(f, list(xs), nv, True), nu)]) \
                    if library == "tensorflow" else sum((g * u).sum() for g, u in zip(vjp(f, list(xs), nv, True), nu))

            def q_fwd(*xs):
                t = jvp(f, list(xs), nu)
                return lib.reduce_sum(t * nv) if library == "tensorflow" else (t * nv).sum()
            one = native(np.ones((), dtype=diff[0].dtype))
            for q in (q_rev, q_fwd):
                [to_numpy(g) for g in vjp(q, nx, one)]                                     # rev.rev, rev.fwd
                to_numpy(jvp(q, nx, nw))                                                   # fwd.rev, fwd.fwd
            for q in (q_rev, q_fwd):                                                       # fd.rev, fd.fwd
                [float(to_numpy(q(*[native(x + h * w) for x, w in zip(diff, ws)]))) for h in STEPS]
            if compiled_vjp is not None and "jit" in scenarios:
                [to_numpy(g) for g in compiled_vjp(f, nx, nv)]                             # jit
        except Exception as exc:  # noqa: BLE001 - a trial this plain code cannot run: left out of the ratio
            if os.environ.get("HANDWRITTEN_DEBUG"):
                import traceback; traceback.print_exc()
            times.append(None)
            continue
        times.append(time.perf_counter() - start)
    print(json.dumps(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
