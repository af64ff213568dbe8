"""oneflow's own part of repro scripts (the AD helpers in plain oneflow code)."""

TEXT = '''
def native(a, grad=False):
    return oneflow.tensor(np.array(a), requires_grad=bool(grad and np.asarray(a).dtype.kind == "f"))

def grad(outs, xs, cts, create_graph):
    """<cts, d outs / d xs>, zeros where an output does not depend on an x.  OneFlow has no
    allow_unused: a zero-weighted term of every x keeps it in the graph (its gradient is 0)."""
    o, c = with_graph(outs, cts)
    anchor = sum((x * 0).sum() for x in xs)
    grads = oneflow.autograd.grad(o + [anchor], xs, c + [oneflow.zeros_like(anchor)], retain_graph=True,
                                  create_graph=create_graph)
    return [oneflow.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]

def vjp(f, xs, cts, create_graph):
    """Reverse mode: oneflow.autograd.grad (create_graph=True when differentiated again)."""
    outs = f(xs)
    return outs, grad(outs, xs, cts, create_graph)

def jvp(f, xs, tangents):
    """OneFlow has no forward mode: J u is emulated exactly by two reverse passes (the
    double-VJP trick, J u = d/dc <vjp(c), u>); a wrong result here may be a VJP bug.  A single
    scalar output (an inner derivative) takes one reverse pass: J u = <grad, u>."""
    outs = f(xs)
    if len(outs) == 1 and outs[0].ndim == 0:
        return outs, [dot(grad(outs, xs, [oneflow.ones_like(outs[0])], True), tangents)]
    cs = [oneflow.zeros_like(o).requires_grad_() for o in outs]
    return outs, grad(grad(outs, xs, cs, True), cs, list(tangents), True)
'''
