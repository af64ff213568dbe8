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
