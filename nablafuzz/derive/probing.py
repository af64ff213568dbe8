"""The probing spec source: API specs for libraries that ship no OpInfo (JAX, TensorFlow, ...).

A library's worker lists its public callables with their signatures (`nablafuzz.libraries.introspect`);
here each parameter gets a role from its name and annotation (array, axis, keepdims, integer,
index, mask, shape, ...), and the roles are laid out in argument templates, tried in an order
suited to the API: elementwise with broadcasting, same shapes, vectors, square, square with a
vector, batched square and rectangular matrices, fixed shapes for shape arguments.  Each
template runs `PROBE_TRIALS` real trials (direct call + VJP) on the library's worker, in the
domain `real`, falling back to positive and unit-interval values when outputs are non-finite.
The first template whose trials all work wins (else the best one that works at all), and one
trial with every scenario learns which AD modes the API does not support.  APIs no template
makes work are returned with the reason, never dropped silently.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..core.errors import WorkerError
from ..core.model import Execution, Outcome
from ..core.naming import SELECTION, short_name
from ..core.quantities import ALL
from ..runtime.process import Runtime
from ..runtime.runner import Runner
from ..specs.generate import generate
from ..specs.spec import CAPABILITIES, ProbeHint, spec_from_dict

PROBE_TRIALS = 3
ENTRY_BUDGET_S = 90.0  # per API: templates stop being tried after this (a slow compile, a hang)
MAX_SIZE = 24
DOMAIN_FALLBACK = ("real", "positive", "open_unit_interval", "symmetric_unit")

ARRAY = re.compile(r"ArrayLike|\bArray\b|ndarray|Tensor|~TV_")  # ~TV_: a generated TensorFlow op's type variable
SEQUENCE = re.compile(r"^(Sequence|list|tuple|List|Tuple)\[")
AXIS_NAMES = {"axis", "axes", "dim", "dimension", "dims", "dimensions"}
KEEPDIMS = {"keepdims", "keepdim", "keep_dims"}
SHAPE_NAMES = {"shape", "newshape", "new_sizes", "sizes", "out_shape", "new_shape", "broadcast_shape"}
INDEX_NAMES = {"indices", "index", "idx", "ind", "indexer", "segment_ids"}
MASK_NAMES = {"condition", "cond", "mask", "pred", "which"}
ORDER_NAMES = {"n"}  # the order of a special function, when typed as an array (polygamma(n, x))
INT_NAMES = {"n", "k", "N", "M", "num", "ord", "repeats", "deg", "order", "reps", "shift", "offset"}
SKIP_NAMES = {"dtype", "out", "precision", "preferred_element_type", "name", "device", "sharding"}
RANDOM_NAMES = {"key", "rng", "seed", "rng_key"}
MATRIX = re.compile(r"linalg|det$|inv|solve|cho|eig|svd|qr|^lu|schur|hessenberg|expm|sqrtm|logm|funm|pinv|matrix"
                    r"|lstsq|polar|^tri[lu]?$|trace|^diag|kron|matmul|^dot|inner|outer|tensordot|vdot|cond$"
                    r"|slogdet|norm$|householder|tridiagonal|toeplitz|hankel|circulant|block_diag|companion|cdist"
                    r"|triangular|cholesky|tensorinv|tensorsolve|multi_dot|matrix_power|rsf2csf")
VECTOR = re.compile(r"convolve|correlate|^poly|roots|interp|trapz|trapezoid|ediff1d|fft|unwrap|cov$|corrcoef"
                    r"|gradient|^diff$|cumulative|vander|cross|logsumexp|softmax")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # positional_only | positional_or_keyword | keyword_only | var_positional | var_keyword
    annotation: str
    required: bool
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class Entry:
    """One public callable of the library, as its worker's catalogue lists it."""

    name: str
    module: str
    params: Tuple[Param, ...]
    doc: str = ""
    aliases: Tuple[str, ...] = ()
    dtypes: Tuple[str, ...] = ()  # the float dtypes the API takes, where its library says (else both)
    structures: Tuple[Tuple[str, str], ...] = ()  # parameter -> structure its docstring states


def entry_from_dict(d: Dict[str, Any]) -> Entry:
    params = tuple(Param(p["name"], p["kind"], p.get("annotation", ""), bool(p["required"]), p.get("default"),
                         "default" in p) for p in d["params"])
    return Entry(d["name"], d["module"], params, d.get("doc", ""), tuple(d.get("aliases", ())),
                 tuple(d.get("dtypes", ())), tuple(sorted(d.get("structures", {}).items())))


def probe_dtype(spec: Dict[str, Any]) -> str:
    """float64 where the API takes it (finite differences are reliable there), else its first dtype."""
    dtypes = spec.get("dtypes", ["float64"])
    return "float64" if "float64" in dtypes else dtypes[0]


# ---- roles and templates -------------------------------------------------------------------

class NoTemplate(Exception):
    """The signature has a required parameter no template can fill (the reason is recorded)."""


def role(p: Param) -> str:
    """What one parameter is, for templates: "" means leave it at its default."""
    name, ann = p.name, p.annotation
    if p.kind == "var_keyword" or (name in SKIP_NAMES and not p.required):
        return ""
    if p.kind == "var_positional":
        return "varargs"
    if name in RANDOM_NAMES:
        raise NoTemplate(f"takes a random key {name!r}")
    if name in AXIS_NAMES:
        seq = "Sequence" in ann or "tuple" in ann.lower()
        if p.required:
            return "axes" if seq and "int |" not in ann else "axis"
        return "opt_axis" if p.default is None or isinstance(p.default, int) else ""
    if name in KEEPDIMS:
        return "keepdims"
    if p.required and "DType" in ann:
        return "dtype"
    if name in SHAPE_NAMES or "Shape" in ann:
        return "shape" if p.required else ""
    if not p.required:
        numeric = isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
        return "opt_tensor" if ARRAY.search(ann) and numeric and name not in INT_NAMES else ""
    if name in INDEX_NAMES:
        return "index"
    if name in MASK_NAMES:
        return "mask"
    if name in ORDER_NAMES and ARRAY.search(ann):
        return "order"  # an integer-valued array, e.g. polygamma(n, x)
    if ARRAY.search(ann):
        return "tensor_list" if SEQUENCE.match(ann.strip()) else "tensor"
    if name in INT_NAMES or ann.strip() in ("int", "SupportsIndex", "int | None", "Optional[int]"):
        return "int"
    if ann.strip() == "bool":
        return "bool"
    if ann.strip() == "float":
        return "float"
    if not ann or ann.strip() in ("Any", "object"):
        return "tensor"
    raise NoTemplate(f"needs a {ann} argument {name!r}")


def roles(entry: Entry) -> List[Tuple[Param, str]]:
    out = [(p, role(p)) for p in entry.params]
    if not any(r in ("tensor", "tensor_list", "varargs", "opt_tensor") for _, r in out):
        # e.g. clip(arr=None, /, min=None, max=None): the first array parameter is the input
        first = next((i for i, (p, _) in enumerate(out) if ARRAY.search(p.annotation)), None)
        if first is None:
            raise NoTemplate("has no array argument")
        out[first] = (replace(out[first][0], required=True), "tensor")
    return [(p, r) for p, r in out if r]


# Each family: the first array's layout and the layout of every other array given the first's name.
FAMILIES: Dict[str, Tuple[Dict[str, Any], Callable[[str], Dict[str, Any]]]] = {
    "elementwise": ({"rank": [0, 3]}, lambda first: {"broadcast_with": first}),
    "same_shape": ({"rank": [0, 3]}, lambda first: {"same_shape_as": first}),
    "vector": ({"dims": ["n"]}, lambda first: {"dims": ["n"]}),
    "square": ({"dims": ["n", "n"]}, lambda first: {"dims": ["n", "n"]}),
    "square_vector": ({"dims": ["n", "n"]}, lambda first: {"dims": ["n"]}),
    "batched_square": ({"dims": ["b", "n", "n"]}, lambda first: {"dims": ["b", "n", "n"]}),
    "rectangular": ({"dims": ["m", "n"]}, lambda first: {"dims": ["m"]}),
    "fixed": ({"dims": ["2", "3"]}, lambda first: {"same_shape_as": first}),
}
SHAPES = [[2, 3], [3, 2], [6], [1, 2, 3]]


def families(entry: Entry, rs: List[Tuple[Param, str]]) -> List[str]:
    short = short_name(entry.name)
    if any(r == "shape" for _, r in rs):
        return ["fixed", "elementwise"]
    if "linalg" in entry.module or MATRIX.search(short):
        return ["square", "square_vector", "batched_square", "rectangular", "elementwise", "same_shape", "vector"]
    if VECTOR.search(short):
        return ["vector", "elementwise", "same_shape", "square"]
    return ["elementwise", "same_shape", "vector", "square", "batched_square", "rectangular", "fixed"]


def template(rs: List[Tuple[Param, str]], family: str, domain: str, optional: bool) -> List[Dict[str, Any]]:
    """The argument list of one template: spec-file dicts, in call order."""
    first_layout, other_layout = FAMILIES[family]
    needs_rank = any(r in ("axis", "axes", "opt_axis") for _, r in rs)
    args: List[Dict[str, Any]] = []
    first: Optional[str] = None

    def array(name: str, keyword: bool) -> Dict[str, Any]:
        nonlocal first
        layout = dict(first_layout) if first is None else other_layout(first)
        if first is None and needs_rank and layout.get("rank") == [0, 3]:
            layout["rank"] = [1, 3]
        first = first or name
        return dict({"name": name, "domain": domain}, **layout, **({"keyword": True} if keyword else {}))

    for p, r in rs:
        keyword = p.kind == "keyword_only" or (not p.required and p.kind != "positional_only")
        if r == "tensor":
            args.append(array(p.name, keyword))
        elif r == "opt_tensor" and optional:
            args.append(array(p.name, True))
        elif r == "varargs":
            args += [array(f"{p.name}{i}", False) for i in range(2)]
        elif r == "tensor_list":
            args.append(dict(array(p.name, keyword), kind="tensor_list", length=[1, 3]))
        elif r in ("axis", "opt_axis"):
            arg = {"name": p.name, "kind": "axis", "of": first} if first else {"name": p.name, "kind": "choice",
                                                                                 "choices": [0]}
            if r == "opt_axis":
                arg["optional"] = True
            arg["keyword"] = keyword
            args.append(arg)
        elif r == "axes":
            args.append({"name": p.name, "kind": "choice", "choices": [[0], [-1]], "keyword": keyword})
        elif r == "keepdims":
            args.append({"name": p.name, "kind": "bool", "keyword": True})
        elif r == "int":
            args.append({"name": p.name, "kind": "int", "low": 1, "high": 2, "keyword": keyword})
        elif r == "bool":
            args.append({"name": p.name, "kind": "bool", "keyword": keyword})
        elif r == "float":
            args.append({"name": p.name, "kind": "float", "low": 0.1, "high": 2.0, "keyword": keyword})
        elif r == "dtype":
            args.append({"name": p.name, "kind": "dtype", "choices": ["float64", "float32"], "keyword": keyword})
        elif r == "shape":
            args.append({"name": p.name, "kind": "choice", "choices": SHAPES, "keyword": keyword})
        elif r == "index":
            args.append({"name": p.name, "dtypes": ["int64"], "differentiable": False, "low": 0, "high": 1,
                         "rank": [0, 1], "keyword": keyword})
        elif r == "order":
            args.append({"name": p.name, "dtypes": ["int64"], "differentiable": False, "low": 0, "high": 3,
                         "rank": [0, 0], "keyword": keyword})
        elif r == "mask":
            layout = {"broadcast_with": first} if first else {"rank": [0, 3]}
            args.append(dict({"name": p.name, "dtypes": ["bool"], "differentiable": False, "keyword": keyword},
                             **layout))
    return [{k: v for k, v in a.items() if v is not False or k == "differentiable"} for a in args]


# ---- running templates ---------------------------------------------------------------------

@dataclass(frozen=True)
class Attempt:
    label: str
    spec: Dict[str, Any]
    ok: int
    nonfinite: int
    why: str


def _float_outputs(ex: Execution) -> List[int]:
    direct = ex.get("direct")
    return [i for i, o in enumerate(direct.outputs) if np.asarray(o).dtype.kind == "f"] if direct else []


def _trial_status(ex: Execution) -> str:
    """"ok", "nonfinite" (works, but at non-finite values), or why it failed."""
    direct, rev = ex.get("direct"), ex.get("rev")
    if not any(i.differentiable for i in ex.trial.inputs):
        return "no differentiable input in this template"
    if direct is None or direct.outcome is not Outcome.OK:
        err = direct.error if direct is not None else None
        return f"call fails: {err.type}: {err.message[:120]}" if err else "call fails"
    if not _float_outputs(ex):
        return "no floating-point output"
    if rev is None or rev.outcome is not Outcome.OK:
        err = rev.error if rev is not None else None
        return f"VJP fails: {err.type}: {err.message[:120]}" if err else "VJP fails"
    outs = [np.asarray(direct.outputs[i], dtype=np.float64) for i in _float_outputs(ex)]
    finite = all(np.isfinite(o).all() for o in outs) and rev.value is not None and np.isfinite(rev.value)
    return "ok" if finite else "nonfinite"


def by_hand_args(args: List[Dict[str, Any]], by_hand: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A template's (or a mirrored spec's) arguments with those a hint lays out by hand replaced."""
    return [dict(by_hand[a["name"]], name=a["name"], **({"keyword": True} if a.get("keyword") else {}))
            if a["name"] in by_hand else a for a in args]


def with_structures(args: List[Dict[str, Any]], structures: Tuple[Tuple[str, str], ...]) -> List[Dict[str, Any]]:
    """Template arguments with the structures the docstring states (Note [structures from
    docstrings]), on tensor arguments that have none yet."""
    stated = dict(structures)
    return [dict(a, structure=stated[a["name"]]) if a["name"] in stated and not a.get("structure")
            and a.get("kind", "tensor") == "tensor" else a for a in args]


def with_hint(spec: Dict[str, Any], hint: Optional[ProbeHint]) -> Dict[str, Any]:
    """A mirrored spec as its hint lays out its arguments (overloads included)."""
    if hint is None or not hint.args:
        return spec
    by_hand = dict(hint.args)
    out = dict(spec, args=by_hand_args(spec.get("args", []), by_hand))
    if "overloads" in spec:
        out["overloads"] = [by_hand_args(o, by_hand) for o in spec["overloads"]]
    return out


class Prober:
    """Probes entries on one worker (one per thread)."""

    def __init__(self, library: str, runner: Runner):
        self.library, self.runner = library, runner

    def attempt(self, entry: Entry, label: str, spec: Dict[str, Any]) -> Attempt:
        ok = nonfinite = 0
        why = ""
        api = spec_from_dict(self.library, spec, f"probe of {entry.name}")
        for i in range(PROBE_TRIALS):
            trial = generate(api, 0, i, MAX_SIZE, 3, probe_dtype(spec))
            ex = self.runner.run(trial, api, ["rev"])
            floats = _float_outputs(ex)
            direct = ex.get("direct")
            if floats and direct is not None and len(floats) < len(direct.outputs) and "differentiable_outputs" not in spec:
                spec = dict(spec, differentiable_outputs=floats)
                return self.attempt(entry, label, spec)
            status = _trial_status(ex)
            ok += status == "ok"
            nonfinite += status == "nonfinite"
            why = why or ("" if status in ("ok", "nonfinite") else status)
        return Attempt(label, spec, ok, nonfinite, why)

    def probe(self, entry: Entry, hint: Optional[ProbeHint] = None) -> Tuple[Optional[Dict[str, Any]], str]:
        """(spec dict, "") or (None, why no template works).  A hint (what the library documents)
        drops the API, chooses the domain tried first, or lays out arguments by hand."""
        if hint is not None and hint.drop:
            return None, f"{hint.reason} (probe hint)"
        try:
            rs = roles(entry)
        except NoTemplate as exc:
            return None, str(exc)
        domains = DOMAIN_FALLBACK if hint is None or not hint.domain else (hint.domain,) + tuple(
            d for d in DOMAIN_FALLBACK if d != hint.domain)
        by_hand = dict(hint.args) if hint is not None else {}
        whys: List[str] = []
        deadline = time.monotonic() + ENTRY_BUDGET_S
        # the docstring's structures first; without them if no template works with them (a
        # statement about another argument than the one it was tied to)
        for stated in ([entry.structures, ()] if entry.structures else [()]):
            best: Optional[Attempt] = None
            for family in families(entry, rs):
                for optional in ([True, False] if any(r == "opt_tensor" for _, r in rs) else [False]):
                    for domain in domains:
                        if time.monotonic() > deadline:
                            whys.append(f"probing took over {ENTRY_BUDGET_S:.0f} s")
                            break
                        args = by_hand_args(with_structures(template(rs, family, domain, optional), stated), by_hand)
                        base = {"name": entry.name, "args": args,
                                **({"dtypes": list(entry.dtypes)} if entry.dtypes else {})}
                        a = self.attempt(entry, f"{family}/{domain}" + ("/all-arrays" if optional else ""), base)
                        if a.why:
                            whys.append(a.why)
                        if best is None or a.ok > best.ok:
                            best = a
                        if a.ok == PROBE_TRIALS:
                            return self.finish(entry, a, hint), ""
                        if not a.nonfinite:
                            break  # another domain only helps when values were the problem
            if best is not None and best.ok:
                return self.finish(entry, best, hint), ""
        return None, (whys[0] if whys else "outputs or VJPs are non-finite in every domain tried")

    def confirm(self, entry: Entry, spec: Dict[str, Any],
                hint: Optional[ProbeHint] = None) -> Tuple[Optional[Dict[str, Any]], str]:
        """A spec taken from another library (OneFlow from torch's): kept when its trials work
        here, with what one all-scenario trial here teaches (as its hint lays it out)."""
        if hint is not None and hint.drop:
            return None, f"{hint.reason} (probe hint)"
        try:
            a = self.attempt(entry, f"as {entry.doc}", with_hint(spec, hint))
        except WorkerError as exc:
            if "UnknownApi" in str(exc):
                return None, f"not in {self.library} ({str(exc).split(': ', 2)[-1][:120]})"
            raise
        if a.ok:
            return self.finish(entry, a, hint), ""
        return None, a.why or "outputs or VJPs are non-finite in every trial"

    def finish(self, entry: Entry, a: Attempt, hint: Optional[ProbeHint] = None) -> Dict[str, Any]:
        """The spec of the winning template, with what one all-scenario trial teaches."""
        api = spec_from_dict(self.library, a.spec, f"probe of {entry.name}")
        for i in range(2 * PROBE_TRIALS):  # a trial whose call works: else no AD mode runs, nothing is learnt
            trial = generate(api, 0, i, MAX_SIZE, 3, probe_dtype(a.spec))
            ex = self.runner.run(trial, api, ALL)
            if _trial_status(ex) in ("ok", "nonfinite"):
                break
        unsupported = [s for s in CAPABILITIES if (r := ex.get(s)) is not None and r.outcome is Outcome.UNSUPPORTED]
        again = self.runner.run(trial, api, ())
        spec = dict(a.spec, capabilities=[c for c in CAPABILITIES if c not in unsupported], support="observed")
        if unsupported:
            spec["unsupported"] = unsupported
        if SELECTION.search(short_name(entry.name)):
            spec["kinks"] = "selection"
        if not _same_outputs(ex, again):
            spec["random"] = True
        aliases = f"; aliases: {', '.join(entry.aliases)}" if entry.aliases else ""
        hinted = f"; hint: {hint.reason}" if hint is not None else ""
        spec["notes"] = f"probed: {a.label}, {a.ok}/{PROBE_TRIALS} trials valid{hinted}{aliases}"
        return spec


def _same_outputs(a: Execution, b: Execution) -> bool:
    x, y = a.get("direct"), b.get("direct")
    if x is None or y is None or len(x.outputs) != len(y.outputs):
        return x is None and y is None
    return all(np.array_equal(np.asarray(p), np.asarray(q), equal_nan=True) for p, q in zip(x.outputs, y.outputs))


def probe_entries(runtime: Runtime, entries: Sequence[Entry], log_dir: Path, workers: int = 2,
                  progress: Optional[Callable[[str], None]] = None,
                  hints: Optional[Dict[str, ProbeHint]] = None,
                  given: Optional[Dict[str, Dict[str, Any]]] = None) -> Iterator[Tuple[Entry, Optional[Dict[str, Any]], str]]:
    """(entry, spec or None, why not) for every entry, in order, probed on `workers` workers;
    an entry with a `given` spec (from a mirrored library) is confirmed instead of probed."""
    local = threading.local()
    runners: List[Runner] = []
    lock = threading.Lock()

    def one(entry: Entry) -> Tuple[Entry, Optional[Dict[str, Any]], str]:
        if not hasattr(local, "prober"):
            with lock:
                runner = Runner(runtime, log_dir / f"probe-{runtime.library}-{len(runners)}.log", 20.0)
                runners.append(runner)
            local.prober = Prober(runtime.library, runner)
        try:
            hint = (hints or {}).get(entry.name)
            if given and entry.name in given:
                spec, why = local.prober.confirm(entry, given[entry.name], hint)
            else:
                spec, why = local.prober.probe(entry, hint)
        except Exception as exc:  # noqa: BLE001 - one API's probe failing costs that API only
            spec, why = None, f"probe failed: {type(exc).__name__}: {str(exc)[:160]}"
        if progress:
            progress(f"{entry.name}: {'ok' if spec else why}")
        return entry, spec, why

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield from pool.map(one, entries)
    finally:
        for r in runners:
            r.close()
