"""numpy_ref's own part of repro scripts (the AD helpers in plain numpy_ref code)."""

TEXT = '''
def direct(p, xs):
    return [np.asarray(o) for o in pick(op.f(*xs, **p))]

def first_order(mode, p, xs, us, vs):
    """rev = <op.vjp(v), u>, fwd = <v, op.jvp(u)>; returns (value, scale, primal outputs)."""
    outs = direct(p, xs)
    if mode == "rev":
        grads = [np.asarray(g, dtype=x.dtype) for g, x in zip(op.vjp(xs, vs, **p), xs)]
        return project(grads, us) + (outs,)
    return project(vs, op.jvp(xs, us, **p)) + (outs,)

def second_order(outer, inner, p, xs, us, vs, ws):
    """numpy_ref derives every second-order scenario from op.hess, the gradient of Q = <v, J u>."""
    value, scale = project(op.hess(xs, us, vs, **p), ws)
    return value, (scale if outer == "rev" else abs(value))
'''
