"""JAX adapter (runs inside the jax worker only).

`jax_enable_x64` is switched on before any array exists (JAX otherwise computes in float32
silently).  Reverse mode is `jax.vjp`, forward mode `jax.jvp`; both nest freely, so every
composition of `ComposableAdapter` applies as is.  The `jit` scenario differentiates
`jax.jit` of the call (arrays traced, everything else static), so the compiled primal and its
compiled transpose are checked against eager.  Specs come from the probing spec source over
the catalogue of `MODULES`.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import types
from typing import Any, Callable, Dict, List, Sequence

import jax

# The configuration every trial runs under (reset before each: a function may change it)
CONFIG = {"jax_enable_x64": True, "jax_disable_jit": False, "jax_debug_nans": False, "jax_debug_infs": False,
          "jax_numpy_rank_promotion": "allow", "jax_default_matmul_precision": None}
jax.config.update("jax_enable_x64", True)
# Note [persistent compilation cache] (runtime/registry.py): where a user bounds the cache
# (JAX_COMPILATION_CACHE_MAX_SIZE), JAX takes a file lock from `filelock`; a runtime without it
# (a release's venv) then runs without the cache rather than warn at every compilation.
if jax.config.jax_compilation_cache_max_size > 0 and importlib.util.find_spec("filelock") is None:
    jax.config.update("jax_compilation_cache_dir", None)

import jax.numpy as jnp  # noqa: E402  (after x64 is on)
import numpy as np  # noqa: E402

from ..base import ComposableAdapter, attribute_path, resolve_library_api  # noqa: E402
from ..introspect import catalogue  # noqa: E402

MODULES = ("jax.numpy", "jax.numpy.linalg", "jax.numpy.fft", "jax.lax", "jax.lax.linalg", "jax.nn",
           "jax.scipy.special", "jax.scipy.linalg", "jax.scipy.signal", "jax.scipy.fft", "jax.scipy.ndimage",
           "jax.scipy.integrate", "jax.scipy.cluster.vq", "jax.scipy.spatial.transform") + tuple(
    f"jax.scipy.stats.{d}" for d in (
        "bernoulli", "beta", "betabinom", "binom", "cauchy", "chi2", "dirichlet", "expon", "gamma", "gennorm",
        "geom", "gumbel_l", "gumbel_r", "laplace", "logistic", "multinomial", "multivariate_normal", "nbinom",
        "norm", "pareto", "poisson", "t", "truncnorm", "uniform", "vonmises", "wrapcauchy")) + ("jax.scipy.stats",)
# Not APIs to differentiate: array creation from shapes, dtype queries, host callbacks, printing,
# control flow and tracing utilities (they take functions), and explicitly random ops.
SKIP = re.compile(r"\.(callback|pure_callback|io_callback|cond|switch|while_loop|fori_loop|scan|map|associative_scan"
                  r"|custom_\w+|create_token|after_all|infeed|outfeed|rng_\w+|random_\w+|psum\w*|pmax"
                  r"|pmin|pmean|ppermute|pshuffle|pswapaxes|all_gather|all_to_all|axis_index|axis_size|pbroadcast"
                  r"|psend|precv|ragged_\w+|composite|optimization_barrier|with_sharding_constraint|shard_\w+"
                  r"|set_printoptions|printoptions|get_printoptions|load|save\w*|frompyfunc|vectorize|piecewise"
                  r"|apply_along_axis|apply_over_axes|fromfunction|fromiter|from_dlpack|fromfile|frombuffer"
                  r"|fromstring|iterable|show_config|info|register_\w+|dtype|iinfo|finfo"
                  r"|reduce|reduce_and|reduce_or|reduce_xor|sharding\w*|is_\w+|isdtype|issubdtype|can_cast"
                  r"|result_type|promote_types|ndim|shape|size)$")


def _lookup(parts: List[str]) -> Any:
    """`jax.scipy.special.erf`: import the longest module prefix, then walk attributes."""
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return attribute_path(module, parts[cut:])
    return None


# Note [complex outputs], as in the torch adapter: a complex output z is compared as the real
# pair (Re z, Im z), so each scenario is real analysis of a real function.
def _real(t: Any) -> Any:
    t = jnp.asarray(t)
    return jnp.stack([t.real, t.imag], axis=-1) if jnp.iscomplexobj(t) else t


_COMPILES = [0]  # XLA compilations in this worker, eager primitives included (the throughput bench reads it)
jax.monitoring.register_event_duration_secs_listener(
    lambda event, _seconds, **_: _COMPILES.__setitem__(0, _COMPILES[0] + (event == "/jax/core/compile/backend_compile_duration")))


def _float0_to_zero(g: Any, x: Any) -> Any:
    """Symbolic zeros (float0 cotangents of integer inputs, tangents of integer outputs) as
    real zeros, in one place."""
    return jnp.zeros_like(x) if getattr(g, "dtype", None) == jax.dtypes.float0 else g


class JaxAdapter(ComposableAdapter):
    library = "jax"
    stages = True
    host_inputs = True  # Note [host inputs]

    def versions(self) -> Dict[str, str]:
        import jaxlib
        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "numpy": np.__version__}

    def resolve(self, api: str) -> Any:
        return resolve_library_api(api, "jax", "jax", _lookup)

    def permute(self, t: Any, perm: Sequence[int]) -> Any:
        return jnp.transpose(t, tuple(perm))

    def from_numpy(self, a: np.ndarray, dtype: str, grad: bool = False) -> Any:
        return jnp.asarray(np.asarray(a, dtype=dtype))

    def to_numpy(self, t: Any) -> np.ndarray:
        return np.asarray(t)

    def dtype(self, name: str) -> Any:
        return jnp.dtype(name)

    def flatten(self, out: Any) -> List[Any]:
        """Pytree leaves (named tuples, dicts, Python scalars) as arrays, complex as real pairs."""
        return [_real(leaf) for leaf in jax.tree_util.tree_leaves(out)]

    def catalogue(self) -> Dict[str, Any]:
        return catalogue(MODULES, SKIP)

    def compiled(self, fn: Any) -> Any:
        """`fn` under `jax.jit`: array arguments are traced, all others are static constants.
        One jitted function per (API, static arguments), so shapes seen before do not recompile."""
        cache = self.__dict__.setdefault("_jitted", {})

        def call(*args: Any, **kwargs: Any) -> Any:
            leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
            arrays = [i for i, x in enumerate(leaves) if isinstance(x, (jax.Array, jax.core.Tracer))]
            static = tuple((i, repr(x)) for i, x in enumerate(leaves) if i not in arrays)
            key = (id(fn), str(tree), static)
            if key not in cache:
                if len(cache) > 256:
                    cache.clear()

                def inner(*traced: Any, _leaves=list(leaves), _slots=tuple(arrays)) -> Any:
                    filled = list(_leaves)
                    for i, x in zip(_slots, traced):
                        filled[i] = x
                    a, k = jax.tree_util.tree_unflatten(tree, filled)
                    return fn(*a, **k)
                cache[key] = (fn, jax.jit(inner))
            return cache[key][1](*(leaves[i] for i in arrays))
        return call

    def compiles(self) -> int:
        return _COMPILES[0]

    def compile_kernel(self, fn: Callable[..., Any]) -> Any:
        """`jax.jit`: one program per shape and dtype signature in jit's own cache."""
        return jax.jit(fn)

    def run_compiled(self, compiled: Any, consts: Any, arrays: Sequence[Any]) -> Any:
        return jax.block_until_ready(compiled(consts, *arrays))

    def entry_library(self) -> Any:
        return types.SimpleNamespace(jacrev=jax.jacrev, jacfwd=jax.jacfwd, hessian=jax.hessian, vmap=jax.vmap,
                                     vjp=jax.vjp, stack=jnp.stack, sum=jnp.sum, to_numpy=np.asarray, graph=None,
                                     native=lambda v, o: jnp.asarray(v, dtype=o.dtype))

    def seed(self, seed: int) -> None:
        """JAX has no global RNG: random APIs take explicit keys, which the spec supplies."""

    def triangle(self, t: Any, lower: bool) -> Any:
        return jnp.tril(t) if lower else jnp.triu(t)

    def reset(self) -> None:
        for name, value in CONFIG.items():
            if getattr(jax.config, name) != value:
                jax.config.update(name, value)

    def dot(self, a: List[Any], b: List[Any]) -> Any:
        return sum((jnp.sum(x * y) for x, y in zip(a, b)), jnp.zeros(()))

    def vjp(self, f, xs, cts, create_graph):
        outs, pullback = jax.vjp(lambda *a: tuple(f(list(a))), *xs)
        grads = pullback(tuple(jnp.asarray(c, dtype=o.dtype) for c, o in zip(cts, outs)))
        return list(outs), [_float0_to_zero(g, x) for g, x in zip(grads, xs)]

    def jvp(self, f, xs, tangents):
        outs, tans = jax.jvp(lambda *a: tuple(f(list(a))), tuple(xs),
                             tuple(jnp.asarray(t, dtype=x.dtype) for t, x in zip(tangents, xs)))
        return list(outs), [_float0_to_zero(t, o) for t, o in zip(tans, outs)]


def make_adapter() -> JaxAdapter:
    return JaxAdapter()
