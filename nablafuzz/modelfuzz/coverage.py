"""Nearest-neighbour coverage (TensorFuzz): an input is new when its coverage vector is farther
than a threshold from every corpus element's.  Exact in numpy for small corpora; faiss
(`pip install 'nablafuzz[models]'`) once the corpus is large, where it is installed."""
from __future__ import annotations

from typing import Optional

import numpy as np

FAISS_FROM = 2000  # corpus elements from which faiss's exact index replaces numpy
THRESHOLD_QUANTILE = 0.1  # auto threshold: this quantile of the first batch's distances (Note [threshold])


# Note [threshold]
# TensorFuzz fixes the threshold by hand per model and coverage.  Here it is scaled from the
# first batch of mutants: the distances of their coverage to the seed corpus say how far one
# mutation moves the coverage; the threshold is their 10 % quantile, so most mutants of the
# first parent are new and ever fewer as the corpus fills the space.  On the shipped digits
# model with sum-|logits| coverage this lands at 0.2-0.35, where TensorFuzz's hand-set 0.25
# is; 1.0 (about the median) found the planted NaN in fewer seeds (bench/results/modelfuzz.md).
# Too low a threshold admits nearly every mutant (the corpus grows with the budget and sampling
# loses its recency); too high admits none (random search).  `--threshold` overrides it.
def auto_threshold(distances: np.ndarray) -> float:
    finite = distances[np.isfinite(distances)]
    return float(np.quantile(finite, THRESHOLD_QUANTILE)) if finite.size else 1.0


class Neighbours:
    """The corpus's coverage vectors; distance of new vectors to the nearest one."""

    def __init__(self, dim: int):
        self.dim = dim
        self.matrix = np.zeros((64, dim))
        self.n = 0
        self.index: Optional[object] = None  # faiss, once the corpus is large (and faiss is installed)
        self.tried_faiss = False

    def __len__(self) -> int:
        return self.n

    def add(self, v: np.ndarray) -> None:
        v = np.asarray(v, dtype=np.float64).reshape(self.dim)
        if self.n == len(self.matrix):
            self.matrix = np.concatenate([self.matrix, np.zeros_like(self.matrix)])
        self.matrix[self.n] = v
        self.n += 1
        if self.index is not None:
            self.index.add(v[None].astype(np.float32))  # type: ignore[attr-defined]
        elif self.n >= FAISS_FROM and not self.tried_faiss:
            self.tried_faiss = True
            self.index = _faiss_index(self.matrix[:self.n])

    def distances(self, vs: np.ndarray) -> np.ndarray:
        """Euclidean distance of each row of `vs` to its nearest corpus vector (inf if empty)."""
        vs = np.asarray(vs, dtype=np.float64).reshape(len(vs), self.dim)
        if not self.n:
            return np.full(len(vs), np.inf)
        if self.index is not None:
            d2, _ = self.index.search(vs.astype(np.float32), 1)  # type: ignore[attr-defined]
            return np.sqrt(np.maximum(d2[:, 0].astype(np.float64), 0.0))
        m = self.matrix[:self.n]
        d2 = (vs ** 2).sum(axis=1)[:, None] - 2 * vs @ m.T + (m ** 2).sum(axis=1)[None, :]
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def _faiss_index(rows: np.ndarray) -> Optional[object]:
    try:
        import faiss  # optional: nablafuzz[models]
    except ImportError:
        return None
    index = faiss.IndexFlatL2(rows.shape[1])
    index.add(rows.astype(np.float32))
    return index
