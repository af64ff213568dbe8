"""jax's own part of repro scripts (the AD helpers in plain jax code)."""

TEXT = '''
def flatten(out):
    """Outputs as nablafuzz's jax adapter lists them: the pytree's leaves as arrays, a complex z as
    the real pair (Re z, Im z) on a new last axis (each scenario is real analysis)."""
    leaves = [jnp.asarray(t) for t in jax.tree_util.tree_leaves(out)]
    return [jnp.stack([t.real, t.imag], axis=-1) if jnp.iscomplexobj(t) else t for t in leaves]

def compiled(f):
    """jit: jax.jit of the call; only the differentiable arrays are arguments, everything else is
    closed over in bind and so static (nablafuzz traces the other arrays too)."""
    return jax.jit(f)

def native(a, grad=False):
    return jnp.asarray(a)

to_numpy = np.asarray

def dot(a, b):  # from a float64 zero, as the adapter sums: Q of float32 inputs is float64
    return sum((jnp.sum(x * y) for x, y in zip(a, b)), jnp.zeros(()))

def vjp(f, xs, cts, create_graph):
    """Reverse mode: jax.vjp (its result is always differentiable again).  jax wants each cotangent
    in its output's dtype (float32 inputs may give a float64 output or Q)."""
    outs, pullback = jax.vjp(lambda *a: f(list(a)), *xs)
    return outs, list(pullback([jnp.asarray(c, dtype=o.dtype) for c, o in zip(cts, outs)]))

def jvp(f, xs, tangents):  # each tangent in its input's dtype, as jax wants
    tangents = tuple(jnp.asarray(t, dtype=x.dtype) for t, x in zip(tangents, xs))
    return jax.jvp(lambda *a: f(list(a)), tuple(xs), tangents)
'''
