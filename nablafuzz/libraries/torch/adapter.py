"""PyTorch adapter (runs inside the torch worker only).

Reverse mode is `torch.autograd.grad` (with `create_graph=True` when it is differentiated
again), forward mode is `torch.autograd.forward_ad` dual tensors; compositions follow
`ComposableAdapter` (Note [second order by composition]), except JVP of JVP: forward_ad cannot
nest dual levels, so that one uses `torch.func.jvp` twice.  CPU tensors only.

Complex outputs are compared as real pairs (Note [complex outputs]).
"""
from __future__ import annotations

import copy
import os
import types
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from ...core.tensors import dtype_name
from ..base import ComposableAdapter, SecondOrder, attribute_path, point_scale, resolve_library_api


# Note [complex outputs]
# A complex output z is compared as the real pair (Re z, Im z) (torch.view_as_real), so every
# scenario is real analysis of a real function and PyTorch's conjugate-Wirtinger convention
# for complex gradients never enters a comparison.  This is the one place that decides it.
def _real(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and t.is_complex():
        return torch.stack([t.real, t.imag], dim=-1)  # view_as_real needs unit last stride
    return t


def _tensors(out: Any) -> List[Any]:
    """Outputs as a flat list of tensors (named tuples, lists and scalars included)."""
    if isinstance(out, torch.Tensor):
        return [_real(out)]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, (int, float, bool)):
        return [torch.tensor(out)]
    raise TypeError(f"unsupported output type {type(out).__name__}")


# the `kernels` scenario's second worker runs with mkldnn off (its record's kernels_env, libraries/torch/__init__.py)
if os.environ.get("NABLAFUZZ_MKLDNN") == "0":
    torch.backends.mkldnn.enabled = False


class TorchAdapter(ComposableAdapter):
    library = "torch"

    def versions(self) -> Dict[str, str]:
        return {"torch": torch.__version__, "numpy": np.__version__}

    def resolve(self, api: str) -> Any:
        return resolve_library_api(api, "torch", "torch", lambda parts: attribute_path(torch, parts[1:]))

    def permute(self, t: Any, perm: Sequence[int]) -> Any:
        return t.permute(*perm)

    def from_numpy(self, a: np.ndarray, dtype: str, grad: bool = False) -> Any:
        t = torch.from_numpy(np.array(a, dtype=dtype, copy=True))
        return t.requires_grad_() if grad and t.is_floating_point() else t

    def to_numpy(self, t: Any) -> np.ndarray:
        t = _real(t)
        if not isinstance(t, torch.Tensor):
            return np.asarray(t)
        t = t.detach()
        if t._is_zerotensor():  # a structural zero (e.g. sgn's derivative) has no storage
            return np.zeros(tuple(t.shape), dtype=str(t.dtype).replace("torch.", ""))
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.resolve_conj().resolve_neg().numpy()

    def dtype(self, name: str) -> Any:
        return getattr(torch, name)

    def module_call(self, cls: Any, args: Any, kwargs: Any) -> Any:
        """torch.func.functional_call of the layer (eval mode: no running-statistics updates, no
        dropout), in the dtype of its first floating-point input.  One copy per dtype is made
        here, outside any transform: `Module.to` on a module that torch.func.jvp has run
        through functional_call segfaults (torch 2.13)."""
        base = cls(*args, **kwargs).eval()
        copies = {d: copy.deepcopy(base).to(d) for d in (torch.float64, torch.float32, torch.float16)}

        def call(*inputs: Any, **named: Any) -> Any:
            params = {k[len("param:"):]: v for k, v in named.items() if k.startswith("param:")}
            rest = {k: v for k, v in named.items() if not k.startswith("param:")}
            dtype = next((t.dtype for t in list(inputs) + list(params.values())
                          if isinstance(t, torch.Tensor) and t.is_floating_point()), torch.float64)
            return torch.func.functional_call(copies.get(dtype, base), params, inputs, rest)
        return call

    def compiled(self, fn: Any) -> Any:
        """torch.compile, once per API (dynamic shapes, so new shapes do not recompile)."""
        return self.compiled_once(fn, lambda f: torch.compile(f, dynamic=True))

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed & 0xFFFF_FFFF_FFFF)

    def entry_library(self) -> Any:
        return types.SimpleNamespace(jacrev=torch.func.jacrev, jacfwd=torch.func.jacfwd, hessian=torch.func.hessian,
                                     vmap=torch.func.vmap, vjp=torch.func.vjp, stack=torch.stack, sum=torch.sum, graph=None,
                                     to_numpy=self.to_numpy, native=lambda v, o: torch.as_tensor(v).to(o.dtype))

    def triangle(self, t: Any, lower: bool) -> Any:
        return torch.tril(t) if lower else torch.triu(t)

    def reset(self) -> None:
        torch.set_grad_enabled(True)
        torch.autograd.set_detect_anomaly(False)
        torch.set_default_dtype(torch.float32)
        while torch.autograd.forward_ad._current_level >= 0:  # a dual level entered and never left
            torch.autograd.forward_ad.exit_dual_level()

    def flatten(self, out: Any) -> List[Any]:
        return _tensors(out)

    def direct(self, call, xs):
        with torch.no_grad():
            return super().direct(call, xs)

    def dot(self, a: List[Any], b: List[Any]) -> Any:
        terms = [(x * y).sum() for x, y in zip(a, b)]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def vjp(self, f, xs, cts, create_graph):
        outs = f(xs)
        live = [(o, c) for o, c in zip(outs, cts) if isinstance(o, torch.Tensor) and o.requires_grad]
        if not live:
            return outs, [torch.zeros_like(x) for x in xs]
        grads = torch.autograd.grad([o for o, _ in live], xs, [c.to(o.dtype) for o, c in live],
                                    create_graph=create_graph, allow_unused=True)
        return outs, [torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]

    def jvp(self, f, xs, tangents):
        with fwAD.dual_level():
            duals = [fwAD.make_dual(x, t.to(x.dtype)) for x, t in zip(xs, tangents)]
            unpacked = [fwAD.unpack_dual(o) for o in f(duals)]
        return ([u.primal for u in unpacked],
                [torch.zeros_like(u.primal) if u.tangent is None else u.tangent for u in unpacked])

    def second_order(self, outer, inner, call, xs, us, vs, ws):
        if (outer, inner) != ("fwd", "fwd"):
            return super().second_order(outer, inner, call, xs, us, vs, ws)
        f = self._outputs(call)
        nx, nu, nv, nw = (self._native(a, xs) for a in (xs, us, vs, ws))
        nv = [self.from_numpy(v, dtype_name(v.dtype)) for v in vs]

        def q(*d: Any) -> Any:
            return self.dot(nv, list(torch.func.jvp(lambda *e: tuple(f(list(e))), d, tuple(nu))[1]))
        value = float(torch.func.jvp(q, tuple(nx), tuple(nw))[1])
        return SecondOrder(value, point_scale(value))

    def derive_specs(self) -> List[Dict[str, Any]]:
        from .specs import derive
        return derive()


def make_adapter() -> TorchAdapter:
    torch.set_num_threads(1)
    if torch.are_deterministic_algorithms_enabled():  # off by default; setting it imports torch._dynamo (2 s)
        torch.use_deterministic_algorithms(False)
    return TorchAdapter()



