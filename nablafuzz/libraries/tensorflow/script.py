"""tensorflow's own part of repro scripts (the AD helpers in plain tensorflow code)."""

TEXT = '''
ZERO = tf.UnconnectedGradients.ZERO

def flatten(out):
    """Outputs as nablafuzz's tensorflow adapter lists them: the nest's leaves as tensors, a complex z
    as the real pair (Re z, Im z) on a new last axis (each scenario is real analysis)."""
    leaves = [tf.convert_to_tensor(t) for t in tf.nest.flatten(out)]
    return [tf.stack([tf.math.real(t), tf.math.imag(t)], axis=-1) if t.dtype.is_complex else t for t in leaves]

def compiled(f):
    """jit: tf.function(jit_compile=True) of the call (XLA), as nablafuzz compiles it."""
    return tf.function(f, jit_compile=True)

def native(a, grad=False):
    return tf.constant(a)

to_numpy = np.asarray

def dot(a, b):
    return sum(tf.reduce_sum(x * y) for x, y in zip(a, b))

def vjp(f, xs, cts, create_graph):
    """Reverse mode: tf.GradientTape (an enclosing tape or accumulator records it for order 2)."""
    with tf.GradientTape() as tape:
        tape.watch(xs)
        outs = f(xs)
    grads = tape.gradient(outs, xs, output_gradients=cts, unconnected_gradients=ZERO)
    return outs, [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices (gather's gradient) as dense

def jvp(f, xs, tangents):
    """Forward mode: tf.autodiff.ForwardAccumulator."""
    with tf.autodiff.ForwardAccumulator(xs, list(tangents)) as acc:
        outs = f(xs)
    return outs, [acc.jvp(o, unconnected_gradients=ZERO) for o in outs]
'''
