"""Programs: two to four ops of one library in a row, fuzzed like one API (`campaign --programs`).

Many open AD bugs need ops in a row: a derivative rule that is right for one op alone and wrong
once its output feeds another (custom rules that reuse their output, saturating branches, rules
that mishandle a zero tangent).  A program is a function of one tensor, so it runs through every
scenario, filter, store and replay path exactly like one API, under a synthetic spec whose name
encodes the steps.

Note [program names]
    name := "program:" expr
    expr := term (">" term)*              left to right: `A>B` is B(A(x))
    term := STEP | "where(" expr "|" expr ")" | "poly(" expr ")"
`where(e1|e2)` is where(x > 0, e1(x), e2(x)) with the library's `where` (where_of), both branches
evaluated (what gives the classic NaN gradient of a branch singular on the side not taken);
`poly(e)` is x * x * e(x) (Python operators).  A STEP is the name of a loaded spec of the same
library (no whitespace and none of `>|()`), called with its one tensor argument only.

Security: a program is code only through its steps.  The worker builds it from the name alone,
each step resolved by the adapter's normal `resolve` (`build_program`); the orchestrator builds
program specs only through `program_spec`, which refuses a name unless every step is a loaded
spec of that library, so what a campaign sends, and what `nablafuzz replay` of a report (data)
sends, names only declared APIs.

Worker-safe parts (Python 3.10, numpy 1.26): parsing, `build_program`.  The rest (step probing,
generation, specs, blame) runs in the orchestrator.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..core.model import ApiSpec, ArgKind, ArgSpec, Finding, Fingerprint, InputValue, TensorRecord, Tolerance, Trial
from ..libraries import record
from ..libraries.base import UnknownApi
from ..libraries.numpy_ref.adapter import Op, _unbroadcast

PREFIX = "program:"
MAX_NAME = 1000  # characters of a program name
MAX_STEPS = 8  # steps (leaves) of one program
MAX_DEPTH = 4  # nesting of where(...) and poly(...)
_SPECIAL = frozenset(">|()")

# The library's `where`, the one callable a program uses that no loaded spec names: its record's
# (never data), resolved by the adapter's own `resolve` like any API.  numpy_ref has none: its
# programs compose the steps' hand-written derivatives (`_where_op`).  A library without one gets
# no where(...) programs.
def where_of(library: str) -> str:
    """The library's `where` API ("" where it has none)."""
    return record(library).where


class ProgramError(UnknownApi):
    """A name that is not a program of the grammar (Note [program names])."""


# ---- names ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    name: str


@dataclass(frozen=True)
class Where:
    taken: "Chain"  # where x > 0
    other: "Chain"


@dataclass(frozen=True)
class Poly:
    inner: "Chain"


Term = Union[Step, Where, Poly]
Chain = Tuple[Term, ...]


def is_program(api: str) -> bool:
    return isinstance(api, str) and api.startswith(PREFIX)


class _Parser:
    def __init__(self, text: str):
        self.text, self.i = text, 0

    def fail(self, why: str) -> ProgramError:
        return ProgramError(f"not a program name ({why} at character {self.i} of {PREFIX + self.text[:80]!r})")

    def chain(self, depth: int) -> Chain:
        parts = [self.term(depth)]
        while self.text.startswith(">", self.i):
            self.i += 1
            parts.append(self.term(depth))
        return tuple(parts)

    def term(self, depth: int) -> Term:
        for word in ("where(", "poly("):
            if self.text.startswith(word, self.i):
                if depth >= MAX_DEPTH:
                    raise self.fail("nested too deeply")
                self.i += len(word)
                first = self.chain(depth + 1)
                if word == "where(":
                    self.expect("|")
                    term: Term = Where(first, self.chain(depth + 1))
                else:
                    term = Poly(first)
                self.expect(")")
                return term
        j = self.i
        while j < len(self.text) and self.text[j] not in _SPECIAL and not self.text[j].isspace():
            j += 1
        token = self.text[self.i:j]
        if not token:
            raise self.fail("a step name is missing")
        if is_program(token):
            raise self.fail("a step may not be a program")
        self.i = j
        return Step(token)

    def expect(self, c: str) -> None:
        if not self.text.startswith(c, self.i):
            raise self.fail(f"expected {c!r}")
        self.i += 1


def parse(name: str) -> Chain:
    """The program a name encodes; ProgramError unless it is one (in canonical form)."""
    if not is_program(name):
        raise ProgramError(f"{name!r} is not a program name (they start with {PREFIX!r})")
    if len(name) > MAX_NAME:
        raise ProgramError(f"program name longer than {MAX_NAME} characters")
    p = _Parser(name[len(PREFIX):])
    chain = p.chain(0)
    if p.i != len(p.text):
        raise p.fail("unexpected text")
    if len(step_names(chain)) > MAX_STEPS:
        raise ProgramError(f"program of more than {MAX_STEPS} steps")
    return chain


def _term_text(t: Term) -> str:
    if isinstance(t, Step):
        return t.name
    if isinstance(t, Where):
        return f"where({chain_text(t.taken)}|{chain_text(t.other)})"
    return f"poly({chain_text(t.inner)})"


def chain_text(chain: Chain) -> str:
    return ">".join(_term_text(t) for t in chain)


def name_of(chain: Chain) -> str:
    return PREFIX + chain_text(chain)


def step_names(chain: Chain) -> List[str]:
    """Every step of the program, in the order they run (with repeats)."""
    return [name for name, _ in leaves(chain)]


def leaves(chain: Chain, before: Chain = ()) -> List[Tuple[str, Chain]]:
    """(step, the program that computes the step's input from x), in the order steps run.  The
    branches of where(...) and the factor of poly(...) get the combinator's own input."""
    out: List[Tuple[str, Chain]] = []
    for k, t in enumerate(chain):
        pre = before + chain[:k]
        if isinstance(t, Step):
            out.append((t.name, pre))
        elif isinstance(t, Where):
            out += leaves(t.taken, pre) + leaves(t.other, pre)
        else:
            out += leaves(t.inner, pre)
    return out


def sub_chains(chain: Chain) -> List[Tuple[Chain, Chain]]:
    """(a contiguous part of the top-level chain, the program computing its input), shortest
    first, the whole chain excluded; a lone step is a leaf (see `leaves`), so a part of one term
    is listed only for a combinator."""
    out = []
    for size in range(1, len(chain)):
        for i in range(len(chain) - size + 1):
            part = chain[i:i + size]
            if size > 1 or not isinstance(part[0], Step):
                out.append((part, chain[:i]))
    return out


def expression(chain: Chain, x: str, call: Callable[[str], str], where: str = "where",
               bind: Callable[[str], str] = lambda e: e) -> str:
    """The program applied to `x` as code: `call` renders a step's name, `where` the library's
    where; `bind` receives each term's expression and returns what the next term reads (the
    expression itself, or a variable it was assigned to)."""
    for t in chain:
        if isinstance(t, Step):
            y = f"{call(t.name)}({x})"
        elif isinstance(t, Where):
            taken, other = (expression(part, x, call, where, bind) for part in (t.taken, t.other))
            y = f"{where}({x} > 0, {taken}, {other})"
        else:
            y = f"{x} * {x} * {expression(t.inner, x, call, where, bind)}"
        x = bind(y)
    return x


def plain(chain: Chain, x: str = "x", call: Callable[[str], str] = lambda s: s) -> str:
    """The program as one expression, e.g. `tanh(exp(x))`; `call` renders a step's name."""
    return expression(chain, x, call)


# ---- worker side: the program as a callable ---------------------------------------------------

def build_program(name: str, resolve: Callable[[str], Any], library: str) -> Any:
    """The program `name` as one function of a tensor, from its steps alone, each resolved by
    `resolve` (the adapter's, so each is looked up like any API).  numpy_ref steps are `Op`s with
    hand-written derivatives; their program is an `Op` composing them (chain, product and
    selection rules).  Raises ProgramError for a malformed name."""
    chain = parse(name)
    cache: Dict[str, Any] = {}

    def step(s: str) -> Any:
        if s not in cache:
            cache[s] = resolve(s)
        return cache[s]
    objects = [step(s) for s in step_names(chain)]
    if all(isinstance(o, Op) for o in objects):
        return _chain_op(chain, step)
    if any(isinstance(o, Op) for o in objects):
        raise ProgramError(f"{name}: numpy_ref ops and other callables cannot be mixed")
    where = None
    if any(isinstance(t, Where) for t in terms(chain)):
        if not where_of(library):
            raise ProgramError(f"{name}: no `where` is known for library {library!r} (its Library.where)")
        where = resolve(where_of(library))
    return _chain_fn(chain, step, where)


def terms(chain: Chain) -> List[Term]:
    out: List[Term] = []
    for t in chain:
        out.append(t)
        if isinstance(t, Where):
            out += terms(t.taken) + terms(t.other)
        elif isinstance(t, Poly):
            out += terms(t.inner)
    return out


def _chain_fn(chain: Chain, step: Callable[[str], Any], where: Any) -> Callable[[Any], Any]:
    fns = [_term_fn(t, step, where) for t in chain]

    def program(x: Any) -> Any:
        for f in fns:
            x = f(x)
        return x
    return program


def _term_fn(t: Term, step: Callable[[str], Any], where: Any) -> Callable[[Any], Any]:
    if isinstance(t, Step):
        fn = step(t.name)
        return lambda x: fn(x)
    if isinstance(t, Where):
        a, b = _chain_fn(t.taken, step, where), _chain_fn(t.other, step, where)
        return lambda x: where(x > 0, a(x), b(x))
    e = _chain_fn(t.inner, step, where)
    return lambda x: x * x * e(x)


def _one(out: Any) -> np.ndarray:
    if isinstance(out, (tuple, list)):
        if len(out) != 1:
            raise ValueError("a program step must have one output")
        out = out[0]
    return np.asarray(out)


def _chain_op(chain: Chain, step: Callable[[str], Any]) -> Op:
    ops = [_term_op(t, step) for t in chain]
    if len(ops) == 1:
        return ops[0]
    op = ops[0]
    for g in ops[1:]:
        op = _compose(op, g)
    return op


def _term_op(t: Term, step: Callable[[str], Any]) -> Op:
    if isinstance(t, Step):
        return _single(step(t.name))
    if isinstance(t, Where):
        return _where_op(_chain_op(t.taken, step), _chain_op(t.other, step))
    return _poly_op(_chain_op(t.inner, step))


def _single(op: Op) -> Op:
    """A step as a function of one array with default parameters (its derivatives as lists)."""
    return Op(f=lambda x: _one(op.f(x)), jvp=lambda xs, us: [np.asarray(op.jvp(xs, us)[0])],
              vjp=lambda xs, vs: [np.asarray(op.vjp(xs, vs)[0])],
              hess=lambda xs, us, vs: [np.asarray(op.hess(xs, us, vs)[0])])


def _compose(f: Op, g: Op) -> Op:
    """g after f.  Second order: Q(x) = <v, Jg(y) Jf(x) u> with y = f(x), so
    grad Q = Jf^T grad_y <v, Jg(y) t> (t = Jf u held) + grad_x <Jg(y)^T v, Jf(x) u> (y held)."""
    def jvp(xs, us, **_):
        return g.jvp([f.f(xs[0])], f.jvp(xs, us))

    def vjp(xs, vs, **_):
        return f.vjp(xs, g.vjp([f.f(xs[0])], vs))

    def hess(xs, us, vs, **_):
        y, t = f.f(xs[0]), f.jvp(xs, us)
        return [np.asarray(f.vjp(xs, g.hess([y], t, vs))[0]) + np.asarray(f.hess(xs, us, g.vjp([y], vs))[0])]
    return Op(f=lambda x, **_: g.f(f.f(x)), jvp=jvp, vjp=vjp, hess=hess)


def _where_op(a: Op, b: Op) -> Op:
    """where(x > 0, a(x), b(x)) for elementwise a and b (what `generate_programs` pairs): each
    derivative is selected elementwise, so a branch's NaN on the side not taken stays out (the
    reference value the libraries' where is held to)."""
    def pick(x, first, second):  # `first` and `second` compute each branch (quietly: one side is singular)
        with np.errstate(all="ignore"):
            return np.where(x > 0, np.asarray(first()), np.asarray(second()))
    return Op(f=lambda x, **_: pick(x, lambda: a.f(x), lambda: b.f(x)),
              jvp=lambda xs, us, **_: [pick(xs[0], lambda: a.jvp(xs, us)[0], lambda: b.jvp(xs, us)[0])],
              vjp=lambda xs, vs, **_: [pick(xs[0], lambda: a.vjp(xs, vs)[0], lambda: b.vjp(xs, vs)[0])],
              hess=lambda xs, us, vs, **_: [pick(xs[0], lambda: a.hess(xs, us, vs)[0], lambda: b.hess(xs, us, vs)[0])])


def _poly_op(e: Op) -> Op:
    """x * x * e(x) (e's output broadcasting against x): the product rule, and for second order
    grad of Q = <v, 2 x u e(x)> + <x^2 v, Je(x) u>."""
    def jvp(xs, us, **_):
        x, u = xs[0], us[0]
        return [2 * x * u * e.f(x) + x * x * np.asarray(e.jvp(xs, us)[0])]

    def vjp(xs, vs, **_):
        x, v = xs[0], vs[0]
        y = np.asarray(e.f(x))
        return [_unbroadcast(2 * x * y * v, x.shape) + np.asarray(e.vjp(xs, [_unbroadcast(x * x * v, y.shape)])[0])]

    def hess(xs, us, vs, **_):
        x, u, v = xs[0], us[0], vs[0]
        y = np.asarray(e.f(x))
        t = np.asarray(e.jvp(xs, us)[0])
        grads = [_unbroadcast(2 * u * v * y, x.shape), e.vjp(xs, [_unbroadcast(2 * x * u * v, y.shape)])[0],
                 _unbroadcast(2 * x * v * t, x.shape), e.hess(xs, us, [_unbroadcast(x * x * v, y.shape)])[0]]
        return [sum(np.asarray(a) for a in grads)]
    return Op(f=lambda x, **_: x * x * e.f(x), jvp=jvp, vjp=vjp, hess=hess)


# ---- orchestrator side: specs -----------------------------------------------------------------

def program_spec(library: str, name: str, specs: Mapping[str, ApiSpec], conventions: Sequence[Any] = ()) -> ApiSpec:
    """The synthetic spec of program `name` of `library`, from the loaded specs (`library:api` ->
    spec) and the convention table (spec.Convention rows).  RefusedError unless the name is a program whose every step is a loaded spec of that
    library taking one tensor first: this is the only way a program reaches a worker.

    The spec takes one float tensor `x` (the first step's domain; nonzero for where(...)).  Its
    dtypes are those every step takes; capabilities those every step declares, unsupported what
    any step declares unsupported, with support `observed` (a mode one step lacks is that op's
    status finding, not the program's); known issues, conventions and tolerances of every step
    (and of the library's where op, for a where(...) program) apply; its kinks policy is the
    strictest of its steps'."""
    from ..core.errors import RefusedError  # orchestrator only
    try:
        chain = parse(name)
    except ProgramError as exc:
        raise RefusedError(f"{library}:{str(name)[:200]}: {exc}; refusing to run it (reports are data, never code)") from None
    steps: List[ApiSpec] = []
    for s in step_names(chain):
        spec = specs.get(f"{library}:{s}")
        if spec is None or spec.library != library:
            raise RefusedError(f"program {name[:200]!r} names step {s[:200]!r}, which no loaded spec of {library} "
                               "declares; refusing to run it (reports are data, never code). Fix: if it is your "
                               "own function, pass its spec file with --specs")
        if _target(spec) is None:
            raise RefusedError(f"program {name[:200]!r}: step {s!r} does not take one tensor as its first argument; "
                               "refusing to run it")
        steps.append(spec)
    floats = [d for d in steps[0].dtypes if all(d in s.dtypes for s in steps)]
    caps = tuple(c for c in steps[0].capabilities if all(c in s.capabilities for s in steps))
    unsupported = tuple(dict.fromkeys(c for s in steps for c in s.unsupported if c not in caps))
    issues = tuple(dict.fromkeys(k for s in steps for k in s.known_issues))
    if any(isinstance(t, Where) for t in terms(chain)) and where_of(library):
        # the where op's own conventions: its gradient multiplies the untaken branch's by a zero
        # mask, so a non-finite derivative there gives NaN (api_specs/conventions.yaml)
        where = ApiSpec(library, where_of(library), ())
        issues += tuple(c.issue for c in conventions if c.covers(where) and c.issue not in issues)
    kinks = next((k for k in ("selection", "subgradient") if any(s.kinks == k for s in steps)), "none")
    if any(isinstance(t, Where) for t in terms(chain)):
        kinks = "selection" if kinks == "selection" else "subgradient"  # where(x > 0, ...) may jump at 0
    sizes = [s.max_size for s in steps if s.max_size]
    arg = ArgSpec("x", ArgKind.TENSOR, domain=_input_domain(chain, specs, library))
    return ApiSpec(library=library, name=name, args=(arg,), dtypes=tuple(floats) or ("float64",), capabilities=caps,
                   unsupported=unsupported, tolerance=_tolerances(steps), known_issues=issues,
                   random=any(s.random for s in steps), kinks=kinks, max_size=min(sizes) if sizes else None,
                   source="program", notes=f"program: {plain(chain)}", support="observed")


def _target(spec: ApiSpec) -> Optional[ArgSpec]:
    """The spec's first argument when it is its only tensor (positional, unstructured) and the
    spec is a plain function: what a step is called with."""
    tensors = [a for a in spec.args if a.kind in (ArgKind.TENSOR, ArgKind.TENSOR_LIST)]
    if spec.module or not spec.args or len(tensors) != 1 or tensors[0] is not spec.args[0]:
        return None
    a = spec.args[0]
    return a if a.kind is ArgKind.TENSOR and not a.keyword and not a.structure else None


def _input_domain(chain: Chain, specs: Mapping[str, ApiSpec], library: str) -> str:
    first = chain[0]
    if isinstance(first, Step):
        return specs[f"{library}:{first.name}"].args[0].domain
    if isinstance(first, Where):
        return "nonzero"  # both sides of where(x > 0, ...), never exactly at its switch (a kink)
    return _input_domain(first.inner, specs, library)


def _tolerances(steps: Sequence[ApiSpec]) -> Tuple[Tuple[str, Tolerance], ...]:
    out: Dict[str, Tolerance] = {}
    for s in steps:
        for dtype, t in s.tolerance:
            old = out.get(dtype, Tolerance(0.0, 0.0))
            out[dtype] = Tolerance(max(old.atol, t.atol), max(old.rtol, t.rtol))
    return tuple(sorted(out.items()))


# ---- orchestrator side: which specs can be steps (a probe) -------------------------------------

@dataclass(frozen=True)
class StepInfo:
    """A spec usable as a step: `kind` elementwise (same shape, each output element depends on
    its own input element), same_shape (any other same-shape op) or reduction (a 0-d output);
    `outputs` what the probe computed on its domain, to see which steps accept them."""

    name: str
    kind: str
    domain: str
    outputs: Tuple[float, ...]


PROBE_SHAPE = (3, 4)  # not square: matrix ops fail on it and are not taken as steps
PROBE_LIMIT = 64  # specs probed per library and campaign (a seeded choice when there are more)


def step_candidates(specs: Sequence[ApiSpec]) -> List[ApiSpec]:
    """Specs a probe may take as steps: one tensor argument first, plain functions, not random,
    named without the grammar's characters, taking a float dtype."""
    return [s for s in specs if _target(s) is not None and not s.random and not is_program(s.name)
            and s.name and not any(c in _SPECIAL or c.isspace() for c in s.name) and len(s.name) <= 200
            and any(d.startswith("float") for d in s.dtypes)
            and (not s.args[0].dtypes or any(d.startswith("float") for d in s.args[0].dtypes))]


def probe_trial(spec: ApiSpec, values: np.ndarray) -> Trial:
    from ..core.tensors import to_record
    arg = spec.args[0]
    return Trial(spec.library, spec.name, 0, str(values.dtype),
                 (InputValue(arg.name, ArgKind.TENSOR, to_record(values), True, False),))


def probe_steps(specs: Sequence[ApiSpec], direct: Callable[[Trial, ApiSpec], Optional[np.ndarray]], seed: int,
                limit: int = PROBE_LIMIT, keep_going: Callable[[], bool] = lambda: True) -> List[StepInfo]:
    """The steps among `specs`: each candidate called on its own domain's values of PROBE_SHAPE
    and again with one element changed (`direct(trial, spec)`: its one output, or None)."""
    from ..core.domains import DOMAINS, sample
    found = []
    pool = step_candidates(specs)
    if len(pool) > limit:
        order = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, 7]).permutation(len(pool))
        pool = [pool[i] for i in sorted(order[:limit])]
    for spec in pool:
        if not keep_going():
            break
        domain = spec.args[0].domain if spec.args[0].domain in DOMAINS else "real"
        dtype = "float64" if "float64" in spec.dtypes else next(d for d in spec.dtypes if d.startswith("float"))
        rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
        x0 = sample(domain, rng, PROBE_SHAPE, dtype, edge_rate=0.0)
        x1 = x0.copy()
        x1[0, 0] = sample(domain, rng, (), dtype, edge_rate=0.0)
        y0 = direct(probe_trial(spec, x0), spec)
        if y0 is None or y0.dtype != x0.dtype or not np.all(np.isfinite(y0)):
            continue  # a cast (Tensor.half) mixes precisions, and an integer output has no derivative
        if y0.shape == ():
            kind = "reduction"
        elif y0.shape == PROBE_SHAPE:
            y1 = direct(probe_trial(spec, x1), spec)
            if y1 is None or y1.shape != PROBE_SHAPE:
                continue
            same = np.asarray(y1 == y0)
            same[0, 0] = True
            kind = "elementwise" if same.all() else "same_shape"
        else:
            continue
        found.append(StepInfo(spec.name, kind, domain, tuple(float(v) for v in np.ravel(y0))))
    return found


# ---- orchestrator side: generation ------------------------------------------------------------

def _fits(domain: str, values: Sequence[float]) -> bool:
    """Whether finite values lie in a domain's closure (a step fits after another whose outputs
    they are).  The closure, because its boundary is where bugs live: a saturating op's exact 0
    and 1 into an op drawn on (0, 1), relu's 0 into sqrt."""
    y = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = {
            "positive": y >= 0, "nonnegative": y >= 0, "unit_interval": (y >= 0) & (y <= 1),
            "open_unit_interval": (y >= 0) & (y <= 1), "symmetric_unit": (y >= -1) & (y <= 1),
            "above_minus_one": y >= -1, "integer_valued": y == np.round(y), "moderate": np.abs(y) <= 3,
        }.get(domain, np.isfinite(y))
    return bool(np.all(ok & np.isfinite(y)))


RESTRICTED = ("positive", "nonnegative", "unit_interval", "open_unit_interval", "symmetric_unit", "above_minus_one")


def generate_programs(library: str, steps: Sequence[StepInfo], seed: int, count: int) -> List[str]:
    """Up to `count` distinct program names over `steps`, the k-th attempt drawn from (seed,
    library, k) alone: elementwise chains of 2-4 steps; a reduction after or before elementwise
    steps; where(x > 0, A, B) with A restricted to a domain B's side of 0 leaves (sqrt, log: the
    classic NaN gradient) and B defined there; x * x * E(x).  where(...) and poly(...) are
    sometimes followed by a reduction (a loss)."""
    chainable = [s for s in steps if s.kind in ("elementwise", "same_shape")]
    elementwise = [s for s in steps if s.kind == "elementwise"]
    reductions = [s for s in steps if s.kind == "reduction"]
    forms = ([("chain", 0.4)] if chainable else []) + ([("reduce", 0.2)] if chainable and reductions else []) \
        + ([("where", 0.2)] if len(elementwise) >= 2 and (where_of(library) or library == "numpy_ref") else []) \
        + ([("poly", 0.2)] if elementwise else [])
    if not forms:
        return []
    weights = np.array([w for _, w in forms]) / sum(w for _, w in forms)
    names: Dict[str, None] = {}
    for k in range(count * 8):
        if len(names) >= count:
            break
        rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, zlib.crc32(library.encode()), k])
        form = forms[int(rng.choice(len(forms), p=weights))][0]
        chain = _draw(form, rng, chainable, elementwise, reductions)
        if chain and (len(step_names(chain)) >= 2 or not isinstance(chain[0], Step)) and len(step_names(chain)) <= 4:
            names.setdefault(name_of(chain), None)
    return list(names)


def _pick(rng: np.random.Generator, options: Sequence[StepInfo]) -> Optional[StepInfo]:
    return options[int(rng.integers(0, len(options)))] if options else None


def _extend(rng: np.random.Generator, first: StepInfo, options: Sequence[StepInfo], n: int) -> List[StepInfo]:
    """`first` and up to n - 1 more steps, each taking the previous one's outputs in its domain."""
    out = [first]
    while len(out) < n:
        nxt = _pick(rng, [s for s in options if _fits(s.domain, out[-1].outputs)])
        if nxt is None:
            break
        out.append(nxt)
    return out


def _draw(form: str, rng: np.random.Generator, chainable: Sequence[StepInfo], elementwise: Sequence[StepInfo],
          reductions: Sequence[StepInfo]) -> Chain:
    if form == "chain":
        n = int(rng.choice([2, 3, 4], p=[0.6, 0.3, 0.1]))
        return tuple(Step(s.name) for s in _extend(rng, _pick(rng, chainable), chainable, n))
    if form == "reduce":
        r = _pick(rng, reductions)
        before = [s for s in chainable if _fits(r.domain, s.outputs)]
        if rng.random() < 0.5 and before:  # elementwise, then the reduction, sometimes one more after it
            steps = [_pick(rng, before), r]
        else:
            steps = [r]
        after = [s for s in chainable if _fits(s.domain, r.outputs)]
        if (len(steps) == 1 or rng.random() < 0.3) and after:
            steps.append(_pick(rng, after))
        return tuple(Step(s.name) for s in steps)
    tail: Chain = ()
    if reductions and rng.random() < 0.25:
        tail = (Step(_pick(rng, reductions).name),)
    if form == "where":
        restricted = [s for s in elementwise if s.domain in RESTRICTED]
        a = _pick(rng, restricted if restricted and rng.random() < 0.8 else elementwise)
        b = _pick(rng, [s for s in elementwise if s.domain == "real" and s is not a]
                  or [s for s in elementwise if s is not a])
        return (Where((Step(a.name),), (Step(b.name),)),) + tail
    return (Poly((Step(_pick(rng, elementwise).name),)),) + tail


def alternate(singles: Sequence[ApiSpec], programs: Sequence[ApiSpec]) -> List[ApiSpec]:
    """One library's single APIs and programs taking turns, so a budget that runs out leaves
    both a share."""
    out: List[ApiSpec] = []
    for i in range(max(len(singles), len(programs))):
        out += ([singles[i]] if i < len(singles) else []) + ([programs[i]] if i < len(programs) else [])
    return out


# ---- orchestrator side: blame ----------------------------------------------------------------

class BlameStopped(Exception):
    """Raised by a blame callback when the budget is spent: the finding stays the program's."""


def _match(found: Fingerprint, wanted: Fingerprint) -> int:
    """How well a finding of a part explains the program's: 3 the same verdict, scenarios and
    order, 2 the same verdict and order, 1 the same verdict, 0 another."""
    if found.verdict is not wanted.verdict:
        return 0
    if found.order != wanted.order:
        return 1
    return 3 if (found.scenarios, found.error_type) == (wanted.scenarios, wanted.error_type) else 2


def blame(finding: Finding, spec: ApiSpec, specs: Mapping[str, ApiSpec],
          direct: Callable[[Trial, ApiSpec], Optional[np.ndarray]],
          findings_of: Callable[[Trial, ApiSpec], Sequence[Finding]],
          prefer: str = "", conventions: Sequence[Any] = ()) -> Tuple[Finding, ApiSpec]:
    """Note [program blame]: the shortest part of a program that explains its finding.  Each
    step re-runs alone on the input it received inside the program (the intermediate value,
    computed by running the program's prefix directly): if one alone gives the same verdict, the
    finding is that op's, an ordinary report of that API with that input.  Otherwise the shortest
    contiguous part of the top-level chain that does (on its own input); otherwise the program's
    own.  `prefer` (a step or program name that explained this fingerprint before) is tried
    first.  `direct(trial, spec)` gives a trial's one output (None on failure), `findings_of`
    its judged findings; either may raise BlameStopped."""
    from ..core.tensors import to_record
    chain = parse(spec.name)
    trial = finding.trial
    x = next((i.value for i in trial.inputs if isinstance(i.value, TensorRecord)), None)
    if x is None:
        return finding, spec
    inputs: Dict[Chain, Optional[TensorRecord]] = {(): x}

    def input_of(pre: Chain) -> Optional[TensorRecord]:
        if pre not in inputs:
            pre_spec = program_spec(spec.library, name_of(pre), specs, conventions)
            y = direct(replace(trial, api=pre_spec.name, inputs=(InputValue("x", ArgKind.TENSOR, x, True, False),),
                               diff_outputs=None), pre_spec)
            inputs[pre] = None if y is None or y.dtype.kind != "f" else to_record(np.ascontiguousarray(y))
        return inputs[pre]

    def part_trial(part_spec: ApiSpec, rec: TensorRecord) -> Trial:
        return Trial(spec.library, part_spec.name, trial.seed, rec.dtype,
                     (InputValue(part_spec.args[0].name, ArgKind.TENSOR, rec, True, False),),
                     part_spec.differentiable_outputs, regime=trial.regime)

    def score(part_spec: ApiSpec, pre: Chain) -> Tuple[int, Optional[Finding]]:
        rec = input_of(pre)
        if rec is None:
            return 0, None
        scored = [(_match(f.fingerprint, finding.fingerprint), f) for f in findings_of(part_trial(part_spec, rec), part_spec)]
        return max(scored, key=lambda p: p[0], default=(0, None))

    steps = [(specs[f"{spec.library}:{s}"], pre) for s, pre in leaves(chain)]
    groups = [steps] + [[(program_spec(spec.library, name_of(part), specs, conventions), pre) for part, pre in sub_chains(chain)
                         if len(step_names(part)) == n] for n in range(1, len(step_names(chain)))]
    try:
        first = next((p for group in groups for p in group if p[0].name == prefer), None) if prefer else None
        if first is not None:
            s, f = score(*first)
            if f is not None and s:
                return f, first[0]
        for group in groups:  # the steps, then parts of the chain, shortest first
            best: Tuple[int, Optional[Finding], Optional[ApiSpec]] = (0, None, None)
            for part_spec, pre in dict.fromkeys(p for p in group if p != first):
                s, f = score(part_spec, pre)
                if s > best[0]:
                    best = (s, f, part_spec)
                if s == 3:
                    break
            if best[1] is not None:
                return best[1], best[2]
    except BlameStopped:
        pass
    return finding, spec
