"""API specifications: load and validate `api_specs/<library>/*.yaml`, and write derived ones.

A spec file is YAML: `library: <id>` and `apis: [ {name, args: [...], ...}, ... ]`.  Every
validation error names the file and line, the API and the field, and says how to fix it.
Spec *sources* derive specs from a library's own metadata; they run inside that library's
worker (the orchestrator never imports a DL library) and return plain dicts in this format,
which `write_specs` turns into a file.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

from .domains import DOMAINS
from .errors import SpecError
from .model import ApiSpec, ArgKind, ArgSpec, KnownIssue, Tolerance
from .scenarios import FIRST_ORDER, SECOND_ORDER
from .tensors import FLOAT_DTYPES

CAPABILITIES = FIRST_ORDER + tuple(s for s in SECOND_ORDER if not s.startswith("fd."))
KINK_POLICIES = ("subgradient", "selection", "none")
_API_FIELDS = {f.name for f in fields(ApiSpec)} - {"library", "source"}
_ARG_FIELDS = {f.name for f in fields(ArgSpec)}
SUPPORT = ("declared", "observed")


class _LineLoader(yaml.SafeLoader):
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


def _shown(data: Any) -> str:
    """A value as the user wrote it (without our line bookkeeping)."""
    if isinstance(data, dict):
        return repr({k: v for k, v in data.items() if k != "__line__"})
    return repr(data)


@dataclass(frozen=True)
class SpecSet:
    specs: Tuple[ApiSpec, ...]

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


def _read_yaml(ctx: "_Ctx", path: Path) -> Any:
    """A YAML file with each mapping's line (`__line__`); unreadable: an error naming the file."""
    try:
        return yaml.load(path.read_text(), Loader=_LineLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise ctx.fail("(file)", f"cannot be read as YAML: {exc}", "fix the YAML syntax") from None


def _expect(ctx: _Ctx, data: Mapping[str, Any], key: str, kind: type, fix: str, default: Any = None) -> Any:
    value = data.get(key, default)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if value is None and default is None and key not in data:
        raise ctx.fail(key, "is missing", fix)
    if not ok and value is not default:
        raise ctx.fail(key, f"expected {kind.__name__ if isinstance(kind, type) else kind}, got {value!r}", fix)
    return value


def _pair(ctx: _Ctx, field: str, value: Any, default: Tuple[int, int]) -> Tuple[int, int]:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)
            and 0 <= value[0] <= value[1]):
        return (value[0], value[1])
    raise ctx.fail(field, f"expected [low, high] with 0 <= low <= high, got {value!r}", "write e.g. [0, 3]")


def _arg(ctx: _Ctx, data: Any, names: List[str]) -> ArgSpec:
    if not isinstance(data, dict):
        raise ctx.fail("args", f"each argument must be a mapping, got {data!r}", "write {name: x, kind: tensor}")
    ctx.line = data.get("__line__", ctx.line)
    name = _expect(ctx, data, "name", str, "give the argument a name")
    unknown = set(data) - _ARG_FIELDS - {"__line__"}
    if unknown:
        raise ctx.fail(f"args.{name}", f"unknown key(s) {sorted(unknown)}", f"use only {sorted(_ARG_FIELDS)}")
    kinds = [k.value for k in ArgKind]
    kind = data.get("kind", "tensor")
    if kind not in kinds:
        raise ctx.fail(f"args.{name}.kind", f"unknown kind {kind!r}", f"use one of {kinds}")
    domain = data.get("domain", "real")
    if domain not in DOMAINS:
        raise ctx.fail(f"args.{name}.domain", f"unknown domain {domain!r}", f"use one of {sorted(DOMAINS)}")
    for ref in ("same_shape_as", "broadcast_with", "of"):
        if data.get(ref) is not None and data[ref] not in names:
            raise ctx.fail(f"args.{name}.{ref}", f"names {data[ref]!r}, which is not an earlier argument",
                           f"name one of {names}")
    _check_dtypes(ctx, f"args.{name}.dtypes", data.get("dtypes", []))
    return ArgSpec(
        name=name, kind=ArgKind(kind), dtypes=tuple(data.get("dtypes", ())),
        rank=_pair(ctx, f"args.{name}.rank", data.get("rank"), (0, 3)),
        same_shape_as=data.get("same_shape_as"), broadcast_with=data.get("broadcast_with"),
        domain=domain, differentiable=bool(data.get("differentiable", True)), default=data.get("default"),
        choices=tuple(data.get("choices", ())), low=data.get("low"), high=data.get("high"),
        keyword=bool(data.get("keyword", False)),
        length=_pair(ctx, f"args.{name}.length", data.get("length"), (1, 3)),
        dims=tuple(str(d) for d in data.get("dims", ())), of=data.get("of"),
        optional=bool(data.get("optional", False)), values=_values(ctx, name, data.get("values", [])),
    )


def _values(ctx: _Ctx, name: str, values: Any) -> Tuple[float, ...]:
    if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise ctx.fail(f"args.{name}.values", f"expected a list of numbers, got {values!r}",
                       "write the seed tensor's values in C order, e.g. [0.5, -1.0]")
    return tuple(float(v) for v in values)


def _check_dtypes(ctx: _Ctx, field: str, dtypes: Any) -> None:
    allowed = FLOAT_DTYPES + ("int64", "int32", "bool")
    if not isinstance(dtypes, list) or any(d not in allowed for d in dtypes):
        raise ctx.fail(field, f"expected a list of dtype names, got {dtypes!r}", f"use names from {list(allowed)}")


def _tolerances(ctx: _Ctx, data: Any) -> Tuple[Tuple[str, Tolerance], ...]:
    if not isinstance(data, dict):
        raise ctx.fail("tolerance", f"expected a mapping dtype -> {{atol, rtol}}, got {_shown(data)}",
                       "write e.g. {float32: {atol: 1e-4, rtol: 1e-3}}")
    out = []
    for dtype, tol in data.items():
        if dtype == "__line__":
            continue
        if dtype not in FLOAT_DTYPES or not isinstance(tol, dict) or set(tol) - {"atol", "rtol", "__line__"}:
            raise ctx.fail(f"tolerance.{dtype}", f"invalid entry {_shown(tol)}", f"use a float dtype of {FLOAT_DTYPES} "
                           "mapped to {atol: number, rtol: number}")
        out.append((dtype, Tolerance(float(tol.get("atol", 0.0)), float(tol.get("rtol", 0.0)))))
    return tuple(sorted(out))


WHEN = ("", "kink")


def _known_issue(ctx: _Ctx, data: Any, convention: bool = False, field: str = "known_issues") -> KnownIssue:
    if not isinstance(data, dict) or not data.get("reason") or not str(data.get("url", "")).startswith("http"):
        raise ctx.fail(field, f"each entry needs a reason and an upstream url, got {_shown(data)}",
                       "write {reason: ..., url: https://..., scenarios: [fwd], verdict: derivative_mismatch}")
    if data.get("when", "") not in WHEN:
        raise ctx.fail(f"{field}.when", f"unknown condition {data['when']!r}", f"use one of {list(WHEN[1:])} or leave it out")
    return KnownIssue(str(data["reason"]), str(data["url"]), tuple(data.get("scenarios", ())), data.get("verdict"),
                      convention, str(data.get("when", "")))


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
        if not isinstance(row, dict) or not isinstance(row.get("library"), str) or not isinstance(row.get("apis"), list):
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
    out = {}
    for row in libraries.get(library) or []:
        ctx.line = row.get("__line__", 0) if isinstance(row, dict) else 0
        if not isinstance(row, dict) or not isinstance(row.get("api"), str) or not row.get("reason"):
            raise ctx.fail(f"hints.{library}", f"each hint needs an api and a reason, got {_shown(row)}",
                           "write {api: tf.reverse, reason: ..., args: {axis: {kind: choice, choices: [[0]]}}}")
        ctx.api = row["api"]
        unknown = set(row) - HINT_FIELDS
        if unknown:
            raise ctx.fail(", ".join(sorted(unknown)), "unknown key(s)", f"use only {sorted(HINT_FIELDS - {'__line__'})}")
        if row.get("domain", "") and row["domain"] not in DOMAINS:
            raise ctx.fail("domain", f"unknown domain {row['domain']!r}", f"use one of {sorted(DOMAINS)}")
        args = _expect(ctx, row, "args", dict, "map argument names to spec-file argument dicts", default={})
        out[row["api"]] = ProbeHint(row["api"], str(row["reason"]), str(row.get("url", "")), bool(row.get("drop")),
                                    str(row.get("domain", "")), tuple((k, _no_lines(v)) for k, v in args.items()
                                                                     if k != "__line__"))
    return out


def with_conventions(specs: Sequence[ApiSpec], conventions: Sequence[Convention]) -> List[ApiSpec]:
    return [replace(s, known_issues=s.known_issues + tuple(c.issue for c in conventions if c.covers(s)))
            for s in specs]


def parse_api(ctx: _Ctx, library: str, data: Any, line: int = 0) -> ApiSpec:
    ctx.api, ctx.line = "", line
    if not isinstance(data, dict):
        raise ctx.fail("apis", f"each API must be a mapping, got {data!r}", "write {name: ..., args: [...]}")
    ctx.line = data.get("__line__", line)
    name = _expect(ctx, data, "name", str, "give the API's qualified name, or module:function for your own")
    ctx.api = name
    unknown = set(data) - _API_FIELDS - {"__line__"}
    if unknown:
        raise ctx.fail(", ".join(sorted(unknown)), "unknown key(s)", f"use only {sorted(_API_FIELDS)}")
    args = _args(ctx, _expect(ctx, data, "args", list, "list the arguments", default=[]))
    overloads = data.get("overloads", [])
    if not isinstance(overloads, list) or not all(isinstance(o, list) for o in overloads):
        raise ctx.fail("overloads", f"expected a list of argument lists, got {overloads!r}",
                       "write overloads: [[{name: x}, {name: dim, kind: int}], ...]")
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


def _api(ctx: _Ctx, library: str, name: str, data: Dict[str, Any], args: Tuple[ArgSpec, ...],
         overloads: Tuple[Tuple[ArgSpec, ...], ...] = ()) -> ApiSpec:
    dtypes = data.get("dtypes", ["float64", "float32"])
    _check_dtypes(ctx, "dtypes", dtypes)
    caps = data.get("capabilities", list(CAPABILITIES))
    if not isinstance(caps, list) or any(c not in CAPABILITIES for c in caps):
        raise ctx.fail("capabilities", f"unknown capability in {caps!r}", f"use ids from {list(CAPABILITIES)}")
    unsupported = data.get("unsupported", [])
    if not isinstance(unsupported, list) or any(c not in CAPABILITIES for c in unsupported):
        raise ctx.fail("unsupported", f"unknown capability in {unsupported!r}", f"use ids from {list(CAPABILITIES)}")
    if set(caps) & set(unsupported):
        raise ctx.fail("unsupported", f"{sorted(set(caps) & set(unsupported))} also listed as capabilities",
                       "list each scenario in one of capabilities / unsupported, or in neither (unknown)")
    kinks = data.get("kinks", "subgradient")
    if kinks not in KINK_POLICIES:
        raise ctx.fail("kinks", f"unknown policy {kinks!r}", f"use one of {KINK_POLICIES}")
    support = data.get("support", "declared")
    if support not in SUPPORT:
        raise ctx.fail("support", f"unknown value {support!r}", f"use one of {list(SUPPORT)}")
    outs = data.get("differentiable_outputs")
    if outs is not None and (not isinstance(outs, list) or not all(isinstance(i, int) for i in outs)):
        raise ctx.fail("differentiable_outputs", f"expected a list of output indices, got {outs!r}", "write e.g. [0]")
    return ApiSpec(
        library=library, name=name, args=args, dtypes=tuple(dtypes), capabilities=tuple(caps),
        unsupported=tuple(unsupported), overloads=overloads, module=bool(data.get("module", False)),
        init=tuple(_frozen(v) for v in data.get("init", [])),
        init_kwargs=tuple(sorted((k, _frozen(v)) for k, v in data.get("init_kwargs", {}).items() if k != "__line__")),
        differentiable_outputs=None if outs is None else tuple(outs),
        tolerance=_tolerances(ctx, data.get("tolerance", {})),
        known_issues=tuple(_known_issue(ctx, k) for k in data.get("known_issues", [])),
        random=bool(data.get("random", False)), kinks=kinks, max_size=data.get("max_size"),
        source=f"{ctx.path}:{ctx.line}", notes=str(data.get("notes", "")), support=support,
    )


def load_file(path: Path) -> List[ApiSpec]:
    ctx = _Ctx(str(path))
    data = _read_yaml(ctx, path)
    if not isinstance(data, dict):
        raise ctx.fail("(file)", "top level must be a mapping", "write `library: ...` and `apis: [...]`")
    library = _expect(ctx, data, "library", str, "name the library, e.g. `library: torch`")
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
    return SpecSet(tuple(with_conventions(list(specs.values()), conventions)))


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
