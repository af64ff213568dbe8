"""JAX: what nablafuzz knows about it (the adapter is adapter.py, run in its worker)."""
from __future__ import annotations

from ..descriptor import Library, Renderer
from ..scripts import COMPOSED, JVP_OF_JVP
from .script import TEXT

LIBRARY = Library(
    "jax", "nablafuzz.libraries.jax.adapter:make_adapter",
    Renderer(("import jax", "import jax.numpy as jnp", "",
              'jax.config.update("jax_enable_x64", True)  # before any array exists'),
             (("jax", "jax"), ("jnp", "jnp")), TEXT + JVP_OF_JVP + COMPOSED, compiler="jax.jit",
             submodules=True, permute="jnp.transpose({x}, {p})", triangle=("jnp.tril({x})", "jnp.triu({x})"),
             dtype="jnp.dtype({name!r})",
             entry="types.SimpleNamespace(jacrev=jax.jacrev, jacfwd=jax.jacfwd, hessian=jax.hessian, "
                   "vmap=jax.vmap, vjp=jax.vjp, stack=jnp.stack, sum=jnp.sum, to_numpy=np.asarray, graph=None, "
                   "native=lambda v, o: jnp.asarray(v, dtype=o.dtype))"),
    unsupported=(
        ("custom_vjp_forward_mode", r"can't apply forward-mode autodiff \(jvp\) to a custom_vjp"),
        ("while_loop_reverse_mode", r"Reverse-mode differentiation does not work for lax\.while_loop"),
        ("callback_without_jvp", r"Pure callbacks do not support JVP"),
        # jit traces array arguments: an API that needs a concrete value (an index, a shape)
        # cannot be compiled so, which is the compiled scenario's limit, not a derivative bug
        ("needs_concrete_value", r"TracerIntegerConversionError|ConcretizationTypeError|TracerBoolConversionError"),
    ),
    numpy_prefixes=("jax.numpy.",),
    where="jax.numpy.where",
    env_report="`jax.print_environment_info()`",
    # jax.jit: ~50 ms per new shape, then microseconds (torch.compile takes 20-40 s per API)
    compiled_by_default=True,
    staged=True,
    entry_points=True,
    namespaces=("jax.numpy.", "jax.nn.", "jax.scipy.special.", "jax.numpy.linalg.", "jax.numpy.fft.", "jax.lax."),
)
