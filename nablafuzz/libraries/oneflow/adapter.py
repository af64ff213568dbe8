"""OneFlow adapter (runs inside the oneflow worker only: Python 3.10, numpy < 2, OneFlow 0.9.0).

Reverse mode is `oneflow.autograd.grad` (with `create_graph=True` when it is differentiated
again).  OneFlow 0.9.0 has no forward mode, so a JVP is emulated exactly by two reverse passes
(Note [double-VJP]) and every scenario that uses it is labelled emulated: a disagreement between
an emulated mode and reverse mode counts only when finite differences side with one of them
(`compare`).  CPU tensors only.  Eager execution is asynchronous, so every scenario ends in
`.numpy()` (`to_numpy`): a kernel error surfaces inside the scenario that caused it.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, List, Sequence

os.environ.setdefault("GLOG_minloglevel", "3")  # OneFlow's driver warnings

import numpy as np  # noqa: E402
import oneflow as flow  # noqa: E402

from ..base import ComposableAdapter, attribute_path, resolve_library_api  # noqa: E402


def _tensors(out: Any) -> List[Any]:
    """Outputs as a flat list of tensors (tuples, lists and Python scalars included)."""
    if isinstance(out, flow.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, (int, float, bool)):
        return [flow.tensor(out)]
    raise TypeError(f"unsupported output type {type(out).__name__}")


def _grad(outs: List[Any], xs: List[Any], cts: List[Any], create_graph: bool) -> List[Any]:
    """<cts, d outs / d xs> for every x, zeros where an output does not depend on it.

    OneFlow's `autograd.grad` has no `allow_unused` and refuses outputs without a graph, so
    outputs that do not require grad are left out.  Where the outputs do not reach every input
    in the graph, a zero-weighted term of every input (a gradient of exactly 0, never a value in
    the result) keeps each input in it; only then, for it doubles the cost of a reverse pass
    (1.07 against 0.46 ms for sin).  (Asking first and catching OneFlow's refusal is no way:
    the refused call has already accumulated part of the gradients, and the next one doubles them.)"""
    live = [(o, c.to(o.dtype)) for o, c in zip(outs, cts) if isinstance(o, flow.Tensor) and o.requires_grad]
    outputs, weights = [o for o, _ in live], [c for _, c in live]
    if not (live and _reaches(outputs, xs)):
        anchor = sum((x * 0).sum() for x in xs)
        outputs, weights = outputs + [anchor], weights + [flow.zeros_like(anchor)]
    grads = flow.autograd.grad(outputs, xs, weights, retain_graph=True, create_graph=create_graph)
    return [flow.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]


def _reaches(outs: List[Any], xs: List[Any]) -> bool:
    """Whether the outputs' backward graph reaches every input (a leaf's node is its
    accumulate_grad)."""
    seen, todo = set(), [o.grad_fn for o in outs if o.grad_fn is not None]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(n for n in node.next_functions if n is not None)
    return all(x.grad_fn in seen for x in xs)


class OneFlowAdapter(ComposableAdapter):
    library = "oneflow"
    emulated_fwd = True
    nested = False  # inside a second-order scenario: derivatives are differentiated again

    def versions(self) -> Dict[str, str]:
        return {"oneflow": flow.__version__, "numpy": np.__version__}

    def resolve(self, api: str) -> Any:
        return resolve_library_api(api, "oneflow", "oneflow", lambda parts: attribute_path(flow, parts[1:]))

    def permute(self, t: Any, perm: Sequence[int]) -> Any:
        return t.permute(*perm)

    def from_numpy(self, a: np.ndarray, dtype: str, grad: bool = False) -> Any:
        t = flow.tensor(np.array(a, dtype=dtype, copy=True))
        return t.requires_grad_() if grad and t.is_floating_point() else t

    def to_numpy(self, t: Any) -> np.ndarray:
        return t.detach().numpy() if isinstance(t, flow.Tensor) else np.asarray(t)

    def dtype(self, name: str) -> Any:
        return getattr(flow, name)

    def seed(self, seed: int) -> None:
        flow.manual_seed(seed & 0xFFFF_FFFF_FFFF)

    def triangle(self, t: Any, lower: bool) -> Any:
        return flow.tril(t) if lower else flow.triu(t)

    def reset(self) -> None:
        flow.set_grad_enabled(True)

    def flatten(self, out: Any) -> List[Any]:
        return _tensors(out)

    def direct(self, call, xs):
        with flow.no_grad():
            return super().direct(call, xs)

    def dot(self, a: List[Any], b: List[Any]) -> Any:
        terms = [(x * y.to(x.dtype)).sum() for x, y in zip(a, b)]
        return flow.stack(terms).sum() if terms else flow.zeros(())

    def vjp(self, f, xs, cts, create_graph):
        outs = f(xs)
        grads = _grad(outs, xs, cts, create_graph)
        if create_graph and self.nested and grads and not any(g.requires_grad for g in grads) \
                and _moves(f, xs, cts, grads):
            # J^T v depends on x, yet OneFlow's backward recorded no graph (create_graph ignored,
            # as for mv): differentiating it again would read 0 through the anchor, silently
            raise NotImplementedError("second order cannot be taken: this op's backward records no graph "
                                      "under create_graph=True")
        return outs, grads

    def second_order(self, outer, inner, call, xs, us, vs, ws):
        self.nested = True
        try:
            return super().second_order(outer, inner, call, xs, us, vs, ws)
        finally:
            self.nested = False

    def at_points(self, jobs, call, us, vs, ws, zs):
        """Every point queued on OneFlow's asynchronous virtual machine before the first result is
        read: one synchronisation for all the finite differences of a trial, not one per evaluation."""
        queued = []
        for scenario, points in jobs:
            p = self.plan(scenario, call, points[0], list(us), list(vs), list(ws), list(zs))
            direct = scenario == "direct"
            self.nested = "." in scenario
            try:
                with flow.no_grad() if direct else contextlib.nullcontext():
                    queued.append((p, [p.kernel(call.fn, self._native(x, x, grad=not direct), *p.args) for x in points]))
            finally:
                self.nested = False
        return [[p.done(g) for g in got] for p, got in queued]

    def third_order(self, outer, middle, inner, call, xs, us, vs, ws, zs):
        self.nested = True
        try:
            return super().third_order(outer, middle, inner, call, xs, us, vs, ws, zs)
        finally:
            self.nested = False

    # Note [double-VJP]
    # J u is the derivative of the linear map w -> <w, J^T ...> = J^T w with respect to a dummy
    # cotangent w, taken along u: grad_w <J^T w, u> = J u.  Exact (no finite step), and it
    # nests: the inner graph is kept (create_graph), so the result can be differentiated again.
    def jvp(self, f, xs, tangents):
        outs = f(xs)
        us = [t.to(x.dtype) for t, x in zip(tangents, xs)]
        if len(outs) == 1 and outs[0].ndim == 0 and outs[0].is_floating_point():
            # one scalar output (the inner derivative of a second-order scenario): J u = <grad, u>
            # by one reverse pass.  OneFlow loses the dummy cotangent's dependence when the
            # output is itself a derivative (fwd.rev gave 0 for x * y), so no dummy is used here.
            grads = _grad(outs, xs, [flow.ones_like(outs[0])], create_graph=self.nested)
            return outs, [self.dot(grads, us)]
        floats = [i for i, o in enumerate(outs) if o.is_floating_point()]
        dummies = [flow.zeros_like(outs[i]).requires_grad_() for i in floats]
        grads = _grad([outs[i] for i in floats], xs, dummies, create_graph=True)
        if not any(g.requires_grad for g in grads):
            # J^T w does not depend on w: either J = 0 (ceil, sign, no float output), or OneFlow's
            # backward of this op recorded no graph (create_graph ignored, as for mv) and J u
            # cannot be emulated.  One plain VJP along ones tells which.
            live = [outs[i] for i in floats if outs[i].requires_grad]
            if live and any(bool((g != 0).any()) for g in _grad(live, xs, [flow.ones_like(o) for o in live], False)):
                raise NotImplementedError("forward mode cannot be emulated: this op's backward records no "
                                          "graph under create_graph=True")
            return outs, [flow.zeros_like(o) for o in outs]
        tans = [flow.zeros_like(o) for o in outs]
        if dummies:
            # the second pass builds a graph only when the JVP is differentiated again: recording
            # it needs gradients of the backward ops, which OneFlow lacks for some (scatter_add)
            for i, t in zip(floats, _grad(grads, dummies, us, create_graph=self.nested)):
                tans[i] = t
        return outs, tans



def _moves(f, xs, cts, grads) -> bool:
    """Whether J^T v changes when the inputs move a little (a linear op's does not, so its
    backward needs no graph and its second derivative is rightly 0)."""
    moved = [(x.detach() * 1.001 + 1e-3).requires_grad_() for x in xs]
    again = _grad(f(moved), moved, cts, False)
    return any(bool((a != b).any()) for a, b in zip(again, grads))


def make_adapter() -> OneFlowAdapter:
    return OneFlowAdapter()
