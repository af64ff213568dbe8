"""The worker's side of `nablafuzz modelfuzz`: build a model from its spec, run a batch of inputs.

Request `{"op": "model", "build": "module:function", "action": "info" | "batch", ...}`:
`info` answers the seed inputs and the outputs' names and shapes; `graph` the traced loss
(or its gradient) as a core/graph.py graph, for `nablafuzz numerics`; `batch` runs inputs `x`
[B, ...] with labels `y` [B] and answers, per example, the coverage vector and, per
objective (core/objectives.py), whether it holds and the numbers behind it.  The
library-specific part (casting, gradients, forward mode, compiling) is the library's
`models.py` (`ModelOps`); everything else here is numpy.  Worker-safe: Python 3.10, numpy 1.26.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Tuple

import numpy as np

from ..core.objectives import LOW_PRECISION
from ..core.quantities import direction
from ..libraries.base import resolve_user_function

FD_STEP = 1e-4  # float64 central differences of the loss along u: steps h and h/4
FD_AGREE = 1e-6  # the two steps disagree by more than this share of the scale: a kink, no reference


def load_ops(library: str) -> Any:
    """The library's ModelOps (libraries/<library>/models.py); ImportError where it has none."""
    return importlib.import_module(f"nablafuzz.libraries.{library}.models").ModelOps()


class ModelHost:
    """Built models of one worker, by builder name (built once, cast once per dtype)."""

    def __init__(self, library: str):
        self.ops = load_ops(library)
        self.built: Dict[str, Any] = {}

    def model(self, build: str) -> Any:
        if build not in self.built:
            fn, params, seeds = resolve_user_function(build)()
            self.built[build] = self.ops.wrap(fn, params, seeds)
        return self.built[build]

    def answer(self, request: Dict[str, Any]) -> Dict[str, Any]:
        m = self.model(request["build"])
        if request["action"] == "info":
            x, y = (np.asarray(a) for a in m.seeds)
            outs = self.ops.forward(m, x[:2].astype(np.float32), y[:2], "float32")
            return {"op": "model", "x": x.astype(np.float32), "y": y.astype(np.int64),
                    "outputs": {k: list(v.shape[1:]) for k, v in outs.items()},
                    "parameters": int(sum(np.prod(s) for s in self.ops.shapes(m)))}
        if request["action"] == "confirm":  # `nablafuzz numerics --confirm`: a failing input for a flag
            from .numerics import confirm
            if not hasattr(self.ops, "program"):
                raise NotImplementedError(f"{type(self.ops).__module__} cannot confirm flags yet")
            return confirm(self.ops.program(m, bool(request["backward"])), request)
        if request["action"] == "graph":  # `nablafuzz numerics`: the traced loss or gradient, and the parameters' ranges
            x, y = (np.asarray(a) for a in m.seeds)
            if not hasattr(self.ops, "trace"):
                raise NotImplementedError(f"{type(self.ops).__module__} cannot trace graphs yet")
            graph = self.ops.trace(m, x[:1].astype(np.float32), y[:1].astype(np.int64), bool(request["backward"]))
            ranges = {k: [float(np.min(v)), float(np.max(v))] for k, v in self.ops.numpy_params(m).items()}
            return {"op": "model", "graph": graph, "ranges": ranges, "classes": int(self.ops.forward(
                m, x[:1].astype(np.float32), y[:1].astype(np.int64), "float32")["logits"].shape[-1])}
        return dict(batch(self.ops, m, request), op="model")


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


def _finite(a: np.ndarray) -> np.ndarray:
    return np.isfinite(_rows(a)).all(axis=1)


def coverage(outs: Dict[str, np.ndarray], how: str) -> np.ndarray:
    """[B, d] float64: sum |logits| (d = 1), the logits, or a layer's activations, non-finite
    entries mapped to large finite ones (so an input whose activations overflow is new)."""
    if how == "sumabs":
        c = np.abs(_rows(outs["logits"])).sum(axis=1, keepdims=True)
    elif how == "logits":
        c = _rows(outs["logits"])
    else:
        c = _rows(outs[how.split(":", 1)[1]])
    return np.nan_to_num(c.astype(np.float64), nan=0.0, posinf=1e30, neginf=-1e30)


def directions(seeds: List[int], shape: Tuple[int, ...]) -> np.ndarray:
    """Each example's direction u from its own seed (so one example replays alone)."""
    return np.stack([direction(int(s), "u", 0, shape, "float64") for s in seeds])


def _project(u: np.ndarray, g: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(<u, g>, sum |u||g|) per example, in float64."""
    ug = _rows(u) * _rows(g.astype(np.float64))
    with np.errstate(invalid="ignore"):
        return ug.sum(axis=1), np.abs(ug).sum(axis=1)


def batch(ops: Any, m: Any, request: Dict[str, Any]) -> Dict[str, Any]:
    x, y = np.asarray(request["x"], dtype=np.float32), np.asarray(request["y"], dtype=np.int64)
    objectives = request["objectives"]
    outs, gx, gp = ops.gradients(m, x, y, "float32")
    loss = outs["loss"].astype(np.float64)
    hits: Dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore"):
        logit_max = np.abs(_rows(outs["logits"])).max(axis=1)
    detail: Dict[str, np.ndarray] = {"loss": loss, "logit_max": logit_max}
    finite = np.isfinite(loss)
    grad_finite = _finite(gx) & _params_finite(ops, m, x, y, gp)
    if "nonfinite" in objectives:
        hits["nonfinite"] = ~finite | ~grad_finite
    if "grad-nonfinite" in objectives:
        hits["grad-nonfinite"] = finite & ~grad_finite
    detail["grad_finite"] = grad_finite
    needs_u = [o for o in objectives if o in ("rev-fwd-fd", "compiled") or o in LOW_PRECISION]
    if needs_u or request.get("project"):
        u = directions(request["seeds"], x.shape[1:])
        rev, scale = _project(u, gx)
        detail.update(rev=rev, scale=scale)
        if request.get("project"):  # the batch's parameter gradient along w, for comparing libraries
            with np.errstate(invalid="ignore", over="ignore"):
                detail["params"] = np.array(_project_params(param_directions(int(request["seeds"][0]), gp), gp))
        ok = finite & grad_finite
        with np.errstate(invalid="ignore", over="ignore"):
            if "rev-fwd-fd" in objectives or "compiled" in objectives:  # Note [float64 judge]
                _, gx64, gp64 = ops.gradients(m, x.astype(np.float64), y, "float64")
                rev64, scale64 = _project(u, gx64)
                detail.update(rev64=rev64)
            if "rev-fwd-fd" in objectives:
                params = _params_rev_fwd_fd(ops, m, x.astype(np.float64), y, request["seeds"], gp64, detail)
                hits["rev-fwd-fd"] = ok & (_rev_fwd_fd(ops, m, x, y, u, rev64, scale64, detail) | params)
            if "compiled" in objectives:
                _, gxc = ops.compiled_gradients(m, x, y, "float32")
                _, gxc64 = ops.compiled_gradients(m, x.astype(np.float64), y, "float64")
                revc, _ = _project(u, gxc64)
                detail["compiled"] = revc
                broke = ~_finite(gxc) & _finite(gx)
                hits["compiled"] = ok & (broke | ~_finite(gxc64) | (np.abs(revc - rev64) > RTOL64 * scale64))
            for name, dtype in LOW_PRECISION.items():
                if name in objectives:
                    hits[name] = _low_precision(ops, m, x, y, u, dtype, outs, ok, detail, name)
    return {"coverage": coverage(outs, request["coverage"]), "hits": hits, "detail": detail}


def param_directions(seed: int, gp: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """A direction w per parameter, numbered by parameter name (libraries order dicts differently)."""
    return {k: direction(seed, "w", i, gp[k].shape, "float64") for i, k in enumerate(sorted(gp))}


def _project_params(ws: Dict[str, np.ndarray], gp: Dict[str, np.ndarray]) -> Tuple[float, float]:
    """(<w, g>, sum |w||g|) over all parameters."""
    terms = [ws[k] * np.asarray(gp[k], dtype=np.float64) for k in ws]
    return sum(float(t.sum()) for t in terms), sum(float(np.abs(t).sum()) for t in terms)


def _params_rev_fwd_fd(ops: Any, m: Any, x64: np.ndarray, y: np.ndarray, seeds: List[int],
                       gp64: Dict[str, np.ndarray], detail: Dict[str, np.ndarray]) -> np.ndarray:
    """<w, dloss/dparams> in float64: reverse mode (of the batch's summed loss) vs forward mode
    and central differences (per example, summed).  A batch that disagrees is checked example
    by example, each with its own direction, so a finding names its input."""
    n = len(x64)
    out = {k: np.full(n, np.nan) for k in ("p_rev", "p_fwd", "p_fd")}
    ws = param_directions(int(seeds[0]), gp64)
    rev, scale = _project_params(ws, gp64)
    fwd = ops.jvp_params(m, x64, y, ws, "float64")

    def fd(h: float) -> np.ndarray:
        plus = ops.forward(m, x64, y, "float64", {k: h * w for k, w in ws.items()})["loss"]
        minus = ops.forward(m, x64, y, "float64", {k: -h * w for k, w in ws.items()})["loss"]
        return (plus - minus) / (2 * h)
    fd1, fd2 = fd(FD_STEP), fd(FD_STEP / 4)
    usable = bool(np.all(np.abs(fd1 - fd2) <= FD_AGREE * np.maximum(scale, np.abs(fd2))))
    wrong = (not np.isfinite(fwd.sum()) or abs(rev - fwd.sum()) > RTOL64 * scale
             or (usable and abs(rev - fd2.sum()) > FD_RTOL * max(scale, abs(fd2.sum()))))
    if n == 1:
        out.update(p_rev=np.array([rev]), p_fwd=fwd, p_fd=fd2)
        detail.update(out)
        return np.array([wrong])
    hits = np.zeros(n, dtype=bool)
    if wrong:
        for i in range(n):
            one: Dict[str, np.ndarray] = {}
            _, _, gpi = ops.gradients(m, x64[i:i + 1], y[i:i + 1], "float64")
            hits[i] = _params_rev_fwd_fd(ops, m, x64[i:i + 1], y[i:i + 1], [seeds[i]], gpi, one)[0]
            for k in out:
                out[k][i] = one[k][0]
    detail.update(out)
    return hits


def _params_finite(ops: Any, m: Any, x: np.ndarray, y: np.ndarray, gp: Dict[str, np.ndarray]) -> np.ndarray:
    """Per example: its parameter gradient is finite.  The batch's summed gradient answers for
    all at once; only where it is not are the examples' own gradients taken one by one."""
    if all(np.isfinite(g).all() for g in gp.values()):
        return np.ones(len(x), dtype=bool)
    return np.array([all(np.isfinite(g).all() for g in ops.gradients(m, x[i:i + 1], y[i:i + 1], "float32")[2].values())
                     for i in range(len(x))])


def _rev_fwd_fd(ops: Any, m: Any, x: np.ndarray, y: np.ndarray, u: np.ndarray, rev: np.ndarray,
                scale: np.ndarray, detail: Dict[str, np.ndarray]) -> np.ndarray:
    """Reverse vs forward mode in float64, and both vs float64 central differences where the
    steps h and h/4 agree (a ReLU kink between them leaves no reference)."""
    x64 = x.astype(np.float64)
    fwd = ops.jvp(m, x64, y, u, "float64").astype(np.float64)

    def fd(h: float) -> np.ndarray:
        plus = ops.forward(m, x64 + h * u, y, "float64")["loss"]
        minus = ops.forward(m, x64 - h * u, y, "float64")["loss"]
        return (plus - minus) / (2 * h)
    fd1, fd2 = fd(FD_STEP), fd(FD_STEP / 4)
    usable = np.abs(fd1 - fd2) <= FD_AGREE * np.maximum(scale, np.abs(fd2))
    detail.update(fwd=fwd, fd=fd2, fd_usable=usable)
    modes = ~np.isfinite(fwd) | (np.abs(rev - fwd) > RTOL64 * scale)
    return modes | (usable & (np.abs(rev - fd2) > FD_RTOL * np.maximum(scale, np.abs(fd2))))


# Note [float64 judge]
# A float32 gradient of softmax cross-entropy at a confident input is p - onehot after
# cancellation (1 - p ~ 1e-7 against float32's 6e-8 resolution), so float32 reverse mode,
# forward mode and a compiled kernel (which fuses softmax differently) may each be percents off
# the truth with no bug anywhere.  So derivatives are judged in float64, where a wrong rule or
# kernel still shows and rounding does not: reverse vs forward vs finite differences, and the
# compiled gradient vs the eager one; in float32 only a compiled gradient that is no longer
# finite where the eager one is counts.
RTOL64 = 1e-7  # reverse vs forward mode, compiled vs eager, float64 (oracle/tolerance.py's float64 row)
FD_RTOL = 1e-5  # either vs float64 central differences at h = 2.5e-5 (truncation, not rounding)


def _low_precision(ops: Any, m: Any, x: np.ndarray, y: np.ndarray, u: np.ndarray, dtype: str,
                   outs: Dict[str, np.ndarray], ok: np.ndarray, detail: Dict[str, np.ndarray],
                   name: str) -> np.ndarray:
    """The model in `dtype` against float32: another predicted class, or a non-finite input
    gradient where the loss in `dtype` and float32's gradient are finite (Note [low precision])."""
    low, glow, _ = ops.gradients(m, x, y, dtype)
    pred32, pred = np.argmax(_rows(outs["logits"]), axis=1), np.argmax(_rows(low["logits"]), axis=1)
    rlow, _ = _project(u, glow)
    detail.update({f"{name}_pred": pred, "pred": pred32, f"{name}_rev": rlow, f"{name}_loss": low["loss"]})
    return (pred != pred32) | (ok & np.isfinite(low["loss"]) & ~np.isfinite(rlow))


# Note [low precision]
# A float16 gradient's value is not compared with float32's: at a confidently classified input
# softmax cross-entropy's gradient p - onehot cancels to far below float16's resolution
# (1 - p ~ 1e-6 against a unit roundoff of 5e-4), so every seed input would be reported.  What
# the dtype cannot excuse is a changed prediction, or a gradient that is no longer finite while
# the loss still is.
