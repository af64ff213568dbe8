"""torch's own part of repro scripts (the AD helpers in plain torch code, and its layers)."""
from typing import List


def layer_lines(cls: str, init: str, named: str) -> List[str]:
    """A torch.nn layer as a function of its inputs and `param:<name>` parameters, as fuzzed:
    `cls(*init, **named)` in inference mode via torch.func.functional_call."""
    return ["import copy", "", f"LAYER = {cls}(*{init}, **{named}).train(False)",
            "LAYERS = {d: copy.deepcopy(LAYER).to(d) for d in (torch.float64, torch.float32, torch.float16)}", "", "",
            "def layer(*inputs, **named):",
            f'    """{cls} in inference mode via torch.func.functional_call; its parameters are inputs."""',
            '    params = {k[len("param:"):]: v for k, v in named.items() if k.startswith("param:")}',
            '    rest = {k: v for k, v in named.items() if not k.startswith("param:")}',
            "    dtype = next(t.dtype for t in list(inputs) + list(params.values())",
            "                 if isinstance(t, torch.Tensor) and t.is_floating_point())",
            "    return torch.func.functional_call(LAYERS[dtype], params, inputs, rest)", ""]


TEXT = '''
def flatten(out):
    """Outputs as nablafuzz's torch adapter lists them: nested tuples and lists flattened, Python
    scalars as tensors, a complex z as the real pair (Re z, Im z) on a new last axis."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten(o)]
    t = out if isinstance(out, torch.Tensor) else torch.tensor(out)
    return [torch.stack([t.real, t.imag], dim=-1) if t.is_complex() else t]

def compiled(f):
    """jit: torch.compile of the call, with dynamic shapes as nablafuzz compiles it."""
    return torch.compile(f, dynamic=True)

def native(a, grad=False):
    t = torch.from_numpy(np.array(a))
    return t.requires_grad_() if grad and t.is_floating_point() else t

def vjp(f, xs, cts, create_graph):
    """Reverse mode: torch.autograd.grad (create_graph=True when differentiated again)."""
    outs = f(xs)
    o, c = with_graph(outs, cts)
    grads = torch.autograd.grad(o, xs, c, create_graph=create_graph, allow_unused=True) if o else [None] * len(xs)
    return outs, [torch.zeros_like(x) if g is None else g for g, x in zip(grads, xs)]

def jvp(f, xs, tangents):
    """Forward mode: torch.autograd.forward_ad dual tensors."""
    with fwAD.dual_level():
        outs = [fwAD.unpack_dual(o) for o in f([fwAD.make_dual(x, t) for x, t in zip(xs, tangents)])]
    return [o.primal for o in outs], [torch.zeros_like(o.primal) if o.tangent is None else o.tangent for o in outs]

def jvp_of_jvp(f, xs, us, vs, ws):
    """forward_ad cannot nest dual levels, so JVP of JVP uses torch.func.jvp twice."""
    def q(*d):
        return dot(vs, torch.func.jvp(lambda *e: tuple(f(list(e))), d, tuple(us))[1])
    return torch.func.jvp(q, tuple(xs), tuple(ws))[1]
'''
