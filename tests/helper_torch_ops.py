"""User functions for the torch adapter tests (imported inside the torch worker only)."""
from __future__ import annotations

import torch


class _Double(torch.autograd.Function):
    """2x with a backward but no jvp: forward mode is unsupported."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return 2 * g


class _WrongBackward(torch.autograd.Function):
    """x**2 whose backward returns 3x instead of 2x; its jvp is right."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * g

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return 2 * x * t


double_no_jvp = _Double.apply
square_wrong_backward = _WrongBackward.apply


def leaves_grad_off(input):
    """sin, computed with grad on, that leaves grad mode off for whatever runs next."""
    y = torch.sin(input)
    torch.set_grad_enabled(False)
    return y


def leaves_dual_level_open(input):
    """sin that enters a forward-AD level and never leaves it."""
    torch.autograd.forward_ad.enter_dual_level()
    return torch.sin(input)


def _cube_function(vmap_scale: float):
    class _CubeGrad(torch.autograd.Function):
        """(x, g) -> 3 x^2 g, the cube's backward as an op of its own, with derivatives in both
        modes and a vmap rule that scales its batched result by `vmap_scale`."""

        @staticmethod
        def forward(x, g):
            return 3 * x * x * g

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)
            ctx.save_for_forward(*inputs)

        @staticmethod
        def backward(ctx, gy):
            x, g = ctx.saved_tensors
            return 6 * x * g * gy, 3 * x * x * gy

        @staticmethod
        def jvp(ctx, tx, tg):
            x, g = ctx.saved_tensors
            return 6 * x * g * tx + 3 * x * x * tg

        @staticmethod
        def vmap(info, in_dims, x, g):
            size = info.batch_size
            x = x.movedim(in_dims[0], 0) if in_dims[0] is not None else x.expand(size, *x.shape)
            g = g.movedim(in_dims[1], 0) if in_dims[1] is not None else g.expand(size, *g.shape)
            return vmap_scale * _CubeGrad.apply(x, g), 0

    class _Cube(torch.autograd.Function):
        """x**3 whose backward is _CubeGrad (so it runs batched under the torch.func transforms
        that vmap over cotangents or points: jacrev, vmap, hessian)."""

        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return x * x * x

        @staticmethod
        def setup_context(ctx, inputs, output):
            (x,) = inputs
            ctx.save_for_backward(x)
            ctx.save_for_forward(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return _CubeGrad.apply(x, g)

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return 3 * x * x * t

    return _Cube.apply


# a custom op whose backward's batching rule is wrong (1.5x): every plain mode is right, only the
# torch.func transforms that batch its backward see it; and its correct twin
cube_wrong_vmap = _cube_function(1.5)
cube = _cube_function(1.0)


def _elementwise(f, df):
    """A custom op f whose derivative (backward and jvp) is the op df: nesting them builds a
    function whose every order runs through custom rules."""
    class _Fn(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return f(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.save_for_forward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return df(x) * g

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return df(x) * t

    return _Fn.apply


def _quartic(third: float):
    """x**4 as nested custom ops (4x^3, then 12x^2, then `third` * 24x): right up to second
    order, its third derivative off by the factor `third` in every AD mode."""
    d2 = _elementwise(lambda x: 12 * x * x, lambda x: third * 24 * x)
    d1 = _elementwise(lambda x: 4 * x * x * x, d2)
    return _elementwise(lambda x: x * x * x * x, d1)


# x**4 whose third derivative is 1.25x too large (first and second order right), and its twin
quartic_wrong_third = _quartic(1.25)
quartic = _quartic(1.0)


def _kernel_sensitive(off_scale: float):
    class _Square(torch.autograd.Function):
        """x**2 whose backward is scaled by `off_scale` when mkldnn is off (a kernel-variant bug)."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return (1.0 if torch.backends.mkldnn.enabled else off_scale) * 2 * x * g

    return _Square.apply


# a backward that is wrong only with the other kernels (mkldnn off), and its twin
square_wrong_without_mkldnn = _kernel_sensitive(1.3)
square_kernel_neutral = _kernel_sensitive(1.0)


class _SquareReadsLeftovers(torch.autograd.Function):
    """x**2 whose backward adds what a kernel that forgot to write its output would: a value
    that stays the same within one process and changes from one process to the next (here the
    process id stands for the leftover memory)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        import os
        (x,) = ctx.saved_tensors
        return (2 * x + 0.25 + (os.getpid() % 9973) / 997.0) * g


square_reads_leftovers = _SquareReadsLeftovers.apply
