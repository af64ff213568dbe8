"""API specifications: load and validate `api_specs/<library>/*.yaml`, and write derived ones.

A spec file is YAML: `library: <id>` and `apis: [ {name, args: [...], ...}, ... ]`.  Every
validation error names the file and line, the API and the field, and says how to fix it.
Spec *sources* derive specs from a library's own metadata; they run inside that library's
worker (the orchestrator never imports a DL library) and return plain dicts in this format,
which `write_specs` turns into a file.
"""
from __future__ import annotations

import fnmatch
import math
import re
import reprlib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from ..core.domains import DOMAINS
from ..core.errors import SpecError
from ..core.model import ApiSpec, ArgKind, ArgSpec, KnownIssue, Tolerance, Verdict
from ..core.quantities import FIRST_ORDER, SECOND_ORDER
from ..core.structures import STRUCTURES
from ..core.tensors import FLOAT_DTYPES
from ..libraries import ENV as ADAPTERS_ENV
from ..libraries import known_adapters
from .batching import BATCHING_FILE, load_batched, with_batching
from .reference import FUNCTIONS, REFERENCES_FILE, load_references, with_references
from .regimes import REGIMES_FILE, load_edges, with_edges

CAPABILITIES = FIRST_ORDER + tuple(s for s in SECOND_ORDER if not s.startswith("fd."))
KINK_POLICIES = ("subgradient", "selection", "none")
_API_FIELDS = {f.name for f in fields(ApiSpec)} - {"library", "source", "edges"}  # edges: regimes.yaml
_ARG_FIELDS = {f.name for f in fields(ArgSpec)}
SUPPORT = ("declared", "observed")
RANK_MAX = 8  # the largest rank a campaign generates (config max_rank)
LENGTH_MAX = 32  # tensors in a tensor_list
BOUND_MAX = 1e15  # |low|, |high|: generation turns them into int64 and float64


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser where installed
    """Safe YAML loader that remembers each mapping's line as `__line__`."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


class _Seq(list):
    """A YAML sequence that remembers the line of each item (scalars carry no line of their own)."""

    lines: List[int] = []


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _Seq:
    seq = _Seq(loader.construct_sequence(node, deep=True))
    seq.lines = [item.start_mark.line + 1 for item in node.value]
    return seq


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _frozen(value: Any) -> Any:
    """Lists (e.g. a kernel size) become tuples, so specs stay immutable."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


class _Repr(reprlib.Repr):
    """A bounded repr: a value from a file may be huge, deep or (through YAML aliases) shared
    many times over; a message shows its beginning, without our line bookkeeping."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxset = 3, 8, 8, 8
        self.maxstring, self.maxother, self.maxlong = 80, 80, 40

    def repr_dict(self, x: dict, level: int) -> str:
        return super().repr_dict({k: v for k, v in x.items() if k != "__line__"}, level)

    repr__Seq = reprlib.Repr.repr_list


_REPR = _Repr()


SHOWN_MAX = 200


def _shown(data: Any) -> str:
    """A value as the user wrote it (without our line bookkeeping), at most SHOWN_MAX characters."""
    text = _REPR.repr(data)
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX - 3] + "..."


def _keys(keys: Iterable[Any]) -> List[str]:
    """Mapping keys for a message, sorted (YAML keys may be numbers, null or dates as well)."""
    return sorted(_shown(k) if not isinstance(k, str) else k for k in keys)


# ---- value checks: each takes any YAML value and says whether it fits ------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """An int or float that converts to a float (an int of 400 digits does not)."""
    if not (_is_int(v) or isinstance(v, float)):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def _is_bound(v: Any) -> bool:
    return _is_number(v) and math.isfinite(float(v)) and abs(float(v)) <= BOUND_MAX


def _is_plain(v: Any, depth: int = 3) -> bool:
    """An argument value: a number, string, bool or null, or a list (of lists) of them."""
    if v is None or isinstance(v, (str, bool, float)) or _is_int(v):
        return True
    return depth > 0 and isinstance(v, (list, tuple)) and all(_is_plain(x, depth - 1) for x in v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _list_of(ok: Any) -> Any:
    return lambda v: isinstance(v, (list, tuple)) and all(ok(x) for x in v)


def _opt(ctx: "_Ctx", data: Mapping[str, Any], key: str, field: str, ok: Any, expected: str, fix: str,
         default: Any = None) -> Any:
    """`data[key]` if `ok` says it fits; absent or null: `default`; anything else: a SpecError."""
    value = data.get(key)
    if value is None:
        return default
    if not ok(value):
        raise ctx.fail(field, f"expected {expected}, got {_shown(value)}", fix)
    return value


def _flag(ctx: "_Ctx", data: Mapping[str, Any], key: str, field: str, default: bool) -> bool:
    return _opt(ctx, data, key, field, lambda v: isinstance(v, bool), "true or false",
                f"write `{key}: true` or `{key}: false`", default)


def _one_of(ctx: "_Ctx", data: Mapping[str, Any], key: str, field: str, allowed: Sequence[str], default: str,
            what: str) -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise ctx.fail(field, f"unknown {what} {_shown(value)}", f"use one of {list(allowed)}")
    return value


@dataclass(frozen=True)
class SpecSet:
    specs: Tuple[ApiSpec, ...]
    conventions: Tuple["Convention", ...] = ()  # the convention table (programs take rows from it)

    def by_id(self) -> Dict[str, ApiSpec]:
        return {s.id: s for s in self.specs}

    def get(self, library: str, api: str) -> Optional[ApiSpec]:
        return self.by_id().get(f"{library}:{api}")

    def select(self, libraries: Sequence[str], patterns: Sequence[str]) -> List[ApiSpec]:
        return [s for s in self.specs if s.library in libraries
                and any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]


class _Ctx:
    """Where we are while validating, for error messages."""

    def __init__(self, path: str, line: int = 0, api: str = ""):
        self.path, self.line, self.api = path, line, api

    def fail(self, field: str, problem: str, fix: str) -> SpecError:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return SpecError(where, self.api, field, problem, fix)


def _read_text(ctx: "_Ctx", path: Path) -> str:
    """The file as UTF-8 text; missing, unreadable or binary: an error naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ctx.fail("(file)", f"cannot be read: {exc.strerror or exc}",
                       "check the path names an existing, readable YAML file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ctx.fail("(file)", f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                       "a binary file?", "pass a YAML file saved as UTF-8") from None
    if "\x00" in text:
        raise ctx.fail("(file)", f"contains a NUL byte at offset {text.index(chr(0))}: a binary file?",
                       "pass a YAML file saved as UTF-8 text")
    return text


def _read_yaml(ctx: "_Ctx", path: Path) -> Any:
    """A YAML file with each mapping's line (`__line__`); unreadable: an error naming the file."""
    text = _read_text(ctx, path)
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise ctx.fail("(file)", f"cannot be read as YAML: {exc}", "fix the YAML syntax") from None
    except RecursionError:
        raise ctx.fail("(file)", "cannot be read as YAML: it nests too deeply",
                       "write a spec file, whose values nest a few levels at most") from None


def _expect(ctx: _Ctx, data: Mapping[str, Any], key: str, kind: type, fix: str, default: Any = None) -> Any:
    """`data[key]` of type `kind` (an int is never a bool); absent or null: `default`, or an error
    when there is none."""
    value = data.get(key)
    if value is None:
        if default is None:
            raise ctx.fail(key, "is missing", fix)
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ctx.fail(key, f"expected {kind.__name__ if isinstance(kind, type) else kind}, got {_shown(value)}",
                       fix)
    return value


def _pair(ctx: _Ctx, field: str, value: Any, default: Tuple[int, int], most: int) -> Tuple[int, int]:
    """[low, high] with 0 <= low <= high <= most, or one int for both; absent or null: `default`."""
    if value is None:
        return default
    if _is_int(value):
        value = [value, value]
    if (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value)
            and 0 <= value[0] <= value[1] <= most):
        return (value[0], value[1])
    raise ctx.fail(field, f"expected [low, high] with 0 <= low <= high <= {most}, got {_shown(value)}",
                   "write e.g. [0, 3]")


ARG_KINDS = [k.value for k in ArgKind]


def _arg(ctx: _Ctx, data: Any, names: List[str]) -> ArgSpec:
    if not isinstance(data, dict):
        raise ctx.fail("args", f"each argument must be a mapping, got {_shown(data)}", "write {name: x, kind: tensor}")
    ctx.line = data.get("__line__", ctx.line)
    name = _expect(ctx, data, "name", str, "give the argument a name, e.g. `name: x`")
    if not name:
        raise ctx.fail("name", "is empty", "give the argument a name, e.g. `name: x`")
    f = f"args.{name}"
    unknown = set(data) - _ARG_FIELDS - {"__line__"}
    if unknown:
        raise ctx.fail(f, f"unknown key(s) {_keys(unknown)}", f"use only {sorted(_ARG_FIELDS)}")
    kind = _one_of(ctx, data, "kind", f"{f}.kind", ARG_KINDS, "tensor", "kind")
    domain = _one_of(ctx, data, "domain", f"{f}.domain", sorted(DOMAINS), "real", "domain")
    refs = {ref: _ref(ctx, data, ref, f, names) for ref in ("same_shape_as", "broadcast_with", "of")}
    low, high = _bounds(ctx, data, f)
    return ArgSpec(
        name=name, kind=ArgKind(kind), dtypes=_dtypes(ctx, f"{f}.dtypes", data.get("dtypes"), ()),
        rank=_pair(ctx, f"{f}.rank", data.get("rank"), (0, 3), RANK_MAX),
        same_shape_as=refs["same_shape_as"], broadcast_with=refs["broadcast_with"], domain=domain,
        differentiable=_flag(ctx, data, "differentiable", f"{f}.differentiable", True),
        default=_opt(ctx, data, "default", f"{f}.default", _is_plain, "a number, string, bool or a list of them",
                     "write e.g. `default: 1`"),
        choices=tuple(_opt(ctx, data, "choices", f"{f}.choices", _list_of(_is_plain),
                           "a list of values (numbers, strings, bools, null or lists of them)",
                           "write e.g. `choices: [0, 1]` or `choices: [[2, 3], [6]]`", ())),
        low=low, high=high, keyword=_flag(ctx, data, "keyword", f"{f}.keyword", False),
        length=_pair(ctx, f"{f}.length", data.get("length"), (1, 3), LENGTH_MAX),
        dims=_dims(ctx, data, f), of=refs["of"], optional=_flag(ctx, data, "optional", f"{f}.optional", False),
        values=_values(ctx, name, data.get("values")),
        structure=_one_of(ctx, data, "structure", f"{f}.structure", ("",) + STRUCTURES, "", "structure"),
    )


def _ref(ctx: _Ctx, data: Mapping[str, Any], ref: str, f: str, names: List[str]) -> Optional[str]:
    """An argument naming an earlier one (same_shape_as, broadcast_with, of)."""
    value = data.get(ref)
    if value is not None and (not isinstance(value, str) or value not in names):
        raise ctx.fail(f"{f}.{ref}", f"names {_shown(value)}, which is not an earlier argument", f"name one of {names}")
    return value


def _bounds(ctx: _Ctx, data: Mapping[str, Any], f: str) -> Tuple[Optional[float], Optional[float]]:
    """`low` and `high`: finite numbers with low <= high (either may be left out)."""
    fix = "write numbers, e.g. `low: 0` and `high: 3`"
    expected = f"a finite number between -{BOUND_MAX:g} and {BOUND_MAX:g}"
    low = _opt(ctx, data, "low", f"{f}.low", _is_bound, expected, fix)
    high = _opt(ctx, data, "high", f"{f}.high", _is_bound, expected, fix)
    if low is not None and high is not None and low > high:
        raise ctx.fail(f"{f}.low", f"low {low!r} is above high {high!r}", "swap them, or make low <= high")
    return low, high


def _dims(ctx: _Ctx, data: Mapping[str, Any], f: str) -> Tuple[str, ...]:
    """Named dimensions: a symbol (the same symbol is the same size) or a fixed size."""
    ok = _list_of(lambda d: _is_str(d) or (_is_int(d) and d >= 0))
    dims = _opt(ctx, data, "dims", f"{f}.dims", ok, "a list of dimension names or sizes",
                "write e.g. `dims: [m, k]` or `dims: [2, n]`", ())
    return tuple(str(d) for d in dims)


def _values(ctx: _Ctx, name: str, values: Any) -> Tuple[float, ...]:
    if values is None:
        return ()
    if not _list_of(_is_number)(values):
        raise ctx.fail(f"args.{name}.values", f"expected a list of numbers, got {_shown(values)}",
                       "write the seed tensor's values in C order, e.g. [0.5, -1.0]")
    return tuple(float(v) for v in values)


ALL_DTYPES = FLOAT_DTYPES + ("int64", "int32", "uint8", "uint32", "bool")


def _check_dtypes(ctx: _Ctx, field: str, dtypes: Any) -> None:
    if not _list_of(lambda d: isinstance(d, str) and d in ALL_DTYPES)(dtypes):
        raise ctx.fail(field, f"expected a list of dtype names, got {_shown(dtypes)}",
                       f"use names from {list(ALL_DTYPES)}")


def _dtypes(ctx: _Ctx, field: str, dtypes: Any, default: Tuple[str, ...]) -> Tuple[str, ...]:
    if dtypes is None:
        return default
    _check_dtypes(ctx, field, dtypes)
    return tuple(dtypes)


def _tolerances(ctx: _Ctx, data: Any) -> Tuple[Tuple[str, Tolerance], ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        raise ctx.fail("tolerance", f"expected a mapping dtype -> {{atol, rtol}}, got {_shown(data)}",
                       "write e.g. {float32: {atol: 1e-4, rtol: 1e-3}}")
    out = []
    for dtype, tol in data.items():
        if dtype == "__line__":
            continue
        field = f"tolerance.{dtype if isinstance(dtype, str) else _shown(dtype)}"
        ctx.line = tol.get("__line__", ctx.line) if isinstance(tol, dict) else ctx.line
        if (not isinstance(dtype, str) or dtype not in FLOAT_DTYPES or not isinstance(tol, dict)
                or set(tol) - {"atol", "rtol", "__line__"}):
            raise ctx.fail(field, f"invalid entry {_shown(tol)}", f"use a float dtype of {FLOAT_DTYPES} "
                           "mapped to {atol: number, rtol: number}")
        out.append((dtype, Tolerance(_tol(ctx, tol, "atol", field), _tol(ctx, tol, "rtol", field))))
    return tuple(sorted(out))


def _tol(ctx: _Ctx, tol: Mapping[str, Any], key: str, field: str) -> float:
    ok = lambda v: _is_number(v) and math.isfinite(float(v)) and float(v) >= 0  # noqa: E731
    return float(_opt(ctx, tol, key, f"{field}.{key}", ok, "a finite number >= 0",
                      f"write e.g. `{key}: 1.0e-4`", 0.0))


WHEN = ("", "kink", "duplicate_indices", "rank_deficient")
ISSUE_FIELDS = {"reason", "url", "scenarios", "verdict", "when", "__line__"}
VERDICTS = [v.value for v in Verdict]


def _known_issue(ctx: _Ctx, data: Any, convention: bool = False, field: str = "known_issues") -> KnownIssue:
    if (not isinstance(data, dict) or not _is_str(data.get("reason"))
            or not isinstance(data.get("url"), str) or not data["url"].startswith("http")):
        raise ctx.fail(field, f"each entry needs a reason and an upstream url, got {_shown(data)}",
                       "write {reason: ..., url: https://..., scenarios: [fwd], verdict: derivative_mismatch}")
    ctx.line = data.get("__line__", ctx.line)
    unknown = set(data) - ISSUE_FIELDS - ({"library", "apis"} if convention else set())
    if unknown:
        raise ctx.fail(field, f"unknown key(s) {_keys(unknown)}", f"use only {sorted(ISSUE_FIELDS - {'__line__'})}")
    when = _one_of(ctx, data, "when", f"{field}.when", WHEN, "", "condition")
    verdict = _opt(ctx, data, "verdict", f"{field}.verdict", lambda v: isinstance(v, str) and v in VERDICTS,
                   "a verdict name", f"use one of {VERDICTS} or leave it out")
    scenarios = _opt(ctx, data, "scenarios", f"{field}.scenarios", _list_of(_is_str), "a list of scenario ids",
                     "write e.g. `scenarios: [fwd, rev.rev]`", ())
    return KnownIssue(data["reason"], data["url"], tuple(scenarios), verdict, convention, when)


@dataclass(frozen=True)
class Convention:
    """One row of the convention table: which APIs (globs) of which library it covers."""

    library: str
    apis: Tuple[str, ...]
    issue: KnownIssue

    def covers(self, spec: ApiSpec) -> bool:
        return spec.library == self.library and any(fnmatch.fnmatchcase(spec.name, p) for p in self.apis)


CONVENTIONS_FILE = "conventions.yaml"


def load_conventions(path: Path) -> Tuple[Convention, ...]:
    """The convention table (`api_specs/conventions.yaml`): documented library conventions that
    look like AD disagreements, each with its upstream reference.  Missing file: no conventions."""
    if not path.exists():
        return ()
    ctx = _Ctx(str(path))
    data = _read_yaml(ctx, path)
    rows = _expect(ctx, data if isinstance(data, dict) else {}, "conventions", list, "list entries under `conventions:`")
    out = []
    for row in rows:
        ctx.line = row.get("__line__", 0) if isinstance(row, dict) else 0
        if not isinstance(row, dict) or not _is_str(row.get("library")) or not _list_of(_is_str)(row.get("apis")):
            raise ctx.fail("conventions", f"each convention needs a library and a list of apis, got {_shown(row)}",
                           "write {library: jax, apis: [jax.numpy.maximum], reason: ..., url: https://...}")
        out.append(Convention(row["library"], tuple(row["apis"]), _known_issue(ctx, row, True, "conventions")))
    return tuple(out)


HINTS_FILE = "probe_hints.yaml"
HINT_FIELDS = {"api", "reason", "url", "drop", "domain", "args", "__line__"}


@dataclass(frozen=True)
class ProbeHint:
    """What a library documents about one API and a probe cannot learn (`api_specs/probe_hints.yaml`):
    drop it (its inputs need structure not generated yet), the value domain to try first, or
    arguments to lay out by hand (full spec-file argument dicts, replacing the template's)."""

    api: str
    reason: str
    url: str = ""
    drop: bool = False
    domain: str = ""
    args: Tuple[Tuple[str, Any], ...] = ()


def _no_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_lines(v) for k, v in value.items() if k != "__line__"}
    return [_no_lines(v) for v in value] if isinstance(value, list) else value


def load_probe_hints(path: Path, library: str) -> Dict[str, ProbeHint]:
    """The library's rows of the probe hints file, by API name.  Missing file: no hints."""
    if not path.exists():
        return {}
    ctx = _Ctx(str(path))
    data = _read_yaml(ctx, path)
    libraries = _expect(ctx, data if isinstance(data, dict) else {}, "hints", dict,
                        "write `hints:` mapping each library to a list of {api: ..., reason: ...}")
    rows = _opt(ctx, libraries, library, f"hints.{library}", lambda v: isinstance(v, list), "a list of hints",
                "write a list of {api: ..., reason: ...} under the library", [])
    return dict(_probe_hint(ctx, library, row) for row in rows)


def _probe_hint(ctx: _Ctx, library: str, row: Any) -> Tuple[str, ProbeHint]:
    ctx.line = row.get("__line__", 0) if isinstance(row, dict) else 0
    if not isinstance(row, dict) or not _is_str(row.get("api")) or not _is_str(row.get("reason")):
        raise ctx.fail(f"hints.{library}", f"each hint needs an api and a reason, got {_shown(row)}",
                       "write {api: tf.reverse, reason: ..., args: {axis: {kind: choice, choices: [[0]]}}}")
    ctx.api = row["api"]
    unknown = set(row) - HINT_FIELDS
    if unknown:
        raise ctx.fail(", ".join(_keys(unknown)), "unknown key(s)", f"use only {sorted(HINT_FIELDS - {'__line__'})}")
    domain = _one_of(ctx, row, "domain", "domain", sorted(DOMAINS), "", "domain")
    url = _opt(ctx, row, "url", "url", lambda v: isinstance(v, str), "a URL", "write `url: https://...`", "")
    drop = _flag(ctx, row, "drop", "drop", False)
    args = _opt(ctx, row, "args", "args", lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
                "a mapping argument name -> spec-file argument dict", "map argument names to spec-file argument dicts",
                {})
    return row["api"], ProbeHint(row["api"], row["reason"], url, drop, domain,
                                 tuple((k, _no_lines(v)) for k, v in args.items() if k != "__line__"))


def with_conventions(specs: Sequence[ApiSpec], conventions: Sequence[Convention]) -> List[ApiSpec]:
    return [replace(s, known_issues=s.known_issues + tuple(c.issue for c in conventions if c.covers(s)))
            for s in specs]


def parse_api(ctx: _Ctx, library: str, data: Any, line: int = 0) -> ApiSpec:
    ctx.api, ctx.line = "", line
    if not isinstance(data, dict):
        raise ctx.fail("apis", f"each API must be a mapping, got {_shown(data)}", "write {name: ..., args: [...]}")
    ctx.line = data.get("__line__", line)
    name = _expect(ctx, data, "name", str, "give the API's qualified name, or module:function for your own")
    if not name:
        raise ctx.fail("name", "is empty", "give the API's qualified name, or module:function for your own")
    ctx.api = name
    unknown = set(data) - _API_FIELDS - {"__line__"}
    if unknown:
        raise ctx.fail(", ".join(_keys(unknown)), "unknown key(s)", f"use only {sorted(_API_FIELDS)}")
    args = _args(ctx, _expect(ctx, data, "args", list, "list the arguments", default=[]))
    overloads = _opt(ctx, data, "overloads", "overloads", _list_of(lambda o: isinstance(o, list)),
                     "a list of argument lists", "write overloads: [[{name: x}, {name: dim, kind: int}], ...]", [])
    more = tuple(_args(ctx, o) for o in overloads)
    ctx.line = data.get("__line__", 0)
    return _api(ctx, library, name, data, args, more)


def spec_from_dict(library: str, data: Dict[str, Any], origin: str) -> ApiSpec:
    """One spec-file API entry (a dict, e.g. proposed by a spec source) as a validated ApiSpec."""
    return parse_api(_Ctx(origin), library, data)


def _args(ctx: _Ctx, raw: List[Any]) -> Tuple[ArgSpec, ...]:
    args: List[ArgSpec] = []
    for a in raw:
        args.append(_arg(ctx, a, [x.name for x in args]))
    return tuple(args)


def _capabilities(ctx: _Ctx, data: Mapping[str, Any], key: str, default: Sequence[str]) -> Tuple[str, ...]:
    ok = _list_of(lambda c: isinstance(c, str) and c in CAPABILITIES)
    value = data.get(key)
    if value is not None and not ok(value):
        raise ctx.fail(key, f"unknown capability in {_shown(value)}", f"use ids from {list(CAPABILITIES)}")
    return tuple(default if value is None else value)


def _module_args(ctx: _Ctx, data: Mapping[str, Any]) -> Tuple[tuple, tuple]:
    """A layer's constructor arguments: `init` (positional) and `init_kwargs` (by name)."""
    init = _opt(ctx, data, "init", "init", _list_of(_is_plain), "a list of constructor arguments (numbers, "
                "strings, bools or lists of them)", "write e.g. `init: [3, 6]`", [])
    ok = lambda v: isinstance(v, dict) and all(k == "__line__" or (isinstance(k, str) and _is_plain(x))  # noqa: E731
                                               for k, x in v.items())
    kwargs = _opt(ctx, data, "init_kwargs", "init_kwargs", ok, "a mapping name -> constructor argument",
                  "write e.g. `init_kwargs: {hidden_size: 3, bias: false}`", {})
    return (tuple(_frozen(v) for v in init),
            tuple(sorted((k, _frozen(v)) for k, v in kwargs.items() if k != "__line__")))


def _api(ctx: _Ctx, library: str, name: str, data: Dict[str, Any], args: Tuple[ArgSpec, ...],
         overloads: Tuple[Tuple[ArgSpec, ...], ...] = ()) -> ApiSpec:
    source = f"{ctx.path}:{ctx.line}"
    dtypes = _dtypes(ctx, "dtypes", data.get("dtypes"), ("float64", "float32"))
    caps = _capabilities(ctx, data, "capabilities", CAPABILITIES)
    unsupported = _capabilities(ctx, data, "unsupported", ())
    if set(caps) & set(unsupported):
        raise ctx.fail("unsupported", f"{sorted(set(caps) & set(unsupported))} also listed as capabilities",
                       "list each scenario in one of capabilities / unsupported, or in neither (unknown)")
    outs = _opt(ctx, data, "differentiable_outputs", "differentiable_outputs",
                _list_of(lambda i: _is_int(i) and i >= 0), "a list of output indices", "write e.g. [0]")
    known = _opt(ctx, data, "known_issues", "known_issues", lambda v: isinstance(v, list), "a list of known issues",
                 "write known_issues: [{reason: ..., url: https://...}]", [])
    max_size = _opt(ctx, data, "max_size", "max_size", lambda v: _is_int(v) and v >= 1, "a positive int (elements "
                    "per tensor)", "write e.g. `max_size: 16`, or leave it out")
    init, init_kwargs = _module_args(ctx, data)
    spec = ApiSpec(
        library=library, name=name, args=args, dtypes=dtypes, capabilities=caps,
        unsupported=unsupported, overloads=overloads, module=_flag(ctx, data, "module", "module", False),
        init=init, init_kwargs=init_kwargs, differentiable_outputs=None if outs is None else tuple(outs),
        random=_flag(ctx, data, "random", "random", False),
        batched=_flag(ctx, data, "batched", "batched", False),
        reference=_one_of(ctx, data, "reference", "reference", ("",) + tuple(FUNCTIONS), "", "function"),
        kinks=_one_of(ctx, data, "kinks", "kinks", KINK_POLICIES, "subgradient", "policy"), max_size=max_size,
        source=source,
        notes=_opt(ctx, data, "notes", "notes", lambda v: isinstance(v, str), "a string", "quote the note", ""),
        support=_one_of(ctx, data, "support", "support", SUPPORT, "declared", "value"),
    )
    # last: these move ctx.line to the entry they read, so an error names its line
    return replace(spec, tolerance=_tolerances(ctx, data.get("tolerance")),
                   known_issues=tuple(_known_issue(ctx, k) for k in known))


def _library(ctx: _Ctx, data: Mapping[str, Any]) -> str:
    """The file's `library:`, one with an adapter (built in, or named in NABLAFUZZ_ADAPTERS)."""
    ctx.line = data.get("__line__", 0)
    library = _expect(ctx, data, "library", str, "name the library, e.g. `library: torch`")
    try:
        known = known_adapters()
    except LookupError as exc:
        raise ctx.fail("library", f"cannot check it: {exc}", f"fix the {ADAPTERS_ENV} environment variable") from None
    if library not in known:
        raise ctx.fail("library", f"unknown library {library!r}",
                       f"use one of {', '.join(known)}, or name your adapter in {ADAPTERS_ENV} "
                       "(library=module:factory)")
    ctx.line = 0
    return library


def load_file(path: Path) -> List[ApiSpec]:
    ctx = _Ctx(str(path))
    data = _read_yaml(ctx, path)
    if not isinstance(data, dict):
        raise ctx.fail("(file)", "top level must be a mapping", "write `library: ...` and `apis: [...]`")
    library = _library(ctx, data)
    apis = _expect(ctx, data, "apis", list, "list the APIs under `apis:`")
    lines = getattr(apis, "lines", [0] * len(apis))
    specs = [parse_api(ctx, library, a, n) for a, n in zip(apis, lines)]
    seen: Dict[str, str] = {}
    for s in specs:
        if s.name in seen:
            raise SpecError(s.source, s.name, "name", f"duplicate of the API at {seen[s.name]}", "keep one entry")
        seen[s.name] = s.source
    return specs


def load_specs(spec_dir: Path, libraries: Iterable[str], extra_files: Iterable[Path] = ()) -> SpecSet:
    """All specs of `libraries` under `spec_dir/<library>/`, plus `extra_files` (user specs)."""
    files = [f for lib in libraries for f in sorted((spec_dir / lib).glob("*.yaml"))]
    files += [Path(f) for f in extra_files]
    specs: Dict[str, ApiSpec] = {}
    for f in files:
        for s in load_file(f):
            if s.id in specs:
                raise SpecError(s.source, s.name, "name", f"also defined at {specs[s.id].source}",
                                "keep one definition (a --specs file may not redefine a library API)")
            specs[s.id] = s
    conventions = load_conventions(spec_dir / CONVENTIONS_FILE)
    edges = load_edges(spec_dir / REGIMES_FILE)
    batched = load_batched(spec_dir / BATCHING_FILE)
    references = load_references(spec_dir / REFERENCES_FILE)
    loaded = with_edges(with_conventions(list(specs.values()), conventions), edges)
    return SpecSet(tuple(with_references(with_batching(loaded, batched), references)), conventions)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _printable(text: Any) -> str:
    """One line of plain text: library messages carry newlines and terminal colour codes."""
    return "".join(c for c in " ".join(_ANSI.sub("", str(text)).split()) if c.isprintable())


def write_specs(path: Path, library: str, apis: Sequence[Dict[str, Any]], origin: str,
                dropped: Sequence[str] = ()) -> None:
    """Write derived specs (validated first, so a bad source fails before the file changes);
    what the source could not derive is kept at the end as comments, with the reason."""
    ctx = _Ctx(str(path))
    for a in apis:
        parse_api(ctx, library, a)
    header = f"# Generated by `{origin}`; edit the spec source, not this file.\n"
    body = yaml.safe_dump({"library": library, "apis": list(apis)}, sort_keys=False, width=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tail = "".join(f"# dropped: {_printable(d)}\n" for d in dropped)  # one line each
    tmp.write_text(header + body + (f"\n# {len(dropped)} not derived:\n" + tail if dropped else ""))
    tmp.replace(path)
