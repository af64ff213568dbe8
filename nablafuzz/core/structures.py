"""Structured matrices and vectors: the inputs linear algebra and selection ops are defined on.

An argument's `structure` (spec field) makes the generator draw values with that structure in
the last two axes (every batch element its own), or along the last axis for vector structures.
Random N(0, 1) tensors are never triangular with non-zero off-diagonals, positive definite,
rank-deficient or sorted, so without this the ops that need them are never reached, or only
through a seed sample.

`projection` names the tangent space a structure's contract implies: an op defined on
symmetric input (eigh, cholesky) reads one triangle, so a derivative along a non-symmetric
direction has no agreed value; the worker symmetrises such an input inside the differentiated
call (Note [structured directions]), which makes reverse mode, forward mode and finite
differences all see directions that keep the structure.  Worker-safe: numpy only.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

Shape = Tuple[int, ...]
Draw = Callable[[np.random.Generator, Shape], np.ndarray]


def _normal(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return rng.standard_normal(shape)


def _diag_away_from_zero(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    d = rng.uniform(0.5, 2.0, shape[:-1]) * np.where(rng.random(shape[:-1]) < 0.5, -1.0, 1.0)
    return d[..., :, None] * np.eye(shape[-1])


def _lower(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Lower triangular with non-zero off-diagonals and a diagonal away from 0 (a
    well-conditioned triangular factor, as solvers take)."""
    strict = np.tril(_normal(rng, shape), -1)
    return strict + _diag_away_from_zero(rng, shape)


def _upper(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return np.swapaxes(_lower(rng, shape), -1, -2)


def _symmetric(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    a = _normal(rng, shape)
    return (a + np.swapaxes(a, -1, -2)) / 2


def _orthogonal(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    q, r = np.linalg.qr(_normal(rng, shape))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def _eigen(rng: np.random.Generator, shape: Shape, values: np.ndarray) -> np.ndarray:
    q = _orthogonal(rng, shape)
    return (q * values[..., None, :]) @ np.swapaxes(q, -1, -2)


def _spd(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Symmetric positive definite, eigenvalues in [0.5, 3]; sometimes two of them equal (a tie,
    where eigenvector derivatives are singular but the matrix function is not)."""
    lam = rng.uniform(0.5, 3.0, shape[:-1])
    if shape[-1] >= 2 and rng.random() < 0.2:
        lam[..., 1] = lam[..., 0]
    return _eigen(rng, shape, lam)


def _singular_values(rng: np.random.Generator, shape: Shape, smallest: float, rank: int) -> np.ndarray:
    k = min(shape[-2:])
    s = np.sort(rng.uniform(0.5, 3.0, shape[:-2] + (k,)))[..., ::-1].copy()
    s[..., rank:] = smallest
    u = _orthogonal(rng, shape[:-1] + (shape[-2],))[..., :, :k]
    v = _orthogonal(rng, shape[:-2] + (shape[-1], shape[-1]))[..., :, :k]
    return (u * s[..., None, :]) @ np.swapaxes(v, -1, -2)


def _rank_deficient(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    k = min(shape[-2:])
    return _singular_values(rng, shape, 0.0, max(0, k - 1 - int(rng.integers(0, max(1, k - 1)))))


def _near_singular(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    k = min(shape[-2:])
    return _singular_values(rng, shape, float(10.0 ** rng.uniform(-8, -4)), k - 1)


def _permutation(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    n = shape[-1]
    out = np.zeros(shape)
    for index in np.ndindex(*shape[:-2]):
        out[index][np.arange(n), rng.permutation(n)] = 1.0
    return out


def _sorted(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return np.sort(_normal(rng, shape), axis=-1)


def _unique(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    n = int(np.prod(shape))
    return (rng.permutation(n) + rng.uniform(0.1, 0.9, n)).reshape(shape) / max(n, 1) * 4 - 2


MATRIX: Dict[str, Draw] = {
    "lower_triangular": _lower, "upper_triangular": _upper, "symmetric": _symmetric, "spd": _spd,
    "orthogonal": _orthogonal, "rank_deficient": _rank_deficient, "near_singular": _near_singular,
    "permutation": _permutation,
}
VECTOR: Dict[str, Draw] = {"sorted": _sorted, "unique": _unique}
STRUCTURES = tuple(MATRIX) + tuple(VECTOR)
SQUARE = ("lower_triangular", "upper_triangular", "symmetric", "spd", "orthogonal", "permutation")
# structure -> the projection kept inside the call: the tangent space the op's contract implies
PROJECTIONS = {"symmetric": "symmetric", "spd": "symmetric", "lower_triangular": "lower", "upper_triangular": "upper"}


def min_rank(structure: str) -> int:
    return 2 if structure in MATRIX else 1 if structure in VECTOR else 0


def fit_shape(structure: str, shape: Shape) -> Shape:
    """`shape` made fit for `structure`: at least a matrix (vector) and square where needed; a
    zero-sized dimension stays (an empty structured tensor is still well defined)."""
    shape = tuple(shape)
    while len(shape) < min_rank(structure):
        shape = (max(shape[0] if shape else 2, 1),) + shape
    if structure in SQUARE:
        shape = shape[:-1] + (shape[-2],)
    return shape


def draw(structure: str, rng: np.random.Generator, shape: Shape, dtype: str) -> np.ndarray:
    """Values of `shape` (already fit) with `structure`, in `dtype`."""
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    make = MATRIX.get(structure) or VECTOR[structure]
    with np.errstate(over="ignore"):
        return make(rng, shape).astype(dtype)


# Note [structured directions]
# eigh, cholesky and the other ops on symmetric matrices read one triangle: their derivative
# along a direction that breaks the symmetry is a convention (PyTorch and JAX symmetrise the
# gradient, finite differences along a full direction see one triangle move).  Judging that
# would report every correct library.  So the differentiated function becomes f(sym(X)) with
# sym(X) = (X + X^T)/2: reverse mode then gives sym(grad f), forward mode and finite differences
# move along sym(u), and <sym(grad f), u> = <grad f, sym(u)>: every scenario measures the
# derivative along a symmetric direction, which the op's contract defines.  X itself is
# symmetric, so the value is unchanged.  Triangular factors are masked the same way
# (f(tril(X))): an op that takes a factor reads one triangle, but a forward rule may still use
# the tangent of the other (PyTorch's triangular_solve), so directions stay in the triangle.
def symmetrised(x, swap: Callable) -> object:
    """(x + x^T) / 2 over the last two axes, with `swap` the library's transpose of those axes;
    works on numpy arrays and on any library's tensors (plain arithmetic)."""
    return (x + swap(x)) * 0.5


def projected_value(kind: str, x, swap: Callable, triangle: Callable):
    """`x` projected as `kind` says ("symmetric", "lower", "upper"); `triangle(x, lower)` is the
    library's tril/triu."""
    return symmetrised(x, swap) if kind == "symmetric" else triangle(x, kind == "lower")


# ---- structures a docstring states -------------------------------------------------------------

# Note [structures from docstrings]
# What an API documents about its input's structure ("a symmetric positive-definite matrix A",
# "`b` must be upper triangular") is what a probe cannot learn: a random matrix works in the
# call and gives a derivative the op's contract never promised (a Cholesky factor of a
# non-symmetric matrix).  A phrase counts for a parameter only where the sentence ties it to one:
# the phrase then "matrix P" / "matrices P", or "P is (a) <phrase>", or, in the summary
# sentence, "of a <phrase> matrix" (the op's first parameter).  Sentences about what the op
# returns ("Returns the lower triangular part") never count, nor do conditional ones ("A is
# assumed to be Hermitian if hermitian=True": a flag's contract, not the input's) but for a
# triangle, whose side a flag picks (the generator follows `upper=`/`lower=`).  Strongest
# structure first.  On PyTorch's operators it finds the structures of the hand-kept OpInfo
# table (torch_specs.OPINFO_STRUCTURES) but for the deprecated torch.cholesky spellings.
_PHRASES = (
    ("spd", r"(?:(?:symmetric|hermitian)[ -]+)?positive[ -]+definite"),
    ("lower_triangular", r"lower[ -]+triangular"),
    ("upper_triangular", r"upper[ -]+triangular"),
    ("symmetric", r"(?:real[ -]+)?(?:symmetric|hermitian)"),
)
# the phrase describes what the op returns: "Returns the lower triangular part", "output is ..."
_ABOUT_OUTPUT = re.compile(r"\b(?:returns?|returned|outputs?|results?|gives|computes?)\s+(?:(?:the|a|an|is)\s+)?"
                           r"(?:[\w-]+\s+)?$", re.I)
# "A is assumed to be Hermitian if hermitian=True": a structure a flag switches on, not the input's;
# but "A is upper triangular if upper is True" ("whether L is lower or upper triangular") names
# the side of a triangle the input always is
_CONDITIONAL = re.compile(r"\b(?:if|when|whether|unless)\b", re.I)
_SIDE_FLAG = re.compile(r"\b(?:if|when)\s+(?:upper|lower|uplo)\b|\blower\b[\s\S]*\bupper\b|\bupper\b[\s\S]*\blower\b", re.I)
TRIANGLES = ("lower_triangular", "upper_triangular")
# "a Hermitian tridiagonal matrix" (given by its diagonals), "a symmetric banded matrix": other inputs
_NOT_DENSE = r"(?!(?:tridiagonal|banded|band|sparse|block|toeplitz|circulant)\b)"
_SUMMARY = r"\b(?:of|for|on|given)\s+(?:a|an|the)\s+(?:batch(?:es)?\s+of\s+)?(?:[\w-]+\s+){{0,3}}?{phrase}\s+{not_dense}(?:[\w-]+\s+)?matri"


def _sentences(doc: str) -> Sequence[str]:
    text = re.sub(r"[`*]|:\w+:", "", doc)
    return [s.strip() for s in re.split(r"(?<=[.;:])\s+|\n\s*\n", text) if s.strip()]


def doc_structures(doc: str, params: Sequence[str]) -> Dict[str, str]:
    """Parameter name -> the structure the docstring states for it (Note [structures from
    docstrings]); `params` in signature order, the first taken by the summary sentence."""
    out: Dict[str, str] = {}
    names = [p for p in params if p]
    alt = "|".join(re.escape(p) for p in sorted(names, key=len, reverse=True))
    sentences = _sentences(doc)
    for k, sentence in enumerate(sentences):
        for structure, phrase in _PHRASES:
            for m in re.finditer(phrase, sentence, re.I):
                flagged = _CONDITIONAL.search(sentence)
                if _ABOUT_OUTPUT.search(sentence[:m.start()]) or flagged and not (
                        structure in TRIANGLES and _SIDE_FLAG.search(sentence)):
                    continue
                who = _tied(sentence, m, alt) if alt else None
                if who is None and k == 0 and names and re.search(_SUMMARY.format(phrase=phrase, not_dense=_NOT_DENSE), sentence, re.I):
                    who = names[0]
                if who is not None and who not in out:
                    out[who] = structure
    return out


def signature_params(doc: str) -> Sequence[str]:
    """Parameter names of a docstring that starts with its signature (`linalg.cholesky(A, *,
    upper=False, out=None) -> Tensor`, as PyTorch's builtins document themselves)."""
    m = re.match(r"[\w.]+\(([^)]*)\)", doc.strip())
    names = [p.split("=")[0].strip() for p in m.group(1).split(",")] if m else []
    return [n for n in names if n.isidentifier()]


def _tied(sentence: str, m: "re.Match[str]", alt: str) -> Optional[str]:
    """The parameter the sentence ties the phrase at `m` to, or None."""
    after = re.match(rf"\s*{_NOT_DENSE}(?:[\w-]+\s+)?matri(?:x|ces)\s+\(?({alt})\b", sentence[m.end():])
    if after:
        return after.group(1)
    before = re.search(rf"\b({alt})\s+(?:is|are|must be|should be|is assumed to be|is expected to be)\s+"
                       rf"(?:(?:a|an)\s+)?(?:batch(?:es)? of\s+)?$", sentence[:m.start()])
    return before.group(1) if before else None
