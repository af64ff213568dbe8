"""Interval analysis of a traced graph (RANUM's first step): one interval per tensor, propagated
through the forward (and backward) graph, and the vulnerable operations whose input interval
meets their invalid set.

Sound for the operations it knows: every bound is rounded outward (`np.nextafter`) and a bound
past the dtype's largest finite value becomes infinite.  An operation it does not know gives
the whole real line (top) and is counted, so imprecision is visible, never silent.
"""
from __future__ import annotations

import ast
import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.graph import Graph, Node

INF = math.inf
LARGEST = {"float16": 65504.0, "bfloat16": 3.3895313892515355e38, "float32": 3.4028234663852886e38,
           "float64": 1.7976931348623157e308}
TINY = {"float16": 6.103515625e-05, "bfloat16": 1.1754943508222875e-38, "float32": 1.1754943508222875e-38,
        "float64": 2.2250738585072014e-308}


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float

    def __post_init__(self) -> None:
        assert not (math.isnan(self.lo) or math.isnan(self.hi)), "an interval bound is never NaN"

    def contains(self, v: float) -> bool:
        return self.lo <= v <= self.hi

    def __str__(self) -> str:
        return f"[{self.lo:.6g}, {self.hi:.6g}]"


TOP = Interval(-INF, INF)
BOOL = Interval(0.0, 1.0)


def _down(v: float) -> float:
    """Round a computed bound outward; 0 stays 0 (a sum or product that is exactly 0 in float64
    is exactly 0: its terms cancel exactly or a factor is 0), so x * x never dips below 0."""
    return v if math.isinf(v) or v == 0.0 else float(np.nextafter(v, -INF))


def _up(v: float) -> float:
    return v if math.isinf(v) or v == 0.0 else float(np.nextafter(v, INF))


def _make(values: Sequence[float]) -> Interval:
    """The outward-rounded hull of candidate bounds; top if any is NaN (0 * inf, inf - inf)."""
    if any(math.isnan(v) for v in values):
        return TOP
    return Interval(_down(min(values)), _up(max(values)))


def _monotone(f: Callable[[float], float]) -> Callable[[Node, List[Interval]], Interval]:
    def go(node: Node, ins: List[Interval]) -> Interval:
        a = ins[0]
        return _make([f(a.lo), f(a.hi)])
    return go


def _exp(v: float) -> float:
    return INF if v > 709.0 else math.exp(v)


def _log(v: float) -> float:
    return -INF if v <= 0 else math.log(v)


def _mul(a: Interval, b: Interval) -> Interval:
    with np.errstate(invalid="ignore"):
        return _make([float(np.float64(p) * np.float64(q)) for p in (a.lo, a.hi) for q in (b.lo, b.hi)])


def _div(node: Node, ins: List[Interval]) -> Interval:
    a, b = ins
    if b.contains(0.0):
        return TOP
    return _mul(a, Interval(1.0 / b.hi, 1.0 / b.lo))


def _integer_pow(node: Node, ins: List[Interval]) -> Interval:
    a, y = ins[0], int(node.attr("y", 1))
    if y < 0:
        if a.contains(0.0):
            return TOP
        inv = Interval(1.0 / a.hi, 1.0 / a.lo)
        return _integer_pow(Node(node.id, node.op, node.inputs, node.shape, node.dtype, (("y", -y),)), [inv])
    if y == 0:
        return Interval(1.0, 1.0)
    ends = [_pow(a.lo, y), _pow(a.hi, y)]
    if y % 2 == 0 and a.contains(0.0):
        ends.append(0.0)
    return _make(ends)


def _pow(v: float, y: int) -> float:
    try:
        return float(v) ** y
    except OverflowError:
        return INF if v > 0 or y % 2 == 0 else -INF


def _sqrt(v: float) -> float:
    return math.sqrt(max(v, 0.0)) if not math.isinf(v) else (INF if v > 0 else 0.0)


def _rsqrt(v: float) -> float:
    return INF if v <= 0 else 1.0 / math.sqrt(v)


def _logistic(v: float) -> float:
    return 0.0 if v < -745 else 1.0 / (1.0 + math.exp(-v)) if v > -709 else 0.0


def _elements(shape: Sequence[int]) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _scaled(a: Interval, n: int) -> Interval:
    """The sum of n elements of interval a."""
    return _mul(a, Interval(float(n), float(n)))


def _reduce_sum(node: Node, ins: List[Interval], shapes: Dict[int, Tuple[int, ...]]) -> Interval:
    n = _elements(shapes.get(node.inputs[0], ())) // max(1, _elements(node.shape))
    return _scaled(ins[0], max(1, n))


def _dot(node: Node, ins: List[Interval], shapes: Dict[int, Tuple[int, ...]]) -> Interval:
    dims = node.attr("dimension_numbers")
    lhs = shapes.get(node.inputs[0], ())
    k = lhs[-1] if lhs else 1  # a matrix product (torch's mm, bmm, matmul) contracts the last axis
    if isinstance(dims, str):  # "(((1,), (0,)), ((), ()))": contracting dimensions of the left operand first
        try:
            (contract, _), _ = ast.literal_eval(dims)
            k = _elements([lhs[d] for d in contract])
        except (ValueError, SyntaxError, IndexError, TypeError):
            k = max(lhs) if lhs else 1
    return _scaled(_mul(ins[0], ins[1]), k)


def _along(node: Node, shapes: Dict[int, Tuple[int, ...]]) -> int:
    """Elements along a composite operation's axes (torch's softmax dim, logsumexp dims)."""
    src = shapes.get(node.inputs[0], node.shape) if node.inputs else node.shape
    axes = node.attr("axes", ())
    axes = axes if isinstance(axes, tuple) else (axes,) if isinstance(axes, int) else ()
    try:
        return _elements([src[a] for a in axes]) if axes else max(_elements(src), 1)
    except IndexError:
        return max(_elements(src), 1)


def _bounded_by(m: float) -> Interval:
    return _make([-m, m])


# torch's fused operations (make_fx keeps them whole), bounded from their definitions over n
# elements: log_softmax(x) = x - logsumexp(x) in [lo - hi - log n, 0]; softmax in [0, 1]; their
# backward data g - exp(out) sum(g) and out (g - sum(g out)), bounded by (1 + n) |g| and 2 |g|
COMPOSITE: Dict[str, Callable[[List[Interval], int], Interval]] = {
    "log_softmax": lambda i, n: _make([min(0.0, i[0].lo - i[0].hi - math.log(n)), 0.0]),
    "softmax": lambda i, n: Interval(0.0, 1.0),
    "logsumexp": lambda i, n: _make([i[0].lo, i[0].hi + math.log(n)]),
    "log_softmax_backward": lambda i, n: _bounded_by((1 + n) * max(abs(i[0].lo), abs(i[0].hi))),
    "softmax_backward": lambda i, n: _bounded_by(2 * max(abs(i[0].lo), abs(i[0].hi))),
}


def _union(ins: Sequence[Interval]) -> Interval:
    return Interval(min(i.lo for i in ins), max(i.hi for i in ins))


def _clamp(node: Node, ins: List[Interval]) -> Interval:
    lo, x, hi = ins
    return Interval(min(max(x.lo, lo.lo), hi.hi), max(min(x.hi, hi.hi), lo.lo))


ELEMENTWISE: Dict[str, Callable[[Node, List[Interval]], Interval]] = {
    "add": lambda n, i: _make([i[0].lo + i[1].lo, i[0].hi + i[1].hi]),
    "add_any": lambda n, i: _make([i[0].lo + i[1].lo, i[0].hi + i[1].hi]),
    "sub": lambda n, i: _make([i[0].lo - i[1].hi, i[0].hi - i[1].lo]),
    "neg": lambda n, i: Interval(-i[0].hi, -i[0].lo),
    # x * x >= 0: the same tensor twice, not two independent ones
    "mul": lambda n, i: _integer_pow(Node(n.id, "integer_pow", n.inputs[:1], n.shape, n.dtype, (("y", 2),)), i[:1])
    if n.inputs[0] == n.inputs[1] >= 0 else _mul(i[0], i[1]),
    "div": _div,
    "max": lambda n, i: Interval(max(i[0].lo, i[1].lo), max(i[0].hi, i[1].hi)),
    "min": lambda n, i: Interval(min(i[0].lo, i[1].lo), min(i[0].hi, i[1].hi)),
    "abs": lambda n, i: Interval(0.0 if i[0].contains(0.0) else min(abs(i[0].lo), abs(i[0].hi)),
                                 max(abs(i[0].lo), abs(i[0].hi))),
    "exp": _monotone(_exp),
    "log": _monotone(_log),
    "log1p": _monotone(lambda v: -INF if v <= -1 else math.log1p(v) if not math.isinf(v) else INF),
    "expm1": _monotone(lambda v: INF if v > 709 else math.expm1(v) if v > -INF else -1.0),
    "sqrt": _monotone(_sqrt),
    "rsqrt": lambda n, i: _make([_rsqrt(i[0].hi), _rsqrt(max(i[0].lo, 0.0))]),
    "tanh": _monotone(lambda v: math.tanh(v) if not math.isinf(v) else math.copysign(1.0, v)),
    "logistic": _monotone(_logistic),
    "integer_pow": _integer_pow,
    "square": lambda n, i: _integer_pow(Node(n.id, n.op, n.inputs, n.shape, n.dtype, (("y", 2),)), i),
    "sign": lambda n, i: Interval(-1.0, 1.0),
    "floor": _monotone(lambda v: math.floor(v) if not math.isinf(v) else v),
    "ceil": _monotone(lambda v: math.ceil(v) if not math.isinf(v) else v),
    "round": _monotone(lambda v: round(v) if not math.isinf(v) else v),
    "clamp": _clamp,
    "select_n": lambda n, i: _union(i[1:]),
    "concatenate": lambda n, i: _union(i),
    "pad": lambda n, i: _union(i),
}
IDENTITY = {"broadcast_in_dim", "reshape", "transpose", "squeeze", "expand_dims", "convert_element_type", "copy",
            "copy_p", "slice", "dynamic_slice", "gather", "rev", "stop_gradient", "reduce_max", "reduce_min",
            "reduce_precision", "real", "sort", "cumax", "cummin", "dynamic_update_slice"}
BOOLEAN = {"gt", "lt", "ge", "le", "eq", "ne", "and", "or", "not", "xor", "is_finite"}


def _range_of(node: Node, shapes: Dict[int, Tuple[int, ...]]) -> Interval:
    """iota / argmax: indices along a dimension."""
    dim = node.attr("dimension", node.attr("axes"))
    n = max(node.shape) if node.shape else 1
    if isinstance(dim, int) and node.shape and node.op == "iota":
        n = node.shape[dim]
    elif node.op in ("argmax", "argmin") and node.inputs and isinstance(node.attr("axes"), tuple):
        src = shapes.get(node.inputs[0], ())
        n = _elements([src[a] for a in node.attr("axes")]) if src else n
    return Interval(0.0, float(max(n - 1, 0)))


@dataclass(frozen=True)
class Flag:
    """A vulnerable operation whose input interval meets its invalid set."""

    node: Node
    operand: Interval
    problem: str
    safe: Interval  # the operand range that makes the operation safe (the clamp to suggest)
    away: float = 0.0  # > 0: instead, keep the operand's sign and push it at least this far from 0


EXP_LIMIT = {dtype: math.log(v) for dtype, v in LARGEST.items()}  # exp overflows past these
# a denominator clamped this far from 0 keeps the quotient (and its derivative) finite for
# numerators up to ~1e30 (float32); a clamp at the smallest normal number would not
DIVISOR = {"float16": 1e-3, "bfloat16": 1e-6, "float32": 1e-6, "float64": 1e-12}


def vulnerable(node: Node, ins: List[Interval]) -> Optional[Flag]:
    """The flag for `node` if its inputs' intervals meet its invalid set (None: proved safe)."""
    op, dtype = node.op, node.dtype
    a = ins[0] if ins else TOP
    # the clamps keep the operation's derivative finite too (1/x, 1/(2 sqrt x) at the bound)
    eps = DIVISOR.get(dtype, DIVISOR["float32"])
    if op == "log" and a.lo <= 0:
        return Flag(node, a, "log of a value that can be <= 0", Interval(eps, max(a.hi, eps)))
    if op == "log1p" and a.lo <= -1:
        return Flag(node, a, "log1p of a value that can be <= -1", Interval(-1 + eps, max(a.hi, 0.0)))
    if op == "sqrt" and a.lo < 0:
        return Flag(node, a, "sqrt of a value that can be < 0", Interval(eps * eps, max(a.hi, eps * eps)))
    if op == "rsqrt" and a.lo <= 0:
        return Flag(node, a, "rsqrt of a value that can be <= 0", Interval(eps, max(a.hi, eps)))
    if op == "div" and len(ins) > 1 and ins[1].contains(0.0):
        return Flag(node, ins[1], "division by a value that can be 0", *_off_zero(ins[1], eps))
    if op == "integer_pow" and int(node.attr("y", 1)) < 0 and a.contains(0.0):
        return Flag(node, a, f"power {node.attr('y')} of a value that can be 0", *_off_zero(a, eps))
    if op == "exp" and a.hi > EXP_LIMIT.get(dtype, EXP_LIMIT["float32"]):
        limit = EXP_LIMIT.get(dtype, EXP_LIMIT["float32"])
        # half the limit: exp stays below the square root of the largest value, so the sums and
        # products after it (a softmax's, a layer's) do not overflow in its place
        return Flag(node, a, f"exp overflows {dtype} (input can exceed {limit:.4g})",
                    Interval(min(a.lo, limit / 2), limit / 2))
    return None


def operand_position(op: str) -> int:
    """Which input of a vulnerable operation its flag is about: a division's denominator, else the first."""
    return 1 if op == "div" else 0


def _off_zero(v: Interval, eps: float) -> Tuple[Interval, float]:
    """The fix for an operand that must not be 0: a clamp to one side where it has one sign,
    else (both signs) a sign-keeping push at least `eps` away from 0."""
    if v.lo >= 0:
        return Interval(eps, max(v.hi, eps)), 0.0
    if v.hi <= 0:
        return Interval(min(v.lo, -eps), -eps), 0.0
    return v, eps


def off_zero(v: Interval, eps: float) -> Tuple[Interval, Interval]:
    """The two sides of `v` once pushed `eps` away from 0."""
    return Interval(min(v.lo, -eps), -eps), Interval(eps, max(v.hi, eps))


@dataclass(frozen=True)
class Analysis:
    intervals: Dict[int, Interval]
    flags: Tuple[Flag, ...]
    unknown: Tuple[Tuple[str, int], ...]  # operations analysed as top, and how many


def analyse(graph: Graph, arguments: Dict[str, Interval], clamps: Dict[int, Flag] = {}) -> Analysis:
    """Propagate intervals from the arguments' (`x`, `y`, `param:<name>`); `clamps` applies a
    flag's fix to its node's operand (by node id), as the suggested clamp would."""
    values: Dict[int, Interval] = {}
    facts: Dict[int, Tuple[str, int]] = {}  # Note [softmax facts]
    shapes = {n.id: n.shape for n in graph.nodes}
    names = {i: name for name, i in graph.arguments}
    flags: List[Flag] = []
    unknown: Counter = Counter()
    for node in graph.nodes:
        if node.op == "argument":
            values[node.id] = arguments.get(names.get(node.id, ""), TOP)
            continue
        if node.op == "constant":
            values[node.id] = Interval(float(node.attr("min", -INF)), float(node.attr("max", INF)))
            continue
        literal = dict(node.literals)
        ins = [Interval(literal[p], literal[p]) if i < 0 else values.get(i, TOP) for p, i in enumerate(node.inputs)]
        if node.id in clamps:
            k, fix = operand_position(node.op), clamps[node.id]
            if fix.away > 0:  # both signs, pushed off 0: the hull of the two sides' results, no flag
                sides = [ins[:k] + [side] + ins[k + 1:] for side in off_zero(ins[k], fix.away)]
                outs = [_transfer(node, s_, shapes, unknown) for s_ in sides]
                values[node.id] = _limit(_union(outs), node.dtype)
                continue
            c = fix.safe
            ins[k] = Interval(min(max(ins[k].lo, c.lo), c.hi), max(min(ins[k].hi, c.hi), c.lo))
        flag = vulnerable(node, ins)
        if flag is not None:
            flags.append(flag)
        out = _limit(_transfer(node, ins, shapes, unknown), node.dtype)
        values[node.id] = _with_facts(node, out, facts, values)
    return Analysis(values, tuple(flags), tuple(sorted(unknown.items())))


# Note [softmax facts]
# One interval per tensor forgets how elements relate, and every stable softmax relies on one
# relation: z - max(z) <= 0, with one element exactly 0, so sum(exp(z - max(z))) >= 1.  Without
# it a log-softmax is flagged as an exp overflow and a log of 0 (RANUM's tensor-level analysis
# has the same blind spot).  Three facts restore it, each sound: a node is the max of another
# along an axis ("max", A); `A - that max` has top element 0 ("top", 0); exp of a ("top", 0)
# tensor has top element 1 ("top", 1), and a sum over the same axis of a non-negative tensor
# whose top element is 1 is at least 1.  Broadcasts, reshapes, stop_gradient and max(-inf, .) keep a fact.
_KEEPS_FACTS = {"broadcast_in_dim", "reshape", "stop_gradient", "expand_dims", "convert_element_type", "copy"}


def _with_facts(node: Node, out: Interval, facts: Dict[int, Tuple[str, int]], values: Dict[int, Interval]) -> Interval:
    op, ins = node.op, node.inputs
    if op == "reduce_max" and ins and ins[0] >= 0:
        facts[node.id] = ("max", ins[0])
    elif op in _KEEPS_FACTS and ins and ins[0] in facts:
        facts[node.id] = facts[ins[0]]
    elif op == "max" and dict(node.literals).get(0) == -INF and len(ins) == 2 and ins[1] in facts:
        facts[node.id] = facts[ins[1]]  # jnp.max's initial value: max(-inf, m) is m
    elif op == "sub" and len(ins) == 2 and facts.get(ins[1]) == ("max", ins[0]):
        facts[node.id] = ("top", 0)
        return Interval(out.lo, min(out.hi, 0.0))
    elif op == "exp" and ins and facts.get(ins[0]) == ("top", 0):
        facts[node.id] = ("top", 1)
        return Interval(max(out.lo, 0.0), min(out.hi, 1.0))
    elif op == "reduce_sum" and ins and facts.get(ins[0]) == ("top", 1) and values.get(ins[0], TOP).lo >= 0:
        return Interval(max(out.lo, 1.0), out.hi)
    return out


def _transfer(node: Node, ins: List[Interval], shapes: Dict[int, Tuple[int, ...]], unknown: Counter) -> Interval:
    op = node.op
    if not node.dtype.startswith(("float", "bfloat")) and op not in ("convert_element_type",):
        if op in BOOLEAN or node.dtype == "bool":
            return BOOL
        if op in ("iota", "argmax", "argmin"):
            return _range_of(node, shapes)
    if op in BOOLEAN:
        return BOOL
    if op in ELEMENTWISE:
        return ELEMENTWISE[op](node, ins)
    if op in IDENTITY:
        return ins[0] if ins else TOP
    if op in ("scatter-add", "scatter_add") and len(ins) >= 3:  # operand plus any number of the updates
        n = _elements(shapes.get(node.inputs[2], ())) if node.inputs[2] >= 0 else 1
        a, u = ins[0], ins[2]
        return _make([a.lo + n * min(u.lo, 0.0), a.hi + n * max(u.hi, 0.0)])
    if op in ("reduce_sum", "cumsum"):
        return _reduce_sum(node, ins, shapes)
    if op == "dot_general":
        return _dot(node, ins, shapes)
    if op in COMPOSITE:
        return COMPOSITE[op](ins, _along(node, shapes))
    if op in ("iota", "argmax", "argmin"):
        return _range_of(node, shapes)
    unknown[op] += 1
    return TOP


ROUNDING = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8, "float32": 2.0 ** -24}  # unit roundoff


def _limit(v: Interval, dtype: str) -> Interval:
    """The result as the dtype stores it (Note [dtype rounding]): widened by one rounding, a
    bound below the smallest normal number may be 0, and past the largest it is infinite."""
    big = LARGEST.get(dtype)
    if big is None:
        return v
    lo, hi = v.lo, v.hi
    u = ROUNDING.get(dtype, 0.0)
    if u:
        lo, hi = lo - abs(lo) * u, hi + abs(hi) * u
        tiny = TINY[dtype]
        lo = 0.0 if 0 < lo < tiny else lo
        hi = 0.0 if -tiny < hi < 0 else hi
    return Interval(-INF if lo < -big else lo, INF if hi > big else hi)


# Note [dtype rounding]
# The transfer functions compute in float64; the library computes in the tensor's dtype, where
# exp(-100) is 0 (flushed: XLA on CPU flushes subnormals), sigmoid(17) is exactly 1 and so
# 1 - sigmoid(17) is 0.  Each result is therefore widened by the dtype's unit roundoff and may
# touch 0 once it is below the smallest normal number: that is where log(1 - sigmoid(z)) and
# -log(softmax(z)) fail in float32, and float64 intervals never reach it.
