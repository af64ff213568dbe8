"""TensorFlow adapter (runs inside the tensorflow worker only).

Reverse mode is `tf.GradientTape` (inputs watched explicitly), forward mode
`tf.autodiff.ForwardAccumulator`; both nest, so every composition of `ComposableAdapter`
applies (a tape inside a tape for VJP of VJP, an accumulator around a tape for JVP of VJP).
The `jit` scenario differentiates `tf.function(jit_compile=True)` of the API (tensors traced,
Python values part of the trace signature).  Never `tape.jacobian` in eager mode: projections
are enough.  `TF_ENABLE_ONEDNN_OPTS=0` is set by the runtime for reproducible numerics.
"""
from __future__ import annotations

import functools
import inspect
import os
import re
from typing import Any, Callable, Dict, List, Sequence, Set, Tuple

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python import pywrap_tfe  # noqa: E402
from tensorflow.python.framework import kernels, op_def_registry, ops  # noqa: E402
from tensorflow.python.util import tf_decorator  # noqa: E402

from ..base import ComposableAdapter, attribute_path, resolve_library_api  # noqa: E402
from ..entry_points import tensorflow_transforms  # noqa: E402
from ..introspect import catalogue  # noqa: E402

ZERO = tf.UnconnectedGradients.ZERO
_TRACES = [0]  # tf.function traces of staged kernels in this worker (the throughput bench reads it)

# The public Python APIs.  tf.compat.v1 only adds aliases: its names for the same functions.
PY_MODULES = ("math", "nn", "linalg", "signal", "image", "keras.activations", "keras.losses", "experimental.numpy")
# Not APIs to differentiate: graph/runtime utilities, I/O, control flow taking functions, ...
SKIP = re.compile(r"\.(function|py_function|numpy_function|print|Assert|debugging\w*|cond|case|switch_case|while_loop"
                  r"|map_fn|scan|foldl|foldr|vectorized_map|custom_gradient|recompute_grad|stop_gradient|gradients"
                  r"|hessians|control_dependencies|device|name_scope|init_scope|get_logger|get_static_value"
                  r"|executing_eagerly|inside_function|is_tensor|is_symbolic_tensor|make_ndarray|make_tensor_proto"
                  r"|register_\w+|load_\w+|saved_model\w*|serialize\w*|deserialize\w*|get|random_\w+|stateless_\w+"
                  r"|timestamp|no_op|group|tuple|identity_n|ensure_shape|shape|shape_n|size|rank|dtype\w*|as_dtype"
                  r"|dynamic_partition|dynamic_stitch|unique\w*|where|boolean_mask|py_func|experimental_\w+)$")
FLOAT_TYPES = {tf.float16.as_datatype_enum, tf.float32.as_datatype_enum, tf.float64.as_datatype_enum}
ATTR_ANNOTATIONS = {"int": "int", "bool": "bool", "float": "float", "type": "DType"}


# Note [None gradients]
# TensorFlow returns None for a gradient that is structurally zero (the output does not depend
# on the input).  It becomes zeros here, and only here; a None where another scenario gives a
# non-zero value therefore still shows up as a disagreement.
def _none_to_zero(g: Any, like: Any) -> Any:
    if g is None:
        return tf.zeros_like(like)
    return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


# Note [complex outputs], as in the torch and jax adapters: compared as (real, imaginary) pairs.
def _real(t: Any) -> Any:
    t = tf.convert_to_tensor(t)
    return tf.stack([tf.math.real(t), tf.math.imag(t)], axis=-1) if t.dtype.is_complex else t


class TensorFlowAdapter(ComposableAdapter):
    library = "tensorflow"
    stages = True

    def versions(self) -> Dict[str, str]:
        return {"tensorflow": tf.__version__, "numpy": np.__version__,
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")}

    def resolve(self, api: str) -> Any:
        return resolve_library_api(api, "tf", "tensorflow", lambda parts: attribute_path(tf, parts[1:]))

    def permute(self, t: Any, perm: Sequence[int]) -> Any:
        return tf.transpose(t, list(perm))

    def from_numpy(self, a: np.ndarray, dtype: str, grad: bool = False) -> Any:
        return tf.constant(np.asarray(a, dtype=dtype))

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t.numpy() if hasattr(t, "numpy") else t)

    def dtype(self, name: str) -> Any:
        return tf.as_dtype(name)

    def seed(self, seed: int) -> None:
        tf.random.set_seed(seed & 0x7FFF_FFFF)

    def triangle(self, t: Any, lower: bool) -> Any:
        return tf.linalg.band_part(t, -1, 0) if lower else tf.linalg.band_part(t, 0, -1)

    def reset(self) -> None:
        tf.config.run_functions_eagerly(False)
        pywrap_tfe.TFE_Py_TapeSetRestartOnThread()  # a `stop_recording` that was never left

    def flatten(self, out: Any) -> List[Any]:
        return [_real(t) for t in tf.nest.flatten(out)]

    def dot(self, a: List[Any], b: List[Any]) -> Any:
        terms = [tf.reduce_sum(x * tf.cast(y, x.dtype)) for x, y in zip(a, b)]
        return tf.add_n(terms) if terms else tf.constant(0.0, tf.float64)

    def vjp(self, f, xs, cts, create_graph):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            for x in xs:
                tape.watch(x)
            outs = f(xs)
        grads = tape.gradient(outs, xs, output_gradients=[tf.cast(c, o.dtype) for c, o in zip(cts, outs)],
                              unconnected_gradients=ZERO)
        return list(outs), [_none_to_zero(g, x) for g, x in zip(grads, xs)]

    def jvp(self, f, xs, tangents):
        with tf.autodiff.ForwardAccumulator(xs, [tf.cast(t, x.dtype) for t, x in zip(tangents, xs)]) as acc:
            outs = f(xs)
        return list(outs), [_none_to_zero(acc.jvp(o, unconnected_gradients=ZERO), o) for o in outs]

    def entry_library(self) -> Any:
        return tensorflow_transforms(tf, self.to_numpy)

    def catalogue(self) -> Dict[str, Any]:
        """The public Python APIs, plus every `tf.raw_ops` op with a registered gradient that no
        public API wraps.  A generated wrapper (`tf.nn.relu`) and its raw op (`tf.raw_ops.Relu`)
        are one op: listed once, under the public name, the raw op recorded as its alias, and its
        parameters typed from the OpDef (float inputs are arrays, int inputs integers, type
        attributes dtypes).  Wrappers of ops without a gradient are dropped with that reason."""
        modules = [(f"tf.{m}", attribute_path(tf, m.split("."))) for m in PY_MODULES]
        compat = [(f"tf.compat.v1.{m}", attribute_path(tf.compat.v1, m.split("."))) for m in PY_MODULES]
        found = catalogue([("tf", tf)] + [m for m in modules if m[1] is not None], SKIP,
                          alias_modules=[("tf.compat.v1", tf.compat.v1)] + compat)
        wrappers = _raw_ops_by_wrapper()
        entries, wrapped = [], set()
        for e in found["entries"]:
            fn = tf_decorator.unwrap(self.resolve(e["name"]))[1]
            op = wrappers.get((getattr(fn, "__module__", ""), getattr(fn, "__name__", "")))
            if op is None:
                entries.append(e)
                continue
            wrapped.add(op)
            why = _not_runnable(op)
            if why:
                found["dropped"].append(f"{e['name']}: {why}")
                continue
            typed = {p["name"]: p["annotation"] for p in _op_params(op, "")}
            params = [dict(p, annotation=typed.get(p["name"], p["annotation"])) for p in e["params"]]
            entries.append(dict(e, params=params, aliases=e["aliases"] + [f"tf.raw_ops.{op}"], **_op_dtypes(op)))
        for op in sorted(set(wrappers.values()) - wrapped):
            if not _has_gradient(op):
                continue  # not differentiable at all: not listed (1,000+ ops)
            why = _not_runnable(op)
            if why:
                found["dropped"].append(f"tf.raw_ops.{op}: {why}")
            else:
                entries.append(_op_entry(op))
        return {"entries": entries, "dropped": found["dropped"]}

    def compiles(self) -> int:
        return _TRACES[0]

    def compile_kernel(self, fn: Callable[..., Any]) -> Any:
        """`tf.function`: a graph per shape and dtype signature (its traces counted).  Without
        AutoGraph: a kernel is this adapter's code around the API, which has no tensor-dependent
        Python control flow to convert, and converting every call it makes cost a sixth of a
        trace; an API that needs AutoGraph fails to trace and runs eagerly (`staged`), where a
        finding would be established anyway (Note [staged findings]).  The `jit` scenario
        (`compiled`) keeps AutoGraph, as users' tf.function does."""
        def traced(consts: Any, *arrays: Any) -> Any:
            _TRACES[0] += 1  # runs once per trace
            return fn(consts, *arrays)
        return _Kernel(tf.function(traced, autograph=False))

    def compiled(self, fn: Any) -> Any:
        """`tf.function(jit_compile=True)`, once per API (retraced per shape and Python values)."""
        return self.compiled_once(fn, lambda f: tf.function(f, jit_compile=True))


# Note [concrete calls]
# Calling a tf.function matches its arguments to a trace in Python: a trace type is built for
# every argument and hashed, on each call.  A staged kernel takes tens of small tensors in nested
# lists (the inputs, their directions, the call's constants), and a warm trial makes eight calls
# (the fused scenarios, seven points of finite differences).  With 31 small tensors and a trivial
# graph, a tf.function call took 1.9 ms on this machine kind and its concrete function's call
# 0.9 ms.  `_Kernel` keeps each trace's concrete function under a key of its own (the nesting,
# dtypes and shapes of the tensors: what a trace of these kernels depends on, since every argument
# is a tensor) and calls that, which binds the arguments but builds no trace types; any argument
# that is not a tensor takes tf.function's own path.  The throughput bench's trials gained about a
# tenth against the hand-written calls; a 20-minute campaign showed no gain beyond the machine's
# drift (bench/results/throughput-same-machine.md, eleventh session).
class _Kernel:
    """A staged kernel's tf.function, its concrete functions kept by signature (Note [concrete calls])."""

    def __init__(self, function: Any):
        self.function = function
        self.concrete: Dict[Any, Any] = {}

    def __call__(self, *args: Any) -> Any:
        key = _signature(args)
        if key is None:
            return self.function(*args)
        concrete = self.concrete.get(key)
        if concrete is None:
            concrete = self.concrete[key] = self.function.get_concrete_function(*args)
        return concrete(*args)


def _signature(value: Any) -> Any:
    """The nesting, dtypes and shapes of tensors in lists and tuples; None if anything else is there."""
    if isinstance(value, (list, tuple)):
        inner = tuple(_signature(v) for v in value)
        return None if None in inner else (type(value) is list,) + inner
    if isinstance(value, tf.Tensor):
        return value.dtype, tuple(value.shape)
    return None


def _raw_ops_by_wrapper() -> Dict[Tuple[str, str], str]:
    """(module, function name) of each raw op's generated Python wrapper -> the op's name."""
    out = {}
    for name in dir(tf.raw_ops):
        fn = getattr(tf.raw_ops, name)
        if not name.startswith("_") and callable(fn):
            out[(fn.__module__, fn.__name__)] = name
    return out


def _has_gradient(op: str) -> bool:
    return ops._gradient_registry._registry.get(op, {}).get("type") is not None


def _allowed(op_def: Any, arg: Any) -> Set[int]:
    """The dtype enums an input may have ({} where any type goes)."""
    if arg.type:
        return {arg.type}
    attr = next((a for a in op_def.attr if a.name == (arg.type_attr or arg.type_list_attr)), None)
    return set(attr.allowed_values.list.type) if attr is not None and attr.HasField("allowed_values") else set()


def _float_input(op_def: Any, arg: Any) -> bool:
    allowed = _allowed(op_def, arg)
    return not allowed or bool(allowed & FLOAT_TYPES)


@functools.lru_cache(maxsize=None)
def _cpu_float_dtypes(op: str) -> Set[int]:
    """The float dtype enums the op's CPU kernels take for its float inputs (empty: no CPU kernel
    for any float type, e.g. TPU and NCCL ops)."""
    op_def = op_def_registry.get(op)
    attrs = {a.type_attr for a in op_def.input_arg if a.type_attr and _float_input(op_def, a)}
    found: Set[int] = set()
    for kernel in kernels.get_registered_kernels_for_op(op).kernel:
        if kernel.device_type != "CPU":
            continue
        constraint = {c.name: set(c.allowed_values.list.type) for c in kernel.constraint}
        found |= set.intersection(FLOAT_TYPES, *[constraint[a] for a in attrs if a in constraint])
    return found


def _not_runnable(op: str) -> str:
    """Why the op cannot be differentiated on this CPU worker ("" when it can)."""
    if not _has_gradient(op):
        return f"no gradient registered for its op (tf.raw_ops.{op})"
    if not _cpu_float_dtypes(op):
        return f"no CPU kernel for a float type (tf.raw_ops.{op})"
    return ""


def _op_dtypes(op: str) -> Dict[str, List[str]]:
    """{"dtypes": ["float32"]} where the op's CPU kernels take float32 but not float64
    (FusedBatchNorm), else {} (both)."""
    found = _cpu_float_dtypes(op)
    return {} if tf.float64.as_datatype_enum in found else {"dtypes": ["float32"]}


def _op_params(op: str, kind: str) -> List[Dict[str, Any]]:
    """The op's parameters typed from its OpDef (float inputs are arrays, other inputs integers,
    type attributes dtypes), named as its Python wrapper names them (`axis`, where the OpDef says
    `split_dim`): inputs come first and in OpDef order, then the attributes by name."""
    op_def = op_def_registry.get(op)
    names = list(inspect.signature(getattr(tf.raw_ops, op)).parameters)
    inferred = {a.number_attr for a in op_def.input_arg} | {a.type_list_attr for a in op_def.input_arg} | {
        a.type_attr for a in op_def.input_arg}
    params = [{"name": name, "kind": kind, "required": True,
               "annotation": ("Sequence[Tensor]" if a.number_attr or a.type_list_attr else "Tensor")
               if _float_input(op_def, a) else "int"} for name, a in zip(names, op_def.input_arg)]
    params += [{"name": a.name, "kind": kind, "required": True, "annotation": ATTR_ANNOTATIONS.get(a.type, a.type)}
               for a in op_def.attr if a.name not in inferred and not a.HasField("default_value") and a.name in names]
    return params


def _op_entry(op: str) -> Dict[str, Any]:
    """A raw op as a catalogue entry: keyword-only parameters, as raw ops take them."""
    return {"name": f"tf.raw_ops.{op}", "module": "tf.raw_ops", "params": _op_params(op, "keyword_only"),
            "doc": op_def_registry.get(op).summary[:160], "aliases": [], **_op_dtypes(op)}


def make_adapter() -> TensorFlowAdapter:
    return TensorFlowAdapter()
