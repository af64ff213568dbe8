"""A JAX function with a `custom_vjp` rule (forward mode through it is unsupported by design)."""
import jax
import jax.numpy as jnp


@jax.custom_vjp
def clipped_square(x):
    return x * x


def _fwd(x):
    return x * x, x


def _bwd(x, g):
    return (jnp.clip(2 * x, -1.0, 1.0) * g,)


clipped_square.defvjp(_fwd, _bwd)


def jit_differs(x):
    """2x eagerly, 3x under jit (tracers are not concrete arrays): a planted jit-only bug."""
    factor = 3.0 if isinstance(x, jax.core.Tracer) and not hasattr(x, "primal") else 2.0
    return factor * x


def leaves_debug_nans_on(x):
    """sin that switches jax_debug_nans on for whatever runs next (a NaN output then raises)."""
    jax.config.update("jax_debug_nans", True)
    return jnp.sin(x)



def value_dependent_shape(x):
    """sin of the positive elements: eagerly fine (also under jax.vjp and jax.jvp); no compiled
    program can, since its output's shape depends on values (jax.jit raises)."""
    return jnp.sin(x[jnp.nonzero(x > 0)])


def crashes_in_float64(x):
    """sin, but the process dies (SIGSEGV) wherever it is called with float64: in a float32
    trial, in its float64 references only."""
    if x.dtype == jnp.float64:
        import os
        import signal
        os.kill(os.getpid(), signal.SIGSEGV)
    return jnp.sin(x)
