"""Repro scripts: a bug report -> a self-contained Python script (generated output for humans).

Literal inputs and tangents u, w; v from the output shapes by an inlined copy of `direction`;
the report's scenarios recomputed with the library's public AD API only (`jit`: the VJP of the
library's compiled call: torch.compile, jax.jit or tf.function(jit_compile=True)), each value printed, then
`DISAGREEMENT: ...` (exit 1) or `AGREEMENT: ...` (exit 0).  Status and crash verdicts just call the
failing scenario.  Nothing from a report is executed here; names are validated (Note [repro names]).
"""
from __future__ import annotations

import inspect
import keyword
import math
import re
import sys
import textwrap
from typing import Container, Dict, List, Optional, Sequence, Tuple

from ..core.errors import NablaError
from ..core.fingerprint import describe as describe_fingerprint
from ..core.model import ArgKind, Aspect, BugReport, InputValue, TensorRecord, Trial
from ..core.quantities import COMPILED, ENTRY_POINTS, KERNELS, NAMES, STEP
from ..core.quantities import describe as describe_scenario
from ..core.quantities import direction
from ..libraries import LIBRARIES, describe
from ..libraries.descriptor import Renderer
from ..libraries.entry_points import entry_value
from ..oracle.tolerance import DERIVATIVE
from ..worker.programs import ProgramError, Where, expression, is_program, parse, plain, step_names, terms, where_of


class ReproError(NablaError):
    """A report that cannot be rendered as a repro script (unknown library, unsafe name, ...)."""


# Script text: the shared numpy part, each library's AD helpers and the driver (one blank line
# between functions here; `render` restores PEP 8's two).
DIRECTION = '''
def direction(seed, tag, index, shape, dtype):
    """Copy of nablafuzz.core.quantities.direction: entries +-[0.5, 1.5) on a 2^-10 grid, from PCG64."""
    salt = sum((i + 1) * ord(c) for i, c in enumerate(tag))
    rng = np.random.Generator(np.random.PCG64([seed & 0xFFFFFFFF, seed >> 32, salt, index]))
    n = int(np.prod(shape)) if shape else 1
    mag, sign = rng.random(n), rng.random(n)
    return (np.where(sign < 0.5, -1.0, 1.0) * (0.5 + np.floor(mag * 1024) / 1024)).reshape(shape).astype(dtype)
'''  # the repro scripts' copy of core.quantities.direction (model scripts too: modelrepro.py)
_COMMON = DIRECTION + '''
def cast(a, dtype):
    if isinstance(a, list):
        return [cast(x, dtype) for x in a]
    return a.astype(dtype) if dtype and a.dtype.kind == "f" else a

def pick(out):  # the differentiated outputs, of the call's outputs as `flatten` lists them
    outs = flatten(out)
    return outs if DIFF_OUTPUTS is None else [outs[i] for i in DIFF_OUTPUTS]

def cotangents(outs):  # one cotangent v per differentiated output, from its shape and dtype
    index = range(len(outs)) if DIFF_OUTPUTS is None else DIFF_OUTPUTS
    return [direction(SEED, "v", j, o.shape, str(o.dtype)) for j, o in zip(index, outs)]

def project(a, b):
    """(<a, b>, sum |a||b|) in float64: every scenario is such a projection."""
    pairs = [(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) for x, y in zip(a, b)]
    for k, (x, y) in enumerate(pairs):
        if x.shape != y.shape:  # a gradient has its input's shape, a tangent its output's
            raise ValueError(f"WrongShape: derivative and direction {k} have shapes {x.shape} and {y.shape}")
    return sum((float(np.sum(x * y)) for x, y in pairs), 0.0), sum((float(np.sum(abs(x * y))) for x, y in pairs), 0.0)

def step_fits(xs, ds, h):  # whether x + h*d moves x by h*d (huge inputs absorb the step)
    with np.errstate(invalid="ignore", over="ignore"):
        return all(np.all(np.abs(((x + h * d) - x) - h * d) <= 1e-6 * np.abs(h * d)) for x, d in zip(xs, ds))

def richardson(scalar, h):
    """Central differences at h, h/2, h/4 extrapolated twice: (value, error estimate, scale).
    A second difference that does not shrink with h is a kink: the reference is then unusable."""
    p0, ks = scalar(0.0), (1.0, 0.5, 0.25)
    ps = [(scalar(h * k), scalar(-h * k)) for k in ks]
    ds = [(plus - minus) / (2 * h * k) for (plus, minus), k in zip(ps, ks)]
    curv = [(plus - 2 * p0 + minus) / (h * k) for (plus, minus), k in zip(ps, ks)]
    r1, r2 = (4 * ds[1] - ds[0]) / 3, (4 * ds[2] - ds[1]) / 3
    roundoff = 8 * np.finfo(np.float64).eps * max(abs(p) for p in (p0,) + sum(ps, ())) / (h * 0.25)
    err = abs(r2 - r1) + roundoff
    kinked = abs(curv[2]) > 0.5 * abs(curv[0]) and abs(curv[2]) > 1e-6 * max(abs(d) for d in ds) + 4 * roundoff
    if kinked or not np.isfinite(r2) or not np.isfinite(err):
        return float("nan"), float("inf"), float("nan")
    return float(r2), float(err), float(max(abs(d) for d in ds))
'''


_MAIN = '''
def fd(name, vs):
    """Central differences (absolute step STEP) in float64 of <v, f> along u, of Q along w, or
    (fd.rev.rev) of the second-order Q2 along z."""
    f, xs = bind("float64")
    us, ws, zs, vs = cast(US, "float64"), cast(WS, "float64"), cast(ZS, "float64"), cast(vs, "float64")
    inner = name.partition(".")[2]
    along = zs if "." in inner else ws if inner else us
    if not (step_fits(xs, along, STEP / 4) and step_fits(xs, along, STEP)):
        return float("nan"), float("nan"), None  # an input so large that it absorbs the step
    def scalar(h):
        moved = [x + h * d for x, d in zip(xs, along)]
        if "." in inner:
            return second_order(*inner.split("."), f, moved, us, vs, ws)[0]
        if inner:
            return first_order(inner, f, moved, us, vs)[0]
        return project(vs, direct(f, moved))[0]
    value, error, scale = richardson(scalar, STEP)
    print(f"  ({name}: finite-difference error estimate {error:.3g})")
    return value, scale, None

def run(name, f, xs, vs):
    """One scenario -> (value, scale, primal outputs or None)."""
    if name == "direct":
        return None, None, direct(f, xs)
    if name == "jit":  # before first order: the VJP of the compiled call
        return first_order("rev", compiled(f), xs, US, vs)
    if name.split(".")[0] == "fd":
        return fd(name, vs)
    if name in ("jacrev", "jacfwd", "vmap", "graph", "hessian"):  # the transforms users call (entry_value)
        return entry_value(name, ENTRY, lambda *a: tuple(f(list(a))), [native(x) for x in xs], US, vs, WS,
                           project) + (None,)
    if "." not in name:
        return first_order(name, f, xs, US, vs)
    if name.count(".") == 2:
        return third_order(*name.split("."), f, xs, US, vs, WS, ZS) + (None,)
    return second_order(*name.split("."), f, xs, US, vs, WS) + (None,)

def outputs_close(got, want, atol, rtol):
    if [np.shape(g) for g in got] != [np.shape(w) for w in want]:
        return False, math.inf
    g, w = (np.concatenate([np.ravel(a).astype(np.float64) for a in arrays] + [np.zeros(0)]) for arrays in (got, want))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - w)
        bad = ~((np.isnan(g) & np.isnan(w)) | (np.isinf(g) & (g == w)) | (err <= atol + rtol * np.abs(w)))
    return not bad.any(), float(np.max(err[bad], initial=0.0))

def check(results, a, b, aspect, atol, rtol):
    (va, sa, oa), (vb, sb, ob) = results[a], results[b]
    if aspect == "value":
        ok, diff = outputs_close(oa, ob, atol, rtol)
        shown = f"{a} outputs vs {b} outputs, max_abs={diff:.3g}"
    else:
        scale = max([s for s in (abs(va), abs(vb), sa, sb) if s is not None and math.isfinite(s)], default=0.0)
        finite = math.isfinite(va) and math.isfinite(vb)  # else agree if both NaN or the same inf
        ok = abs(va - vb) <= atol + rtol * scale if finite else (math.isnan(va) and math.isnan(vb)) or va == vb
        shown = f"{a} = {va!r} vs {b} = {vb!r}, max_abs={abs(va - vb):.3g} (scale {scale:.3g})"
    return f"{'AGREEMENT' if ok else 'DISAGREEMENT'}: {shown}, atol={atol:g} rtol={rtol:g}"

def main():
    f, xs = bind()
    vs = cotangents(direct(f, xs))
    results = dict(EXPECTED)
    for name, what in SCENARIOS.items():
        value, _, outs = results[name] = run(name, f, xs, vs)
        print(f"{name} ({what}) = {[o.tolist() for o in outs] if value is None else repr(value)}")
    if not PAIRS:
        print(f"COMPLETED: {', '.join(SCENARIOS)} ran without an error")
        return 0
    lines = sorted((check(results, *pair) for pair in PAIRS), key=lambda line: line.startswith("DIS"))
    print("\\n".join(lines))
    return 1 if lines[-1].startswith("DISAGREEMENT") else 0

if __name__ == "__main__":
    sys.exit(main())
'''


_OPS = "from nablafuzz.libraries.numpy_ref.adapter import OPS"
_IMPORTS = ["import math", "import sys", "", "import numpy as np"]
RENDERERS: Dict[str, Renderer] = {lib: describe(lib).renderer for lib in LIBRARIES}  # each library's record

# Note [repro names]
# API, argument and dtype names become code, so each must be a plain (dotted) identifier; values are only
# literals.  A dotted API outside its library, or a standard-library `module:function` (os:system), is refused.
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _identifier(name: str, what: str) -> str:
    if not _DOTTED.match(name) or any(keyword.iskeyword(p) for p in name.split(".")):
        raise ReproError(f"repro: {what} {name!r} is not a plain Python name; refusing to write it into a script")
    return name


def _keyword(name: str, text: str) -> str:
    """`name=value`, or `**{'param:weight': value}` for a name that is no identifier (the name
    is written as a string literal, never as code)."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return f"{name}={text}"
    return f"**{{{name!r}: {text}}}"


def _user_api(api: str) -> Tuple[str, str]:
    """`pkg.module:attr.path` -> (import line, expression)."""
    module, _, attr = api.partition(":")
    _identifier(module, "module"), _identifier(attr, "attribute")
    if module.split(".")[0] in getattr(sys, "stdlib_module_names", ()):
        raise ReproError(f"repro: API {api!r} names a standard-library module; refusing to call it from a script")
    return f"from {module} import {attr.split('.')[0]}", attr


def _library_api(api: str, renderer: Renderer) -> Tuple[List[str], str]:
    """(import lines, call expression) of a dotted library API or a `module:function`."""
    if ":" in api:
        line, expr = _user_api(api)
        return [line], expr
    roots = dict(renderer.roots)
    root, _, rest = _identifier(api, "API").partition(".")
    if root not in roots:
        raise ReproError(f"repro: API {api!r} is outside its library (expected {' or '.join(sorted(roots))}.* "
                         "or module:function)")
    lines = _module_import(api, renderer.head) if renderer.submodules and roots[root] == root else []
    return lines, f"{roots[root]}.{rest}" if rest else roots[root]


def _module_import(api: str, head: Sequence[str]) -> List[str]:
    """`import jax.scipy.stats.norm` for jax.scipy.stats.norm.logpdf: `import jax` need not load every
    submodule.  The module is the API's parent (catalogued APIs are attributes of modules), less any
    trailing class name (jax.scipy.spatial.transform.Rotation.from_quat); a top-level API needs none."""
    parts = api.split(".")[:-1]
    while parts and parts[-1][:1].isupper():
        parts.pop()
    line = f"import {'.'.join(parts)}"
    return [line] if len(parts) > 1 and not any(h == line or h.startswith(line + " as ") for h in head) else []


def _records(value) -> Tuple[TensorRecord, ...]:
    items = value if isinstance(value, tuple) else (value,)
    return tuple(v for v in items if isinstance(v, TensorRecord))


def _bound(i: InputValue, numpy_ref: bool) -> List[TensorRecord]:
    """The input's tensors bound as differentiable arguments (numpy_ref: every plain float tensor)."""
    floats = [r for r in _records(i.value) if r.dtype.startswith(("float", "bfloat"))]
    return floats if (isinstance(i.value, TensorRecord) if numpy_ref else i.differentiable) else []


def _literal(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "float('nan')" if math.isnan(value) else f"float('{'-' if value < 0 else ''}inf')"
    if isinstance(value, tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"  # tuples travel to workers as lists
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise ReproError(f"repro: cannot write a literal for {type(value).__name__}")


def _array(rec: TensorRecord, indent: int) -> str:
    _identifier(rec.dtype, "dtype")
    items = ", ".join(_literal(v) for v in rec.values)
    if len(items) + indent > 60:
        pad = " " * (indent + 4)
        items = "\n" + "\n".join(textwrap.wrap(items, 100 - indent, initial_indent=pad, subsequent_indent=pad,
                                               break_long_words=False, break_on_hyphens=False)) + "\n" + " " * indent
    return f'np.array([{items}], dtype="{rec.dtype}").reshape({tuple(rec.shape)!r})'


OTHERS = "others"  # a cross-library report's reference: what the class's other libraries computed


def _expected(report: BugReport) -> str:
    """EXPECTED: for a cross-library report, the other libraries' value (value, scale, outputs)
    as literals, since those libraries are not imported here; empty otherwise."""
    ds = [d for d in report.evidence.disagreements if d.scenarios[1:] == (OTHERS,)]
    exact = {d.scenarios[1]: float(d.expected) for d in report.evidence.disagreements
             if d.scenarios[1].split(".")[0] == "mp" and d.expected is not None}
    if exact:  # mpmath is not a library of the runtimes: the reference as computed for the report
        items = ", ".join(f"{k!r}: ({v!r}, None, None)" for k, v in exact.items())
        return (f"EXPECTED = {{{items}}}  # the 50-digit mpmath reference of these inputs and directions, "
                f"as computed for the report (mpmath.diff of {report.fingerprint.api.split('.')[-1]})")
    if not ds:
        return "EXPECTED = {}"
    who = "# computed by the other libraries of the class (see the finding above)"
    if report.evidence.expected:
        outs = "[" + ", ".join(_array(r, 8) for r in report.evidence.expected) + "]"
        return f"EXPECTED = {{{OTHERS!r}: (None, None, {outs})}}  {who}"
    return f"EXPECTED = {{{OTHERS!r}: ({float(ds[0].expected)!r}, None, None)}}  {who}"


def _data(report: BugReport, numpy_ref: bool, diff_outputs: Optional[Sequence[int]]) -> List[str]:
    """SEED, STEP, DIFF_OUTPUTS, SCENARIOS, PAIRS, INPUTS and the tangents US, WS, ZS as literals."""
    t, pairs = report.trial, _pairs(report)
    inputs = [f"    {i.name!r}: " + (_array(i.value, 4) if isinstance(i.value, TensorRecord) else
                                     "[" + ", ".join(_array(r, 8) for r in _records(i.value)) + "]") + ","
              for i in t.inputs if _records(i.value)]
    recs = [r for i in t.inputs for r in _bound(i, numpy_ref)]
    outs = None if diff_outputs is None else [int(j) for j in diff_outputs]
    return ["", f"SEED = {int(t.seed)}", f"STEP = {STEP!r}  # finite-difference step", f"DIFF_OUTPUTS = {outs!r}",
            f"SCENARIOS = {_scenarios(report, pairs)!r}", f"PAIRS = {pairs!r}  # (a, b, aspect, atol, rtol)",
            "INPUTS = {  # the trial's inputs, exact", *inputs, "}", _expected(report),
            "# tangents u, w and z, one per differentiable input, as nablafuzz derived them from SEED",
            _tangents("US", "u", recs, t.seed), _tangents("WS", "w", recs, t.seed), _tangents("ZS", "z", recs, t.seed)]


def _tangents(name: str, tag: str, recs: Sequence[TensorRecord], seed: int) -> str:
    arrays = [TensorRecord(r.dtype, r.shape, tuple(float(x) for x in direction(seed, tag, k, r.shape, r.dtype).ravel()))
              for k, r in enumerate(recs)]
    return f"{name} = [" + "".join(f"\n    {_array(a, 4)}," for a in arrays) + ("\n]" if arrays else "]")


def _pairs(report: BugReport) -> List[Tuple[str, str, str, float, float]]:
    """(a, b, aspect, atol, rtol) for each recorded disagreement: what the script checks."""
    pairs = [(d.scenarios[0], d.scenarios[1], d.aspect.value, d.tolerance.atol, d.tolerance.rtol)
             for d in report.evidence.disagreements]
    fp = report.fingerprint
    if not pairs and "derivative" in fp.verdict.value and len(fp.scenarios) > 1:
        tol = DERIVATIVE.get(report.trial.dtype, DERIVATIVE["float64"])
        pairs = [(fp.scenarios[0], fp.scenarios[1], Aspect.DERIVATIVE.value, tol.atol, tol.rtol)]
    # the kernels scenario needs a second worker: a script checks the pairs that show the bug without it
    return [p for p in pairs if KERNELS not in p[:2]] or pairs


def _scenarios(report: BugReport, pairs: Sequence[tuple]) -> Dict[str, str]:
    paired = {s for p in pairs for s in p[:2]}
    names = dict.fromkeys(s for s in list(report.fingerprint.scenarios) + [s for p in pairs for s in p[:2]]
                          if s != OTHERS and s.split(".")[0] != "mp" and (s != KERNELS or KERNELS in paired))
    unknown = [s for s in names if any(part not in NAMES for part in s.split("."))]
    if unknown:
        raise ReproError(f"repro: report {report.key} names unknown scenario(s) {unknown}")
    return {s: describe_scenario(s) for s in names}


DTYPE_NAMES = ("float64", "float32", "float16", "int64", "int32", "uint8", "uint32", "bool")


def _argument(i: InputValue, first: int, dtype: str = "{name!r}") -> Tuple[str, int]:
    """(expression inside f(d), number of differentiable slots it uses) for one input; a dtype
    argument becomes the library's dtype object (`dtype` formats its name)."""
    n, key = len(_bound(i, False)), f"a[{i.name!r}]"
    if i.kind is ArgKind.DTYPE and i.value is not None:
        if i.value not in DTYPE_NAMES:
            raise ReproError(f"repro: dtype argument {i.name!r} is {i.value!r}, not one of {list(DTYPE_NAMES)}")
        return dtype.format(name=i.value), 0
    if isinstance(i.value, TensorRecord):
        return (f"d[{first}]" if n else f"native({key})"), n
    if _records(i.value):
        return ("[" + ", ".join(f"d[{first + k}]" for k in range(n)) + "]" if n else f"[native(t) for t in {key}]"), n
    return _literal(i.value), 0


def _xs(trial: Trial, numpy_ref: bool) -> str:
    return "[" + ", ".join(f"a[{i.name!r}]" + ("" if isinstance(i.value, TensorRecord) else f"[{k}]")
                           for i in trial.inputs for k, _ in enumerate(_bound(i, numpy_ref))) + "]"


def _projected(kind: str, text: str, rank: int, permute: str, triangle: Tuple[str, str]) -> str:
    if kind == "symmetric":
        return f"(({text}) + {permute.format(x=text, p=list(range(rank - 2)) + [rank - 1, rank - 2])}) * 0.5"
    return triangle[0 if kind == "lower" else 1].format(x=text)


def _composed_bind(trial: Trial, expr: str, permute: str = "", triangle: Tuple[str, str] = ("", ""),
                   dtype: str = "{name!r}") -> str:
    """bind(dtype) -> (f, xs): the call as a function of its differentiable inputs d (inputs
    and output permuted as the trial's layout says)."""
    args, slot = [], 0
    layout, projections = dict(trial.layout), dict(trial.projections)
    if (layout or projections) and not permute:
        raise ReproError(f"repro: {trial.library} scripts cannot permute axes (layout {layout}); replay the report")
    for i in trial.inputs:
        text, n = _argument(i, slot, dtype)
        slot += n
        text = permute.format(x=text, p=list(layout[i.name])) if i.name in layout else text
        if i.name in projections:  # Note [structured directions]: directions kept as nablafuzz ran it
            text = _projected(projections[i.name], text, len(_records(i.value)[0].shape), permute, triangle)
        args.append(_keyword(i.name, text) if i.keyword else text)
    call = f"{expr}({', '.join(args)})"
    if len(call) > 80:
        call = f"{expr}(\n" + "".join(f"            {a},\n" for a in args) + "        )"
    if "" in layout:
        call = permute.format(x=call, p=list(layout[""]))
    return (f'\ndef bind(dtype=None):\n    """{expr} as a function of its differentiable inputs d, '
            "and their values (cast to dtype).\"\"\"\n"
            "    a = {name: cast(value, dtype) for name, value in INPUTS.items()}\n\n"
            f"    def f(d):\n        return pick({call})\n    return f, {_xs(trial, False)}\n")


def _numpy_ref_bind(trial: Trial) -> str:
    """numpy_ref binds every float tensor positionally and passes everything else by name."""
    params = [f"{i.name!r}: " + (f"a[{i.name!r}].item()" if isinstance(i.value, TensorRecord) else
                                 f"a[{i.name!r}]" if _records(i.value) else _literal(i.value))
              for i in trial.inputs if not _bound(i, True)]
    return ('\ndef bind(dtype=None):\n    """(keyword parameters, float inputs cast to dtype), as numpy_ref binds."""\n'
            "    a = {name: cast(value, dtype) for name, value in INPUTS.items()}\n"
            f"    return {{{', '.join(params)}}}, {_xs(trial, True)}\n")


def summarise_input(i: InputValue) -> str:
    """`x: float64[3,4]`, `xs: [float32[2], float32[2]]` or `alpha=0.5`."""
    shapes = [f"{r.dtype}[{','.join(str(d) for d in r.shape)}]" for r in _records(i.value)]
    if isinstance(i.value, TensorRecord):
        return f"{i.name}: {shapes[0]}"
    return f"{i.name}: [{', '.join(shapes)}]" if shapes else f"{i.name}={_literal(i.value)}"


def _header(report: BugReport) -> List[str]:
    t = report.trial
    lines = [f"Repro: {describe_fingerprint(report.fingerprint)}",
             f"Fingerprint key {report.key}; status {report.status.value}; severity {report.evidence.severity}; "
             f"seen {report.occurrences} time(s), {report.first_seen} .. {report.last_seen}",
             f"Versions seen: {', '.join(report.versions_seen) or 'unknown'}",
             f"Finding: {report.evidence.message}",
             f"Trial: {t.api}({', '.join(summarise_input(i) for i in t.inputs)}), seed {t.seed}, dtype {t.dtype}",
             "Generated by nablafuzz; run with the library's own python."]
    return ["# " + re.sub(r"\s+", " ", line).strip() for line in lines] + _IMPORTS


def _declared(library: str, api: str, declared: Container[str]) -> bool:
    """Whether a loaded spec declares the API; for a program, every one of its steps."""
    if not is_program(api):
        return f"{library}:{api}" in declared
    try:
        return all(f"{library}:{s}" in declared for s in step_names(parse(api)))
    except ProgramError:
        return False


def _program(trial: Trial, renderer: Renderer) -> List[str]:
    """A program (Note [program names]) as plain library code: `def program(x)`, one line per
    call, each name validated as any API's."""
    chain = parse(trial.api)
    names = list(dict.fromkeys(step_names(chain)))
    if any(isinstance(t, Where) for t in terms(chain)):
        if not where_of(trial.library):
            raise ReproError(f"repro: no `where` is known for {trial.library}; replay the report")
        names.append(where_of(trial.library))
    lines: List[str] = []
    exprs: Dict[str, str] = {}
    for name in names:
        more, exprs[name] = _library_api(name, renderer)
        lines += [line for line in more if line not in lines and line not in renderer.head]
    body: List[str] = []

    def assign(y: str) -> str:  # one line per call
        body.append(f"    t{len(body) + 1} = {y}")
        return f"t{len(body)}"
    out = expression(chain, "x", exprs.__getitem__, exprs.get(where_of(trial.library), "where"), assign)
    return lines + ["", "", "def program(x):", '    """The program nablafuzz fuzzed as one API, as library code."""',
                    *body, f"    return {out}", ""]


def _numpy_ref_program(api: str) -> List[str]:
    """numpy_ref: the steps' ops composed by nablafuzz.worker.programs (their hand-written derivatives
    by the chain, product and selection rules), each step imported as a single API's is."""
    chain = parse(api)
    names = list(dict.fromkeys(step_names(chain)))
    lines = ([_OPS] if any(":" not in n for n in names) else []) + ["from nablafuzz.worker.programs import build_program"]
    table = []
    for name in names:
        if ":" in name:
            line, expr = _user_api(name)
            lines += [line] if line not in lines else []
        else:
            expr = f"OPS[{name!r}]"
        table.append(f"    {name!r}: {expr},")
    shown = plain(chain, call=lambda n: n.rpartition(":")[2])
    return lines + ["", f"# the program: {shown}", "STEPS = {", *table, "}",
                    f"op = build_program({api!r}, STEPS.__getitem__, 'numpy_ref')"]


def render(report: BugReport, declared: Container[str]) -> str:
    """A self-contained repro script for `report` (differentiated outputs as the trial records).
    The script calls the report's API only if a loaded spec declares it: `declared` holds the
    loaded specs' ids (`library:api`), and the trial must name what its fingerprint names."""
    trial, fp = report.trial, report.fingerprint
    diff_outputs = trial.diff_outputs
    renderer = RENDERERS.get(trial.library)
    if renderer is None:
        raise ReproError(f"repro: no script renderer for library {trial.library!r} (known: {sorted(RENDERERS)})")
    if (trial.library, trial.api) != (fp.library, fp.api) or not _declared(fp.library, fp.api, declared):
        raise ReproError(f"repro: the report names {trial.library}:{trial.api}, which no loaded spec declares "
                         f"(fingerprint: {fp.library}:{fp.api}); no script calls it (fix: pass its spec file "
                         "with --specs)")
    if KERNELS in _scenarios(report, _pairs(report)):
        raise ReproError(f"repro: the {KERNELS!r} scenario runs a second worker with other kernels (environment "
                         "set before the library loads), which one script cannot; replay the report with "
                         "`nablafuzz replay` instead")
    if COMPILED in _scenarios(report, _pairs(report)) and not renderer.compiler:
        raise ReproError(f"repro: {trial.library} scripts have no compiled form for the {COMPILED!r} scenario "
                         "(compiled VJP); replay the report with `nablafuzz replay` instead")
    if trial.library == "numpy_ref":
        if trial.projections:
            raise ReproError("repro: numpy_ref scripts do not symmetrise structured inputs; replay the report")
        if is_program(trial.api):
            imports, bind = _numpy_ref_program(trial.api), _numpy_ref_bind(trial)
        else:
            line, op = _user_api(trial.api) if ":" in trial.api else (_OPS, f"OPS[{trial.api!r}]")
            imports, bind = [line, "", f"op = {op}"], _numpy_ref_bind(trial)
    elif is_program(trial.api):
        imports, bind = list(renderer.head) + _program(trial, renderer), _composed_bind(trial, "program", renderer.permute)
    else:
        lines, expr = _library_api(trial.api, renderer)
        if renderer.layer is not None and trial.module is None and trial.api.split(".")[-1][:1].isupper():
            raise ReproError("repro: this layer report predates layer scripts (its trial lacks the layer's init "
                             "arguments); replay it with `nablafuzz replay`, or let the next campaign refresh it")
        if trial.module is not None:
            if renderer.layer is None:
                raise ReproError(f"repro: layer specs of {trial.library} have no script renderer yet")
            init, kwargs = trial.module
            named = "{" + ", ".join(f"{k!r}: {_literal(v)}" for k, v in kwargs) + "}"
            lines, expr = lines + [""] + renderer.layer(expr, _literal(init), named), "layer"
        imports, bind = list(renderer.head) + lines, _composed_bind(trial, expr, renderer.permute, renderer.triangle, renderer.dtype)
    helpers = renderer.helpers
    if set(_scenarios(report, _pairs(report))) & set(ENTRY_POINTS):
        if not renderer.entry:
            raise ReproError(f"repro: {trial.library} scripts have no entry-point transforms; replay the report")
        imports = ["import types"] + imports
        helpers += "".join("\n" + inspect.getsource(fn) for fn in (entry_value,) + renderer.entry_helpers)
        helpers += f"\nENTRY = {renderer.entry}\n"
    code = re.sub(r"\n+(?=(def |ZERO |to_numpy =|ENTRY =|if __name__))", "\n\n\n", _COMMON + helpers + bind + _MAIN)
    data = _data(report, trial.library == "numpy_ref", diff_outputs)
    return "\n".join(_header(report) + imports + data) + "\n\n\n" + code.lstrip("\n")
