"""The parts of repro scripts several libraries share (their own parts are in their folders)."""

FLATTEN = '''
def flatten(out):  # as the adapter lists a call's outputs: a tuple or list, or one output
    return list(out) if isinstance(out, (tuple, list)) else [out]
'''

TENSOR = '''def with_graph(outs, cts):  # outputs with a graph and their cotangents; the rest have derivative 0
    live = [(o, c) for o, c in zip(outs, cts) if o.requires_grad]
    return [o for o, _ in live], [c for _, c in live]

def to_numpy(t):
    return t.detach().numpy()

def dot(a, b):
    return sum((x * y).sum() for x, y in zip(a, b))
'''

JVP_OF_JVP = '''
def jvp_of_jvp(f, xs, us, vs, ws):
    return jvp(q_function("fwd", f, us, vs), xs, ws)[1][0]
'''

COMPOSED = '''
def direct(f, xs):
    return [to_numpy(o) for o in f([native(x) for x in xs])]

def first_order(mode, f, xs, us, vs):
    """rev = <vjp(v), u>, fwd = <v, jvp(u)>; returns (value, scale, primal outputs)."""
    nx = [native(x, True) for x in xs]
    if mode == "rev":
        outs, grads = vjp(f, nx, [native(v) for v in vs], False)
        return project([to_numpy(g) for g in grads], us) + ([to_numpy(o) for o in outs],)
    outs, tans = jvp(f, nx, [native(u) for u in us])
    return project(vs, [to_numpy(t) for t in tans]) + ([to_numpy(o) for o in outs],)

def q_function(inner, f, us, vs):
    """Q(x) = <v, J(x) u>, computed by `inner` mode: second order is first order applied to Q."""
    def q(xs):
        if inner == "rev":
            return [dot(vjp(f, xs, vs, True)[1], us)]
        return [dot(vs, jvp(f, xs, us)[1])]
    return q

def third_order(outer, middle, inner, f, xs, us, vs, ws, zs):
    """`outer` mode along z of Q2(x) = the `middle` mode of Q along w: v^T D3f [u, w, z]."""
    nx = [native(x, True) for x in xs]
    nu, nv, nw, nz = ([native(a) for a in arrays] for arrays in (us, vs, ws, zs))
    one = [native(np.ones((), dtype=xs[0].dtype))]
    q2 = q_function(middle, q_function(inner, f, nu, nv), nw, one)
    if outer == "rev":
        return project([to_numpy(g) for g in vjp(q2, nx, one, False)[1]], zs)
    tangent = float(to_numpy(jvp(q2, nx, nz)[1][0]))
    return tangent, abs(tangent)

def second_order(outer, inner, f, xs, us, vs, ws):
    """`outer` mode of Q along w, e.g. fwd.rev = JVP (along w) of the VJP-based Q."""
    nx = [native(x, True) for x in xs]
    nu, nv, nw = ([native(a) for a in arrays] for arrays in (us, vs, ws))
    if outer == "rev":
        ones = [native(np.ones((), dtype=xs[0].dtype))]
        return project([to_numpy(g) for g in vjp(q_function(inner, f, nu, nv), nx, ones, False)[1]], ws)
    tangent = jvp_of_jvp(f, nx, nu, nv, nw) if inner == "fwd" else jvp(q_function(inner, f, nu, nv), nx, nw)[1][0]
    return float(to_numpy(tangent)), abs(float(to_numpy(tangent)))
'''
