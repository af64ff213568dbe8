"""OneFlow functions with planted AD behaviour (named `helper_oneflow_ops:NAME`)."""
import oneflow as flow


class _DoubledSin(flow.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return flow.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * flow.cos(x) * g


def doubled_sin(x):
    """sin, whose backward says 2 cos: reverse mode and the forward mode emulated from it are
    both wrong, and finite differences say which."""
    return _DoubledSin.apply(x)


def first(x, y):
    """x alone: y is an input the output does not depend on (OneFlow has no allow_unused)."""
    return x * 3.0


def leaves_grad_off(x):
    """sin, computed with grad on, that leaves grad mode off for whatever runs next."""
    y = flow.sin(x)
    flow.set_grad_enabled(False)
    return y
