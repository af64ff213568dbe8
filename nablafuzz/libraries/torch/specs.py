"""Spec source for PyTorch: API specs derived from OpInfo (runs inside the torch worker).

`torch.testing._internal.common_methods_invocations.op_db` declares, per op, which AD modes
it supports and gives real, valid sample invocations.  Each autograd-capable OpInfo becomes
the spec of its public function (and of its Tensor method): elementwise ufuncs get free
shapes with broadcasting and their value domain; everything else gets up to three sample
structures (`args` + `overloads`) with the samples' literal values as seeds that the
generator then mutates.  Every kept sample is probed once (call + VJP) so only invocations
that run and are differentiable become specs; what is dropped is returned with the reason
and written at the end of the spec file.  Samples with an empty tensor are used only, grown to
non-empty sizes, when no other sample probes (Note [grown samples]).  Sample values are drawn
from torch's generator seeded per op, so a derivation is reproducible.
"""
from __future__ import annotations

import fnmatch
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ...core.naming import SELECTION
from ...core.structures import doc_structures, signature_params

MAX_ELEMENTS = 128
MAX_OVERLOADS = 3
GROWN_SIZES = (3, 2, 4)  # what the zero-sized dims of an empty sample become, tried in turn
GROWN_CAPS = (None, 4, 3, 2)  # the other dims cut to this when the grown sample is too large
FLOATS = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16"}
RANDOM = re.compile(r"dropout|rrelu|bernoulli|normal|multinomial|gumbel|rand|uniform|poisson|exponential|cauchy"
                    r"|geometric|log_normal|fractional_max_pool")  # fractional pooling draws its regions at random
DOMAINS = {(0, None): "positive", (-1, 1): "symmetric_unit", (0, 1): "open_unit_interval",
           (-1, None): "above_minus_one", (1, None): "positive"}


class Unusable(Exception):
    """A sample this spec format cannot express (the reason is recorded)."""


def _public(name: str) -> Optional[Tuple[str, Any]]:
    obj: Any = torch
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return (f"torch.{name}", obj) if callable(obj) else None


def _capabilities(op: Any) -> Tuple[List[str], List[str]]:
    flags = [("rev", op.supports_autograd), ("fwd", op.supports_forward_ad),
             ("rev.rev", op.supports_gradgrad), ("fwd.rev", op.supports_fwgrad_bwgrad)]
    return [s for s, ok in flags if ok], [s for s, ok in flags if not ok]


def _size(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (list, tuple)):
        return sum(_size(y) for y in x)
    return 0


def _scalar(value: Any) -> Any:
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unusable("non-finite scalar argument")
        return value
    if isinstance(value, (tuple, list, torch.Size)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    raise Unusable(f"argument of type {type(value).__name__}")


def _tensor_arg(name: str, t: torch.Tensor) -> Dict[str, Any]:
    if t.is_complex() or t.is_sparse or t.layout != torch.strided:
        raise Unusable("complex or sparse tensor argument")
    arg: Dict[str, Any] = {"name": name, "dims": [str(d) for d in t.shape]}
    values = t.detach().reshape(-1).tolist()
    if t.is_floating_point():
        arg["differentiable"] = bool(t.requires_grad)
        if not all(math.isfinite(v) for v in values):
            raise Unusable("non-finite sample values")
        arg["values"] = [float(v) for v in values]
    else:
        kind = "bool" if t.dtype == torch.bool else "int64"
        arg.update(dtypes=[kind], differentiable=False, values=[float(v) for v in values])
    return arg


def _arg(name: str, value: Any, keyword: bool) -> Dict[str, Any]:
    if isinstance(value, torch.Tensor):
        arg = _tensor_arg(name, value)
    elif isinstance(value, torch.dtype):
        if value not in FLOATS:
            raise Unusable(f"dtype argument {value}")
        arg = {"name": name, "kind": "dtype", "choices": [FLOATS[value]]}
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        arg = _list_arg(name, value)
    else:
        arg = {"name": name, "kind": "choice", "choices": [_scalar(value)]}
    if keyword:
        arg["keyword"] = True
    return arg


def _list_arg(name: str, ts: Any) -> Dict[str, Any]:
    shapes = {tuple(t.shape) for t in ts}
    if len(shapes) != 1 or not all(t.is_floating_point() for t in ts):
        raise Unusable("tensor list of mixed shapes or dtypes")
    first = _tensor_arg(name, ts[0])
    values = [float(v) for t in ts for v in t.detach().reshape(-1).tolist()]
    return dict(first, kind="tensor_list", length=[len(ts), len(ts)], values=values)


def _sample_args(sample: Any) -> List[Dict[str, Any]]:
    args = [_arg("input", sample.input, False)]
    args += [_arg(f"arg{i + 1}", a, False) for i, a in enumerate(sample.args)]
    args += [_arg(k, v, True) for k, v in sample.kwargs.items()]
    return args


def _probe(fn: Any, sample: Any) -> Dict[str, Any]:
    """Run the sample twice and once with a VJP: only invocations that run, differentiate and
    give float or complex64/128 outputs are kept.  Returns what the spec learns from it:
    which outputs are differentiable, and whether the op is random."""
    inputs = [sample.input] + list(sample.args)
    out = fn(*inputs, **sample.kwargs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if any(not isinstance(o, torch.Tensor) for o in outs):
        raise Unusable("non-tensor output")
    if any(o.dtype in (torch.bfloat16, torch.complex32) for o in outs):
        raise Unusable(f"output dtype {[str(o.dtype) for o in outs]} has no numpy equivalent")
    live = [i for i, o in enumerate(outs) if o.requires_grad]
    leaves = [t for t in _leaves(inputs + list(sample.kwargs.values())) if t.requires_grad]
    if not live or not leaves:
        raise Unusable("no differentiable output")
    if not any(outs[i].numel() for i in live) or not any(t.numel() for t in leaves):
        raise Unusable("its derivative is empty (no element in the differentiable inputs or outputs)")
    torch.autograd.grad([_sum(outs[i]) for i in live], leaves, allow_unused=True)
    again = fn(*inputs, **sample.kwargs)
    again = list(again) if isinstance(again, (tuple, list)) else [again]
    random = any(not torch.equal(a.detach(), b.detach()) for a, b in zip(outs, again) if a.numel())
    return {"differentiable_outputs": live if len(live) < len(outs) else None, "random": random}


def _sum(t: torch.Tensor) -> torch.Tensor:
    return t.real.sum() + t.imag.sum() if t.is_complex() else t.sum()


def _leaves(xs: List[Any]) -> Iterator[torch.Tensor]:
    for x in xs:
        if isinstance(x, torch.Tensor):
            yield x
        elif isinstance(x, (list, tuple)):
            yield from _leaves(list(x))


def _seed(op: Any) -> None:
    """Seed torch's generator for this op's samples: the derivation is reproducible."""
    torch.manual_seed(zlib.crc32(f"{op.name}.{op.variant_test_name}".encode()))


def _sample_size(s: Any) -> int:
    return _size([s.input, list(s.args), list(s.kwargs.values())])


def _empty(s: Any) -> bool:
    """Some tensor of the sample has no element: a test of shape handling, not of derivatives."""
    return any(t.numel() == 0 for t in _leaves([s.input, list(s.args), list(s.kwargs.values())]))


# Note [grown samples]
# OpInfo lists its smallest samples first, and those are often empty ([5, 0, 10], [0, 0]):
# kept, every trial of the spec (or of that overload) compares an empty derivative.  So samples
# whose tensors all have elements come first, and an empty sample is never kept as it is.  When
# no non-empty sample probes, the empty ones are grown: every zero-sized dim becomes the same
# small size (GROWN_SIZES, one size per sample so square and matching dims stay so), float
# tensors get seeded normal values, index tensors zeros and masks True; if that makes the
# sample larger than MAX_ELEMENTS, every other dim above a cap is cut to it (GROWN_CAPS, the
# same for every tensor, so equal dims stay equal).  The grown sample is kept only if it probes
# (call + VJP).  Its float values are not kept as seeds (they are not OpInfo's, only something
# the probe took), its index and mask values are (they stay valid).
@dataclass
class _Grown:
    """An empty sample with its zero-sized dims grown (the SampleInput fields the probe reads)."""

    input: Any
    args: Tuple[Any, ...] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)


def _grown(sample: Any) -> Iterator[_Grown]:
    """The grown versions of an empty sample to probe in turn: each size of GROWN_SIZES, with
    the mildest cut of the other dims that brings some of them within MAX_ELEMENTS."""
    for cap in GROWN_CAPS:
        fits = [g for g in (_grow(sample, k, cap) for k in GROWN_SIZES) if _sample_size(g) <= MAX_ELEMENTS]
        if fits:
            yield from fits
            return


def _grow(sample: Any, k: int, cap: Optional[int]) -> _Grown:
    gen = torch.Generator().manual_seed(k)

    def grow(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.layout == torch.strided:  # sparse ones: the probe refuses them
            shape = [min(d, cap) if cap and d else d or k for d in x.shape]
            if x.numel():
                cut = x.detach()[tuple(slice(0, d) for d in shape)]
                return x if list(cut.shape) == list(x.shape) else cut.clone().requires_grad_(x.requires_grad)
            if x.is_floating_point():
                new = torch.randn(shape, dtype=x.dtype, generator=gen)
            else:
                new = (torch.ones if x.dtype == torch.bool else torch.zeros)(shape, dtype=x.dtype)
            return new.requires_grad_(x.requires_grad)
        if isinstance(x, (list, tuple)) and any(isinstance(y, torch.Tensor) for y in x):
            return type(x)(grow(y) for y in x)
        return x
    return _Grown(grow(sample.input), tuple(grow(a) for a in sample.args),
                  {key: grow(v) for key, v in sample.kwargs.items()})


def _without_seeds(args: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A grown sample's arguments without float values (index and mask values stay)."""
    return [{k: v for k, v in a.items() if k != "values" or "dtypes" in a} for a in args]


def _samples(op: Any, fn: Any) -> Tuple[List[List[Dict[str, Any]]], List[str], Dict[str, Any]]:
    """Up to MAX_OVERLOADS distinct sample structures that probe well, the reasons others
    failed, and what the first probe learnt (differentiable outputs, randomness).  Non-empty
    samples only; grown empty ones when none of those probes (Note [grown samples])."""
    _seed(op)
    try:
        samples = sorted(op.sample_inputs("cpu", torch.float64, requires_grad=True), key=_sample_size)
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        return [], [f"sample_inputs failed: {exc}"], {}
    kept = _Kept()
    for s in samples:
        if len(kept.structures) >= MAX_OVERLOADS or _sample_size(s) > MAX_ELEMENTS:
            break
        if not _empty(s):
            kept.add(fn, s, "")
    empties = [s for s in samples if _empty(s)] if not kept.structures else []
    for s in empties[:4 * MAX_OVERLOADS]:
        if len(kept.structures) >= MAX_OVERLOADS:
            break
        for grown in _grown(s):
            if kept.add(fn, grown, "grown from an empty sample: "):
                break
    return kept.structures, kept.reasons, kept.learnt


@dataclass
class _Kept:
    """The sample structures kept so far for one op, and why others were not."""

    structures: List[List[Dict[str, Any]]] = field(default_factory=list)
    reasons: List[str] = field(default_factory=list)
    seen: set = field(default_factory=set)
    learnt: Dict[str, Any] = field(default_factory=dict)

    def add(self, fn: Any, s: Any, grown: str) -> bool:
        """Probe `s` and keep its structure if it works and is new; whether it probed well."""
        try:
            args = _sample_args(s)
            key = repr([(a["name"], a.get("dims"), a.get("choices")) for a in args])
            if key in self.seen:
                return True
            found = _probe(fn, s)
            if self.learnt and found["differentiable_outputs"] != self.learnt["differentiable_outputs"]:
                return False  # one spec has one set of differentiable outputs
        except Exception as exc:  # noqa: BLE001 - the sample is dropped with its reason
            self.reasons.append(f"{grown}{type(exc).__name__}: {str(exc)[:100]}")
            return False
        self.learnt = self.learnt or found
        self.seen.add(key)
        self.structures.append(_without_seeds(args) if grown else args)
        return True


def _probe_any(op: Any, fn: Any) -> Tuple[Dict[str, Any], List[str]]:
    """What the first sample that probes well (of any size) teaches about the op."""
    reasons = []
    _seed(op)
    try:
        samples = sorted(op.sample_inputs("cpu", torch.float64, requires_grad=True), key=_empty)  # non-empty first
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        return {}, [f"sample_inputs failed: {exc}"]
    for s in samples[:5]:
        try:
            return _probe(fn, s), []
        except Exception as exc:  # noqa: BLE001 - the next sample may do
            reasons.append(f"{type(exc).__name__}: {str(exc)[:100]}")
    return {}, reasons


def _ufunc_args(op: Any) -> Optional[List[Dict[str, Any]]]:
    kind = type(op).__name__
    domain = DOMAINS.get(tuple(getattr(op, "domain", (None, None)) or (None, None)), "real")
    if kind == "UnaryUfuncInfo":
        return [{"name": "input", "domain": domain}]
    if kind == "BinaryUfuncInfo" and getattr(op, "supports_rhs_python_scalar", True) is not None:
        return [{"name": "input"}, {"name": "other", "broadcast_with": "input"}]
    return None


# OpInfo ops whose tensor input has a structure (the n-th tensor argument) that their docstrings
# do not state (Note [structures from docstrings]; the docstrings give the others: eigh,
# cholesky_solve, ...): the deprecated Cholesky spellings, and triangular_solve's default side
# (its summary names both; upper=True).  Trials keep it and are judged along directions that
# keep it (Note [structured directions]).
OPINFO_STRUCTURES = {"cholesky": (0, "spd"), "linalg.cholesky_ex": (0, "spd"),
                     "triangular_solve": (1, "upper_triangular")}


def _structured(op: Any, args: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The sample's arguments with the structure the op's inputs need: the hand-kept table
    first, else what the public function's docstring states (by position in its signature)."""
    if op.name in OPINFO_STRUCTURES:
        nth, structure = OPINFO_STRUCTURES[op.name]
        tensors = [i for i, a in enumerate(args) if a.get("kind", "tensor") == "tensor"]
        return [dict(a, structure=structure) if tensors[nth:nth + 1] == [i] else a for i, a in enumerate(args)]
    public = _public(op.name)
    doc = (getattr(public[1], "__doc__", None) or "") if public else ""
    params = list(signature_params(doc))
    stated = {params.index(p): st for p, st in doc_structures(doc, params).items()}
    return [dict(a, structure=stated[i]) if i in stated and a.get("kind", "tensor") == "tensor" else a
            for i, a in enumerate(args)]


def _spec(name: str, op: Any, structures: List[List[Dict[str, Any]]], learnt: Dict[str, Any]) -> Dict[str, Any]:
    structures = [_structured(op, args) for args in structures]
    caps, unsupported = _capabilities(op)
    backward = getattr(op, "backward_dtypes", None) or op.dtypes
    dtypes = [FLOATS[d] for d in (torch.float64, torch.float32, torch.float16) if d in op.dtypes and d in backward]
    spec: Dict[str, Any] = {"name": name, "args": structures[0], "dtypes": dtypes or ["float64"],
                            "capabilities": caps, "unsupported": unsupported,
                            "notes": f"OpInfo {op.name}{'.' + op.variant_test_name if op.variant_test_name else ''}"}
    if structures[1:]:
        spec["overloads"] = structures[1:]
    if SELECTION.search(op.name):
        spec["kinks"] = "selection"
    if RANDOM.search(op.name) or learnt.get("random"):
        spec["random"] = True
    if learnt.get("differentiable_outputs") is not None:
        spec["differentiable_outputs"] = learnt["differentiable_outputs"]
    return spec


def _variants(op: Any) -> Iterator[Tuple[str, Any]]:
    public = _public(op.name)
    if public is not None:
        yield public
    method = getattr(op, "method_variant", None)
    if method is not None and hasattr(torch.Tensor, getattr(method, "__name__", "")):
        yield f"torch.Tensor.{method.__name__}", getattr(torch.Tensor, method.__name__)


def derive(only: Sequence[str] = ()) -> Dict[str, Any]:
    """{"apis": specs, "dropped": ["<OpInfo>: <why>", ...]} for every autograd OpInfo (and
    ModuleInfo); `only` (globs of API names, e.g. "torch.flip") derives just those."""
    from torch.testing._internal.common_methods_invocations import op_db
    warnings.filterwarnings("ignore")
    specs: Dict[str, Dict[str, Any]] = {}
    dropped: List[str] = []
    for op in op_db:
        if not op.supports_autograd:
            continue
        variants = [(n, f) for n, f in _variants(op) if not only or any(fnmatch.fnmatchcase(n, g) for g in only)]
        if only and not variants:
            continue
        if not variants:
            dropped.append(f"{op.name}: no public torch.{op.name} and no Tensor method")
        for name, fn in variants:
            why = _merge(specs, name, op, fn)
            if why:
                dropped.append(f"{name} ({op.name} {op.variant_test_name}): {why}")
    modules = derive_modules(only)
    return {"apis": [specs[k] for k in sorted(specs)] + modules["apis"], "dropped": dropped + modules["dropped"]}


def _merge(specs: Dict[str, Dict[str, Any]], name: str, op: Any, fn: Any) -> str:
    """Add the op's structures to the spec `name`; returns why nothing was added, if so."""
    ufunc = _ufunc_args(op)
    if ufunc is not None and name not in specs:
        learnt, reasons = _probe_any(op, fn)
        structures = [ufunc] if learnt else []  # free shapes and the op's domain
    else:
        structures, reasons, learnt = _samples(op, fn)
    if not structures:
        return reasons[0] if reasons else f"no sample with at most {MAX_ELEMENTS} elements"
    if name not in specs:
        specs[name] = _spec(name, op, structures, learnt)
        return ""
    if learnt.get("differentiable_outputs") != specs[name].get("differentiable_outputs"):
        return "its outputs' differentiability differs from the variant already derived"
    have = specs[name]
    room = MAX_OVERLOADS - 1 - len(have.get("overloads", []))
    if room > 0:
        have.setdefault("overloads", []).extend(structures[:room])
    return ""


# ---- torch.nn layers, from ModuleInfo ------------------------------------------------------------

MAX_MODULE_ELEMENTS = 1100


def derive_modules(only: Sequence[str] = ()) -> Dict[str, Any]:
    """Specs of torch.nn layers with their parameters as differentiable inputs (`param:<name>`),
    from `torch.testing._internal.common_modules.module_db`: one probed sample per layer."""
    from torch.testing._internal.common_modules import module_db
    apis, dropped = [], []
    for info in module_db:
        name = f"torch.nn.{info.module_cls.__name__}"
        if only and not any(fnmatch.fnmatchcase(name, g) for g in only):
            continue
        try:
            apis.append(_module_spec(name, info))
        except Exception as exc:  # noqa: BLE001 - recorded with its reason
            dropped.append(f"{name}: {type(exc).__name__}: {str(exc)[:100]}")
    return {"apis": apis, "dropped": dropped}


def _module_spec(name: str, info: Any) -> Dict[str, Any]:
    torch.manual_seed(zlib.crc32(name.encode()))  # samples and initial parameters: reproducible
    samples = info.module_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=True, training=False)
    errors = []
    for sample in samples[:6]:
        try:
            return _module_sample_spec(name, info, sample)
        except Exception as exc:  # noqa: BLE001 - the next sample may do
            errors.append(f"{type(exc).__name__}: {str(exc)[:80]}")
    raise Unusable(errors[0] if errors else "no sample")


def _module_sample_spec(name: str, info: Any, sample: Any) -> Dict[str, Any]:
    init = [_scalar(a) for a in sample.constructor_input.args]
    init_kwargs = {k: _scalar(v) for k, v in sample.constructor_input.kwargs.items()}
    module = info.module_cls(*sample.constructor_input.args, **sample.constructor_input.kwargs).double().eval()
    params = dict(module.named_parameters())
    forward = [_arg("input" if i == 0 else f"arg{i}", a, False) for i, a in enumerate(sample.forward_input.args)]
    forward += [_arg(k, v, True) for k, v in sample.forward_input.kwargs.items()]
    size = _size(list(params.values())) + _size(list(sample.forward_input.args))
    if size > MAX_MODULE_ELEMENTS or not params:
        raise Unusable(f"{size} elements" if params else "no parameters")
    args = forward + [dict(_tensor_arg(f"param:{k}", p.detach().requires_grad_()), keyword=True)
                      for k, p in params.items()]
    out = torch.func.functional_call(module, {k: p.detach().requires_grad_() for k, p in params.items()},
                                     tuple(sample.forward_input.args), dict(sample.forward_input.kwargs))
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    live = [i for i, o in enumerate(outs) if isinstance(o, torch.Tensor) and o.requires_grad]
    if not live:
        raise Unusable("no differentiable output")
    spec: Dict[str, Any] = {"name": name, "module": True, "init": init, "init_kwargs": init_kwargs, "args": args,
                            "dtypes": ["float64", "float32"], "capabilities": ["rev"] +
                            (["rev.rev"] if getattr(info, "supports_gradgrad", True) else []),
                            "notes": f"ModuleInfo {info.name}: parameters are the keyword inputs param:<name>"}
    if len(live) < len(outs):
        spec["differentiable_outputs"] = live
    return spec
