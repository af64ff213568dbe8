"""numpy_ref ops for the structured-input tests (named `helper_structured_ops:NAME`)."""
from __future__ import annotations

import numpy as np

from nablafuzz.libraries.numpy_ref.adapter import Op


def _is_lower_factor(x: np.ndarray) -> bool:
    """Lower triangular with a non-zero strictly lower part (never drawn by N(0, 1) values)."""
    return x.ndim >= 2 and np.array_equal(x, np.tril(x)) and bool(np.any(np.tril(x, -1) != 0))


def _square_sum_vjp(wrong_on_lower: bool):
    def vjp(xs, vs):
        x = xs[0]
        g = 2 * x * vs[0]
        return [1.5 * g if wrong_on_lower and _is_lower_factor(x) else g]
    return vjp


def _f(x):
    return x * x


def _jvp(xs, us):
    return [2 * xs[0] * us[0]]


def _hess(xs, us, vs):
    return [2 * us[0] * vs[0]]


# x*x whose reverse mode is 1.5x too large only for a lower-triangular factor
square_wrong_on_lower = Op(f=_f, jvp=_jvp, vjp=_square_sum_vjp(True), hess=_hess)
# the correct twin
square = Op(f=_f, jvp=_jvp, vjp=_square_sum_vjp(False), hess=_hess)


def _from_lower(x):
    """The symmetric matrix an eigh-like op reads: the lower triangle, mirrored."""
    return np.tril(x) + np.swapaxes(np.tril(x, -1), -1, -2)


# sum of squares of the symmetric matrix read from the lower triangle, whose derivatives follow
# the symmetric convention of eigh-like ops (the gradient is 2S, a symmetric matrix): right along
# symmetric directions, which is the op's contract, and unlike finite differences along others
sym_sq = Op(f=lambda x: np.sum(_from_lower(x) ** 2, axis=(-1, -2)),
            jvp=lambda xs, us: [np.sum(2 * _from_lower(xs[0]) * us[0], axis=(-1, -2))],
            vjp=lambda xs, vs: [2 * _from_lower(xs[0]) * vs[0][..., None, None]],
            hess=lambda xs, us, vs: [2 * us[0] * vs[0][..., None, None]])


def _take_vjp(accumulate: bool):
    def vjp(xs, vs, idx):
        g = np.zeros_like(xs[0])
        if accumulate:
            np.add.at(g, np.asarray(idx), vs[0])
        else:
            g[np.asarray(idx)] = vs[0]  # the classic bug: a duplicated index keeps one contribution
        return [g]
    return vjp


def _take_op(accumulate: bool) -> Op:
    return Op(f=lambda x, idx: x[np.asarray(idx)], jvp=lambda xs, us, idx: [us[0][np.asarray(idx)]],
              vjp=_take_vjp(accumulate), hess=lambda xs, us, vs, idx: [np.zeros_like(xs[0])])


# x[idx] whose reverse mode drops repeated contributions of a duplicated index, and its correct twin
take_dup_bug = _take_op(False)
take = _take_op(True)


def _where_vjp(wrong_for_uint32: bool):
    def vjp(xs, vs, cond):
        c = np.asarray(cond).astype(bool)
        scale = 2.0 if wrong_for_uint32 and np.asarray(cond).dtype == np.uint32 else 1.0
        return [scale * np.where(c, vs[0], 0.0), np.where(c, 0.0, vs[0])]
    return vjp


def _where_op(wrong: bool) -> Op:
    return Op(f=lambda x, y, cond: np.where(np.asarray(cond).astype(bool), x, y),
              jvp=lambda xs, us, cond: [np.where(np.asarray(cond).astype(bool), us[0], us[1])],
              vjp=_where_vjp(wrong), hess=lambda xs, us, vs, cond: [np.zeros_like(xs[0]), np.zeros_like(xs[1])])


# where(cond, x, y) whose reverse mode is wrong only for a uint32 predicate, and its correct twin
where_uint32_bug = _where_op(True)
where = _where_op(False)


def _reduced(g: np.ndarray, shape, first_only: bool) -> np.ndarray:
    """A gradient of a broadcast operand brought back to its shape: summed over the batch (right)
    or, as a rule that forgets the broadcast does, the first batch element's alone."""
    while g.ndim > len(shape):
        g = g[0] if first_only else g.sum(axis=0)
    for k, d in enumerate(shape):
        if d == 1 and g.shape[k] != 1:
            g = np.take(g, [0], axis=k) if first_only else g.sum(axis=k, keepdims=True)
    return g


def _matmul_op(first_only: bool) -> Op:
    def vjp(xs, vs):
        a, b = xs
        v = vs[0]
        return [_reduced(v @ np.swapaxes(b, -1, -2), a.shape, first_only),
                _reduced(np.swapaxes(a, -1, -2) @ v, b.shape, first_only)]

    def hess(xs, us, vs):
        a, b = xs
        ua, ub = us
        v = vs[0]
        return [_reduced(v @ np.swapaxes(ub, -1, -2), a.shape, False), _reduced(np.swapaxes(ua, -1, -2) @ v, b.shape, False)]
    return Op(f=lambda a, b: a @ b, jvp=lambda xs, us: [us[0] @ xs[1] + xs[0] @ us[1]], vjp=vjp, hess=hess,
              args=({"name": "a"}, {"name": "b"}))


# a @ b (batched, broadcasting) whose reverse mode keeps only the first batch element's
# contribution to a broadcast operand: right whenever the two batches agree; and its twin
matmul_bcast_bug = _matmul_op(True)
matmul = _matmul_op(False)
