"""The fuzz loop (TensorFuzz's design), library-free: the worker evaluates, this decides.

A corpus starts from seed inputs; each round samples a parent with recency bias (uniformly
among the newest five elements and one uniformly drawn element), makes `batch` mutants by
Gaussian noise (clipped to the model's input range, and to an L-infinity ball around the
parent's seed input when `linf` is set), has the worker evaluate them, records objective hits
and adds to the corpus each mutant whose coverage is farther than the threshold from every
element's (coverage.py).  `random` mutates the seed inputs alone, with no corpus: the same
budget without guidance.  A hit is kept once the same input hits again on its own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..specs.models import SIGMA
from .client import Batch
from .coverage import Neighbours, auto_threshold

RECENT = 5  # parents come from the newest elements and one uniformly drawn (TensorFuzz)
CONFIRM_TRIES = 3  # hitting examples of a batch re-run alone before the batch's hits are dropped

Evaluate = Callable[[np.ndarray, np.ndarray, Sequence[int]], Batch]


@dataclass(frozen=True)
class Settings:
    objectives: Tuple[str, ...] = ("nonfinite",)
    coverage: str = "sumabs"
    mutations: int = 300_000
    batch: int = 100
    sigma: float = SIGMA  # the model spec's, as `nablafuzz modelfuzz` passes it
    linf: Optional[float] = None
    threshold: Optional[float] = None  # None: scaled from the first batch (Note [threshold])
    seed: int = 0
    seed_inputs: int = 10
    random: bool = False
    seconds: Optional[float] = None  # wall-clock limit


@dataclass(frozen=True)
class Hit:
    objective: str
    mutation: int  # mutations made when it was found; also its direction seed
    x: np.ndarray
    y: int
    root: int  # index of its seed input
    detail: Tuple[Tuple[str, float], ...]


@dataclass(frozen=True)
class Run:
    settings: Settings
    mutations: int
    seconds: float
    threshold: float
    corpus: int
    curve: Tuple[Tuple[int, int, int], ...]  # (mutations, corpus size, objectives hit) after each batch
    hits: Tuple[Hit, ...]
    roots: Tuple[int, ...]  # the seed inputs used (indices into the builder's seeds)


@dataclass
class _Element:
    x: np.ndarray
    y: int
    root: int


@dataclass
class _State:
    elements: List[_Element] = field(default_factory=list)
    hits: Dict[str, Hit] = field(default_factory=dict)
    curve: List[Tuple[int, int, int]] = field(default_factory=list)


def example(batch: Batch, i: int) -> Tuple[Tuple[str, float], ...]:
    """The numbers behind example i's result, for its report."""
    return tuple(sorted((k, float(v[i])) for k, v in batch.detail.items() if np.ndim(v) == 1 and len(v) > i))


def fuzz(evaluate: Evaluate, seeds_x: np.ndarray, seeds_y: np.ndarray, box: Tuple[float, float],
         s: Settings, progress: Callable[[int, int, int], None] = lambda *a: None) -> Run:
    rng = np.random.default_rng(s.seed)
    roots = tuple(int(i) for i in np.sort(rng.choice(len(seeds_x), min(s.seed_inputs, len(seeds_x)), replace=False)))
    start, state = time.monotonic(), _State()
    first = evaluate(seeds_x[list(roots)], seeds_y[list(roots)], [0] * len(roots))
    near = Neighbours(first.coverage.shape[1])
    for i, r in enumerate(roots):
        state.elements.append(_Element(seeds_x[r].astype(np.float32), int(seeds_y[r]), r))
        near.add(first.coverage[i])
    _record(evaluate, first, state, seeds_x[list(roots)], [int(seeds_y[r]) for r in roots], list(roots), 0)
    threshold, made = s.threshold, 0
    while made < s.mutations and len(state.hits) < len(s.objectives):
        if s.seconds is not None and time.monotonic() - start > s.seconds:
            break
        parent = _parent(rng, state.elements, len(roots), s.random)
        n = min(s.batch, s.mutations - made)
        xs = _mutants(rng, parent.x, seeds_x[parent.root], n, box, s)
        ids = list(range(made + 1, made + n + 1))
        b = evaluate(xs, np.full(n, parent.y), ids)
        made += n
        _record(evaluate, b, state, xs, [parent.y] * n, [parent.root] * n, made)
        if not s.random:
            d = near.distances(b.coverage)
            if threshold is None:
                threshold = auto_threshold(d)
            for i in np.flatnonzero(d > threshold):
                if near.distances(b.coverage[i:i + 1])[0] > threshold:  # far from this batch's earlier additions too
                    near.add(b.coverage[i])
                    state.elements.append(_Element(xs[i], parent.y, parent.root))
        state.curve.append((made, len(state.elements), len(state.hits)))
        progress(made, len(state.elements), len(state.hits))
    return Run(s, made, time.monotonic() - start, float(threshold or 0.0), len(state.elements), tuple(state.curve),
               tuple(state.hits[o] for o in s.objectives if o in state.hits), roots)


def _parent(rng: np.random.Generator, elements: List[_Element], roots: int, random: bool) -> _Element:
    if random:
        return elements[int(rng.integers(roots))]
    pool = elements[-RECENT:] + [elements[int(rng.integers(len(elements)))]]
    return pool[int(rng.integers(len(pool)))]


def _mutants(rng: np.random.Generator, x: np.ndarray, root: np.ndarray, n: int, box: Tuple[float, float],
             s: Settings) -> np.ndarray:
    xs = x[None] + rng.normal(0.0, s.sigma, size=(n,) + x.shape)
    if s.linf is not None:
        xs = np.clip(xs, root - s.linf, root + s.linf)
    return np.clip(xs, box[0], box[1]).astype(np.float32)


def _record(evaluate: Evaluate, b: Batch, state: _State, xs: np.ndarray, ys: Sequence[int], roots: Sequence[int],
            made: int) -> None:
    """Each objective's first hit in the batch whose input hits again alone."""
    for objective, flags in b.hits.items():
        if objective in state.hits:
            continue
        for i in np.flatnonzero(flags)[:CONFIRM_TRIES]:
            mutation = made - len(xs) + int(i) + 1 if made else 0
            again = evaluate(xs[i:i + 1], np.array([ys[i]]), [mutation])
            if again.hits.get(objective, np.zeros(1, bool))[0]:
                state.hits[objective] = Hit(objective, mutation, xs[i].copy(), int(ys[i]), int(roots[i]),
                                            example(again, 0))
                break
