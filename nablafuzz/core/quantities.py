"""What is computed, by name: the quantities (scenario ids), their derivative order, which
derivative rule each one runs, and the seeded directions every process derives alike.

Shared by the worker (which computes them, worker/scenarios.py) and the orchestrator (which
compares them).  Worker-safe: Python 3.10, numpy 1.26.
"""
from __future__ import annotations

import functools
import math
from typing import Tuple

import numpy as np

ENTRY_POINTS = {"jacrev": 1, "jacfwd": 1, "vmap": 1, "graph": 1, "hessian": 2}  # name -> derivative order
STEP = 2.0 ** -10  # the finite-difference step along a direction (Richardson halves it)
FD_KINK = "kink"  # the error type of a finite-difference reference that crossed a kink (unusable)

FIRST_ORDER = ("rev", "fwd")
REFERENCE = "fd"
SECOND_ORDER = tuple(f"{outer}.{inner}" for outer in ("rev", "fwd", "fd") for inner in FIRST_ORDER)
ALL = ("direct",) + FIRST_ORDER + (REFERENCE,) + SECOND_ORDER
# opt-in (--third-order, on in the nightly profile for specs with second order): third order by
# composition, judged against finite differences of the VJP of VJP along a fourth direction z
THIRD_ORDER = ("rev.rev.rev", "fwd.rev.rev", "rev.fwd.rev", "fwd.fwd.fwd", "fd.rev.rev")
COMPILED = "jit"  # opt-in: the VJP of the library's compiled function (torch.compile, jax.jit, ...)
# opt-in (--kernels): the call and its VJP in a second worker running the library's other kernels
# (TensorFlow with oneDNN on, as users run it; torch with mkldnn off); runtime/runner.py
KERNELS = "kernels"
NAMES = {"rev": "VJP", "fwd": "JVP", "fd": "finite differences", "direct": "direct call",
         "mp": "50-digit mpmath reference", COMPILED: "compiled VJP", KERNELS: "VJP with the other kernels", "jacrev": "jacrev Jacobian", "jacfwd": "jacfwd Jacobian",
         "vmap": "per-sample VJP under vmap", "graph": "VJP of the graph function", "hessian": "hessian of <v, f>"}
ENTRY = tuple(ENTRY_POINTS)  # opt-in (--entry-points): the transforms users call (libraries/entry_points.py)


# the plain mode whose derivative rule each shadowing scenario runs (Note [one vote per
# implementation] in compare.py)
IMPLEMENTS = {"jacrev": "rev", "vmap": "rev", "graph": "rev", COMPILED: "rev", KERNELS: "rev", "jacfwd": "fwd",
              "hessian": "fwd.rev"}


def implementation(scenario: str) -> str:
    return IMPLEMENTS.get(scenario, scenario)


def order(scenario: str) -> int:
    if scenario in ENTRY_POINTS:
        return ENTRY_POINTS[scenario]
    return 0 if scenario == "direct" else scenario.count(".") + 1


def describe(scenario: str) -> str:
    """'fwd.rev' -> 'JVP of VJP'."""
    return " of ".join(NAMES[p] for p in scenario.split("."))


def is_reference(scenario: str) -> bool:
    """Finite differences, or the 50-digit reference of an elementwise function ("mp", reference.py)."""
    return scenario.split(".")[0] in (REFERENCE, "mp")


def direction(seed: int, tag: str, index: int, shape: Tuple[int, ...], dtype: str) -> np.ndarray:
    """A reproducible direction with entries of magnitude in [0.5, 1.5) and random sign.

    Built only from PCG64's raw doubles (a stable stream across numpy versions), so the worker
    on numpy 1.26 and the orchestrator on numpy 2 derive identical directions.  Entries are
    multiples of 2^-10, exact in float16, float32 and float64 alike, so the direction in any
    dtype is its float64 one cast (a fresh array each call).
    """
    shape = tuple(shape)
    draw = _remembered if math.prod(shape) <= REMEMBER else _direction64
    return draw(seed, tag, index, shape).astype(dtype)


REMEMBER = 4096  # the largest direction remembered (a model's weights are drawn each time)


def _direction64(seed: int, tag: str, index: int, shape: Tuple[int, ...]) -> np.ndarray:
    salt = sum((i + 1) * ord(c) for i, c in enumerate(tag))
    rng = np.random.Generator(np.random.PCG64([seed & 0xFFFFFFFF, seed >> 32, salt, index]))
    n = math.prod(shape)
    mag, sign = rng.random(n), rng.random(n)
    out = (np.where(sign < 0.5, -1.0, 1.0) * (0.5 + np.floor(mag * 1024) / 1024)).reshape(shape)
    out.flags.writeable = False
    return out


# `direction` in float64, remembered (at most 256 x 4096 entries): a trial derives each of its
# directions in its own dtype and in float64 (the references), in the worker and again when it
# is judged, and seeding PCG64 is most of the cost (about 0.1 ms a direction).
_remembered = functools.lru_cache(maxsize=256)(_direction64)
