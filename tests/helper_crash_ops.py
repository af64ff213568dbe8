"""numpy_ref ops that kill, hang, flood or starve the worker (named `helper_crash_ops:NAME`)."""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import OPS, Op

_SIN = OPS["sin"]


def _segfault(xs, vs):
    os.kill(os.getpid(), signal.SIGSEGV)
    return [np.cos(xs[0]) * vs[0]]  # not reached


def _mute_then_hang(xs, vs):
    os.closerange(3, 1024)  # the protocol pipe among them: the orchestrator reads end-of-file
    time.sleep(60)
    return [np.cos(xs[0]) * vs[0]]  # not reached


def _hang(xs, us):
    time.sleep(60)
    return [np.cos(xs[0]) * us[0]]  # not reached


HANG_AT = 1.2345678


def _hang_at(xs, us):
    if np.any(np.asarray(xs[0]) == HANG_AT):
        time.sleep(60)
    return [np.cos(xs[0]) * us[0]]


def _chatty(x):
    print("CHATTY-PRINT " * 40)  # Python-level stdout
    sys.stdout.flush()
    os.write(1, b"CHATTY-FD1\n")  # C-level file descriptor 1
    return np.sin(x)


def _hog(x):
    np.empty(3 * 2 ** 30, dtype=np.uint8)  # 3 GiB of address space
    return np.sin(x)


# sin whose reverse mode dies of SIGSEGV (a native crash)
segv_vjp = Op(f=np.sin, jvp=_SIN.jvp, vjp=_segfault, hess=_SIN.hess)
# sin whose reverse mode closes the worker's output and then hangs (as a process stuck aborting)
mute_vjp = Op(f=np.sin, jvp=_SIN.jvp, vjp=_mute_then_hang, hess=_SIN.hess)
# sin whose forward mode never returns
hang_jvp = Op(f=np.sin, jvp=_hang, vjp=_SIN.vjp, hess=_SIN.hess)
# sin whose forward mode never returns where an input is exactly HANG_AT (no random draw is)
hang_at_jvp = Op(f=np.sin, jvp=_hang_at, vjp=_SIN.vjp, hess=_SIN.hess)
# sin that prints to stdout on every call
chatty_sin = Op(f=_chatty, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)
# sin that asks for far more memory than the worker's limit
hog_sin = Op(f=_hog, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)


def _slow(xs, us):
    time.sleep(3)
    return [np.cos(xs[0]) * us[0]]


# sin whose forward mode takes 3 s (over a 2 s trial timeout, well under 4x of it)
slow_jvp = Op(f=np.sin, jvp=_slow, vjp=_SIN.vjp, hess=_SIN.hess)


def _float32_only(x):
    if np.asarray(x).dtype == np.float64:
        raise TypeError("no float64 kernel")  # as tf.raw_ops.SparseMatMul refuses float64
    return np.sin(x)


# sin with float32 kernels only: the float64 references cannot be computed
float32_only_sin = Op(f=_float32_only, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)


def _compiling(name):
    """sin whose first call in a worker process takes 1.5 s, as a JAX special function's first
    trial spends compiling; `name` keeps each op's first call its own."""
    first = [True]

    def f(x):
        if first[0]:
            first[0] = False
            time.sleep(1.5)
        return np.sin(x)
    f.__name__ = name
    return Op(f=f, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)


compiling_sin_a, compiling_sin_b, compiling_sin_c = (_compiling(n) for n in "abc")
