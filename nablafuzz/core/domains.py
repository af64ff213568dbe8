"""Value domains: typical values plus boundary values placed on purpose.

AD bugs concentrate at exact zeros, signed zeros, ties, tiny and huge magnitudes,
subnormals and domain edges, so about a third of generated tensors get some of those.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np


@dataclass(frozen=True)
class Domain:
    name: str
    typical: Callable[[np.random.Generator, int], np.ndarray]
    boundary: Callable[[np.dtype], Tuple[float, ...]]
    allows_ties: bool = True
    zero: bool = True  # 0 is in the domain (a cross trial may flush a near-subnormal value to it)


def _tiny(dt: np.dtype) -> float:
    return float(np.finfo(dt).tiny)


def _sub(dt: np.dtype) -> float:
    return float(np.finfo(dt).smallest_subnormal)


def _big(dt: np.dtype) -> float:
    return float(np.finfo(dt).max) ** 0.5


_SCALES = np.array([0.1, 1.0, 1.0, 3.0, 30.0])


def _mixed_scale(rng: np.random.Generator, n: int) -> np.ndarray:
    scale = rng.choice(_SCALES, size=n)
    return rng.standard_normal(n) * scale


def _real_edges(dt: np.dtype) -> Tuple[float, ...]:
    return (0.0, -0.0, 1.0, -1.0, _tiny(dt), -_tiny(dt), _sub(dt), _big(dt), -_big(dt), 20.0, -20.0, 40.0, -40.0)


def _pos_edges(dt: np.dtype) -> Tuple[float, ...]:
    return (_tiny(dt), _sub(dt), 1.0, _big(dt), 1e-8, 40.0)


DOMAINS: Dict[str, Domain] = {d.name: d for d in (
    Domain("real", _mixed_scale, _real_edges),
    Domain("nonzero", lambda r, n: np.where(r.random(n) < .5, -1, 1) * (0.1 + np.abs(_mixed_scale(r, n))),
           lambda dt: (1.0, -1.0, _tiny(dt), -_tiny(dt), _big(dt), 1e-8), zero=False),
    Domain("positive", lambda r, n: np.exp(r.standard_normal(n) * 1.5), _pos_edges, zero=False),
    Domain("nonnegative", lambda r, n: np.abs(_mixed_scale(r, n)), lambda dt: (0.0,) + _pos_edges(dt)),
    Domain("unit_interval", lambda r, n: r.random(n), lambda dt: (0.0, 1.0, 0.5, _tiny(dt))),
    Domain("open_unit_interval", lambda r, n: 0.01 + 0.98 * r.random(n), lambda dt: (0.5, 1e-6, 1 - 1e-6),
           zero=False),
    Domain("symmetric_unit", lambda r, n: 0.98 * (2 * r.random(n) - 1), lambda dt: (0.0, -0.0, 0.999, -0.999)),
    Domain("above_minus_one", lambda r, n: np.exp(r.standard_normal(n)) - 0.9,
           lambda dt: (0.0, -0.0, -0.999, _tiny(dt), 1e6)),
    Domain("integer_valued", lambda r, n: np.round(_mixed_scale(r, n)), lambda dt: (0.0, 1.0, -1.0, 2.0)),
    Domain("moderate", lambda r, n: rng_uniform(r, n, -3, 3), lambda dt: (0.0, -0.0, 1.0, -1.0)),
)}


def rng_uniform(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    return low + (high - low) * rng.random(n)


def sample(domain: str, rng: np.random.Generator, shape: Tuple[int, ...], dtype: str,
           edge_rate: float = 0.35) -> np.ndarray:
    """Values of `domain` in `dtype`; with probability `edge_rate`, some are boundary values or ties."""
    d = DOMAINS[domain]
    dt = np.dtype(dtype)
    n = math.prod(shape)
    with np.errstate(over="ignore"):
        x = d.typical(rng, n).astype(dt)
        if n and rng.random() < edge_rate:
            edges = np.array(d.boundary(dt), dtype=dt)
            k = int(rng.integers(1, n + 1))
            where = rng.choice(n, size=k, replace=False)
            x[where] = edges[rng.integers(0, len(edges), size=k)]
        if n >= 2 and d.allows_ties and rng.random() < 0.15:
            i, j = rng.choice(n, size=2, replace=False)
            x[j] = x[i]
    return x.reshape(shape)
