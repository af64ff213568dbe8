"""Entry points as scenarios: the transforms users call, each with its own code path upstream.

`jacrev` and `jacfwd` build the full Jacobian (torch.func.jacrev / jax.jacrev, vmapped VJPs or
JVPs; TensorFlow's GradientTape.jacobian, vectorised by pfor), `vmap` computes per-sample VJPs
(vmap over a batch of primal points: the op's batching rule and its backward; TensorFlow's
vectorized_map), `graph` is the VJP of the graph-compiled function (tf.function without XLA),
and `hessian` is the Hessian of <v, f> (jacfwd of jacrev; nested tapes in TensorFlow).  A
library without one of them leaves it None: unsupported.  Each gives the same projection as the plain modes of its order, so
the comparator judges it like any other mode: jacrev/jacfwd/vmap against <v, J u>, hessian
against v^T D2f [u, w].  One implementation serves every library whose transforms share the
functional API (`lib`: jacrev, jacfwd, hessian, vmap, vjp, graph, stack, sum, to_numpy, native); repro
scripts include this function's source unchanged (repro.py), so a report is replayed by the
same code in plain library terms.  Worker-safe: numpy only.
"""
from __future__ import annotations

import numpy as np


def entry_value(name, lib, g, xs, us, vs, ws, project):
    """(value, scale) of entry point `name` for g(*xs) -> tuple of differentiated outputs (xs
    native arrays), with the trial's directions u, w and cotangents v (numpy arrays); `project`
    as the plain modes use it.  No annotations: repro scripts include this source as it is."""
    if not all(np.size(u) for u in us) or not all(np.size(v) for v in vs):
        raise NotImplementedError("entry points are compared on non-empty inputs and outputs only")
    if getattr(lib, name, None) is None:
        raise NotImplementedError(f"no {name} transform in this library")
    argnums = tuple(range(len(xs)))
    outs = g(*xs)

    def runs(call, what):  # a transform that cannot run the function itself is unsupported for it
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the library's own error, reported as the reason
            raise NotImplementedError(f"the call itself does not run under {what}: {type(exc).__name__}: "
                                      f"{str(exc)[:300]}") from None
    cts = tuple(lib.native(v, o) for v, o in zip(vs, outs))

    def flat(t, rows):
        return np.asarray(lib.to_numpy(t), dtype=np.float64).reshape(rows, -1)

    if name in ("jacrev", "jacfwd"):
        jac = getattr(lib, name)(g, argnums=argnums)(*xs)  # jac[output][input]: out.shape + in.shape
        if name == "jacrev":  # J^T v per input, then <., u>
            grads = [sum(np.ravel(v).astype(np.float64) @ flat(jac[o][i], np.size(v)) for o, v in enumerate(vs))
                     for i in range(len(xs))]
            return project([g_.reshape(np.shape(u)) for g_, u in zip(grads, us)], us)
        tans = [sum(flat(jac[o][i], np.size(v)) @ np.ravel(u).astype(np.float64) for i, u in enumerate(us))
                for o, v in enumerate(vs)]
        return project(vs, [t.reshape(np.shape(v)) for t, v in zip(tans, vs)])
    if name == "vmap":  # per-sample VJPs: vmap over a batch of two copies of the point, averaged
        def per_point(*a):
            return lib.vjp(g, *a)[1](cts)
        batch = [lib.stack([x, x]) for x in xs]
        runs(lambda: lib.vmap(g)(*batch), "vmap")
        rows = lib.vmap(per_point)(*batch)
        grads = [flat(r, 2).sum(axis=0).reshape(np.shape(u)) / 2 for r, u in zip(rows, us)]
        return project(grads, us)
    if name == "graph":  # the VJP of the library's graph-compiled function (tf.function without XLA)
        runs(lambda: lib.graph(g)(*xs), "graph")
        grads = [flat(t, 1).reshape(np.shape(u)) for t, u in zip(lib.vjp(lib.graph(g), *xs)[1](cts), us)]
        return project(grads, us)
    if name == "hessian":  # H of <v, f>, then sum_ij w_i H_ij u_j
        def h(*a):
            return sum(lib.sum(o * c) for o, c in zip(g(*a), cts))
        hess = lib.hessian(h, argnums=argnums)(*xs)  # hess[i][j]: x_i.shape + x_j.shape
        hu = [sum(flat(hess[i][j], np.size(w)) @ np.ravel(u).astype(np.float64) for j, u in enumerate(us))
              for i, w in enumerate(ws)]
        return project([t.reshape(np.shape(w)) for t, w in zip(hu, ws)], ws)
    raise ValueError(f"unknown entry point {name!r}")


def tensorflow_transforms(tf, to_numpy):
    """TensorFlow's own transforms in the functional form entry_value takes: jacobians by
    GradientTape.jacobian (pfor), per-sample VJPs by vectorized_map, the hessian by nested
    tapes, the graph by tf.function without XLA; no jacfwd.  `tf` is passed in (this module
    imports no library), so repro scripts include this source unchanged too."""
    import types

    zero = tf.UnconnectedGradients.ZERO

    def dense(d, x):
        return tf.zeros_like(x) if d is None else tf.convert_to_tensor(d)

    def watched(xs, persistent):
        tape = tf.GradientTape(persistent=persistent, watch_accessed_variables=False)
        tape.__enter__()
        for x in xs:
            tape.watch(x)
        return tape

    def vjp(g, *xs):  # one gradient call: a persistent tape breaks vectorized_map over tf.cond
        tape = watched(xs, False)
        outs = g(*xs)
        tape.__exit__(None, None, None)
        return outs, lambda cts: tuple(dense(d, x) for d, x in zip(
            tape.gradient(list(outs), list(xs), output_gradients=list(cts), unconnected_gradients=zero), xs))

    def jacrev(g, argnums):
        def jac(*xs):
            tape = watched(xs, True)
            outs = g(*xs)
            tape.__exit__(None, None, None)
            return tuple(tuple(tape.jacobian(o, x, unconnected_gradients=zero) for x in xs) for o in outs)
        return jac

    def hessian(h, argnums):
        def hess(*xs):
            outer = watched(xs, True)
            inner = watched(xs, False)
            y = h(*xs)
            inner.__exit__(None, None, None)
            grads = inner.gradient(y, list(xs), unconnected_gradients=zero)
            outer.__exit__(None, None, None)
            return tuple(tuple(outer.jacobian(gi, x, unconnected_gradients=zero) for x in xs) for gi in grads)
        return hess

    def vmap(fn):
        return lambda *batched: tf.vectorized_map(lambda a: fn(*a), tuple(batched))

    return types.SimpleNamespace(jacrev=jacrev, jacfwd=None, hessian=hessian, vmap=vmap, vjp=vjp, stack=tf.stack,
                                 sum=tf.reduce_sum, to_numpy=to_numpy, graph=tf.function,
                                 native=lambda v, o: tf.constant(np.asarray(v), dtype=o.dtype))
