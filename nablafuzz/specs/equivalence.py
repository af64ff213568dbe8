"""The equivalence map: ops that compute the same function in several libraries.

`api_specs/equivalence.yaml` lists classes such as `erfinv` = {torch.erfinv,
jax.scipy.special.erfinv, tf.math.erfinv}.  A class names a *reference* member whose argument
specs give the canonical call (the arguments every member takes, `args`); each member maps
the canonical arguments to its own (`rename`: dim -> axis, keepdim -> keepdims; `keyword`:
passed by name where its positional order differs).  One canonical trial, generated from the
reference's specs, becomes one trial per member with the same values, seed and directions,
so every library computes the same quantities (see `crosscheck`).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..core.errors import SpecError
from ..core.model import ApiSpec, ArgKind, ArgSpec, InputValue, Scalar, Trial
from .spec import (SpecSet, _arg, _Ctx, _expect, _frozen, _is_int, _is_plain, _is_str, _keys, _list_of, _opt,
                   _read_yaml, _shown)

EQUIVALENCE_FILE = "equivalence.yaml"
CROSS = "cross"  # the pseudo-library of canonical specs (`cross:<class>`)
_MEMBER_FIELDS = {"library", "api", "rename", "keyword", "positional", "fixed", "prefix", "transpose", "__line__"}
_CLASS_FIELDS = {"id", "reference", "args", "members", "evidence", "why", "__line__"}


@dataclass(frozen=True)
class Member:
    library: str
    api: str  # the name called: the spec's own name or one of its aliases
    rename: Tuple[Tuple[str, str], ...] = ()  # canonical argument name -> this library's name
    keyword: Tuple[str, ...] = ()  # canonical arguments this library takes by name
    positional: Tuple[str, ...] = ()  # canonical arguments this library takes by position
    fixed: Tuple[Tuple[str, Scalar], ...] = ()  # keyword arguments with a set value (ord="fro", ddof=1)
    prefix: Tuple[Scalar, ...] = ()  # positional values before the canonical ones (einsum's equation)
    # axes permuted inside the call, per canonical argument and "" for the output (NCHW -> NHWC)
    transpose: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.library}:{self.api}"


@dataclass(frozen=True)
class EquivalenceClass:
    id: str
    reference: str  # "library:api" of the member whose argument specs are canonical
    args: Tuple[str, ...]  # the reference's arguments every member takes (others keep defaults)
    members: Tuple[Member, ...]
    evidence: str = ""
    source: str = ""
    arg_specs: Tuple[ArgSpec, ...] = ()  # canonical arguments written out, where no spec has them
    why: str = ""  # a hand-written class: what it is, where the libraries document it

    @property
    def libraries(self) -> Tuple[str, ...]:
        return tuple(m.library for m in self.members)

    def member(self, library: str) -> Optional[Member]:
        return next((m for m in self.members if m.library == library), None)


_ALIASES = re.compile(r"aliases: ([^;]+)")


def aliases(spec: ApiSpec) -> Tuple[str, ...]:
    """The other names of the same op that the spec's derivation recorded in its notes."""
    m = _ALIASES.search(spec.notes)
    return tuple(a.strip() for a in m.group(1).split(",")) if m else ()


@dataclass(frozen=True)
class Resolved:
    """A class with its members' specs, as loaded for a campaign (members of libraries not
    loaded are left out)."""

    cls: EquivalenceClass
    canonical: ApiSpec
    specs: Tuple[Tuple[str, ApiSpec], ...]  # library -> the member's spec

    def spec(self, library: str) -> ApiSpec:
        return dict(self.specs)[library]

    @property
    def libraries(self) -> Tuple[str, ...]:
        return tuple(lib for lib, _ in self.specs)


def spec_index(specs: SpecSet) -> Dict[str, ApiSpec]:
    """`library:name` -> spec, for every spec's name and alias."""
    out: Dict[str, ApiSpec] = {}
    for s in specs.specs:
        for name in (s.name,) + aliases(s):
            out.setdefault(f"{s.library}:{name}", s)
    return out


def canonical_spec(cls: EquivalenceClass, reference: ApiSpec, members: Sequence[ApiSpec]) -> ApiSpec:
    """The spec canonical trials are generated from: the reference's kept arguments, the dtypes
    every member supports, and the reference's kink semantics."""
    args = cls.arg_specs or tuple(a for a in reference.args if a.name in cls.args)
    dtypes = tuple(d for d in reference.dtypes if all(d in m.dtypes for m in members))
    return ApiSpec(CROSS, cls.id, args, dtypes=dtypes or ("float64",), capabilities=reference.capabilities,
                   differentiable_outputs=reference.differentiable_outputs, kinks=reference.kinks,
                   max_size=reference.max_size, source=cls.source, notes=cls.evidence)


def resolve(classes: Sequence[EquivalenceClass], specs: SpecSet, libraries: Sequence[str]) -> List[Resolved]:
    """Classes with at least two members among `libraries` whose specs are loaded."""
    index = spec_index(specs)
    out = []
    for cls in classes:
        if cls.arg_specs:  # written out: a member without a spec is a plain function of float tensors
            index = dict(index, **{m.id: index.get(m.id, ApiSpec(m.library, m.api, cls.arg_specs, source=cls.source))
                                   for m in cls.members})
        if cls.reference not in index:
            continue
        # each member's spec under the name the member calls (its own or an alias the spec records)
        found = [(m.library, replace(index[m.id], name=m.api)) for m in cls.members
                 if m.library in libraries and m.id in index]
        if len(found) >= 2:
            out.append(Resolved(cls, canonical_spec(cls, index[cls.reference], [s for _, s in found]), tuple(found)))
    return out


def equivalence_path(spec_dir: str, equivalence_file: str = "") -> Path:
    """The map a campaign reads: `equivalence_file`, or the one in the spec directory."""
    return Path(equivalence_file or Path(spec_dir) / EQUIVALENCE_FILE)


def member_trial(r: Resolved, library: str, trial: Trial) -> Trial:
    """The canonical trial as `library`'s member call: same values, seed and dtype; arguments
    renamed, by keyword where the member says so, differentiable outputs as its spec declares."""
    member = r.cls.member(library)
    rename = dict(member.rename)
    inputs = tuple(replace(i, name=rename.get(i.name, i.name),
                           keyword=(i.keyword or i.name in member.keyword) and i.name not in member.positional)
                   for i in trial.inputs)
    before = tuple(InputValue(f"{PREFIX}{k}", ArgKind.CHOICE, _value(v)) for k, v in enumerate(member.prefix))
    after = tuple(InputValue(name, ArgKind.CHOICE, _value(v), keyword=True) for name, v in member.fixed)
    layout = tuple((rename.get(name, name), perm) for name, perm in member.transpose)
    return Trial(library, member.api, trial.seed, trial.dtype, before + inputs + after,
                 r.spec(library).differentiable_outputs, layout=layout,
                 projections=tuple((rename.get(name, name), p) for name, p in trial.projections))


PREFIX = "_prefix"


def _value(v: Any) -> Scalar:
    return tuple(v) if isinstance(v, list) else v


def canonical_trial(r: Resolved, trial: Trial) -> Trial:
    """The inverse of `member_trial` (a stored report's trial back to the canonical call)."""
    member = r.cls.member(trial.library)
    back = {own: canon for canon, own in member.rename}
    keyword = {a.name: a.keyword for a in r.canonical.args}
    set_here = {name for name, _ in member.fixed}
    inputs = tuple(replace(i, name=back.get(i.name, i.name), keyword=keyword.get(back.get(i.name, i.name), i.keyword))
                   for i in trial.inputs if not i.name.startswith(PREFIX) and i.name not in set_here)
    return Trial(CROSS, r.cls.id, trial.seed, trial.dtype, inputs, r.canonical.differentiable_outputs)


# ---- loading ------------------------------------------------------------------------------
# The map is a file anyone can edit: every field is checked for its type (YAML keys may be
# numbers, null or dates as well as strings; values may be anything), so any document gives
# either classes or a SpecError naming file:line, the class, the field and the fix.

def _entries(data: Dict[Any, Any]) -> List[Tuple[Any, Any]]:
    """A YAML mapping's items, without our line bookkeeping."""
    return [(k, v) for k, v in data.items() if k != "__line__"]


def _line_of(seq: Any, k: int, default: int) -> int:
    """The line of a YAML sequence's k-th item (a scalar carries none of its own)."""
    lines = getattr(seq, "lines", ())
    return lines[k] if k < len(lines) else default


def _pairs(ctx: _Ctx, field: str, data: Any) -> Tuple[Tuple[str, str], ...]:
    if data is None:
        return ()
    if not isinstance(data, dict) or not all(_is_str(k) and _is_str(v) for k, v in _entries(data)):
        raise ctx.fail(field, f"expected a mapping canonical name -> this library's name (both non-empty strings), "
                       f"got {_shown(data)}", "write e.g. {dim: axis, keepdim: keepdims}")
    twice = _twice(v for _, v in _entries(data))
    if twice:
        raise ctx.fail(field, f"two canonical arguments are renamed to the same name {_shown(twice)}",
                       "rename each canonical argument to a different name")
    return tuple(sorted(_entries(data)))


def _twice(names: Iterable[str]) -> List[str]:
    return sorted(n for n, count in Counter(names).items() if count > 1)


def _is_permutation(v: Any) -> bool:
    return (isinstance(v, list) and len(v) >= 1 and all(_is_int(i) for i in v)
            and sorted(v) == list(range(len(v))))


_PLAIN = "a number, string, bool, null or a list of them"


def _member(ctx: _Ctx, data: Any) -> Member:
    if not isinstance(data, dict):
        raise ctx.fail("members", f"each member is a mapping with keys {sorted(_MEMBER_FIELDS - {'__line__'})}, "
                       f"got {_shown(data)}", "write {library: jax, api: jax.numpy.sin}")
    ctx.line = data.get("__line__", ctx.line)
    unknown = set(data) - _MEMBER_FIELDS
    if unknown:
        raise ctx.fail("members", f"unknown member key(s) {_keys(unknown)}",
                       f"use only {sorted(_MEMBER_FIELDS - {'__line__'})}")
    library = _expect(ctx, data, "library", str, "name the member's library, e.g. `library: jax`")
    api = _expect(ctx, data, "api", str, "name the member's API, e.g. `api: jax.numpy.sin`")
    for key, value in (("library", library), ("api", api)):
        if not value.strip():
            raise ctx.fail(key, "is empty", f"name the member's {key}, e.g. `library: jax` and `api: jax.numpy.sin`")
    fixed = _opt(ctx, data, "fixed", "members.fixed",
                 lambda v: isinstance(v, dict) and all(_is_str(k) and _is_plain(x) for k, x in _entries(v)),
                 f"a mapping keyword name -> value ({_PLAIN})", "write e.g. fixed: {ord: fro, ddof: 1}", {})
    prefix = _opt(ctx, data, "prefix", "members.prefix", _list_of(_is_plain), f"a list of values ({_PLAIN})",
                  "write e.g. prefix: ['ij,jk->ik']", [])
    transpose = _opt(ctx, data, "transpose", "members.transpose",
                     lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_permutation(p)
                                                           for k, p in _entries(v)),
                     "a mapping argument name -> axis permutation (a list of 0..n-1, each once)",
                     "write e.g. {x: [0, 2, 3, 1], '': [0, 3, 1, 2]} ('' is the output)", {})
    keyword = _names(ctx, "members.keyword", data.get("keyword"))
    positional = _names(ctx, "members.positional", data.get("positional"))
    both = sorted(set(keyword) & set(positional))
    if both:
        raise ctx.fail("members.keyword", f"{_shown(both)} listed both as keyword and as positional",
                       "list each argument under one of `keyword` and `positional`")
    return Member(library, api, _pairs(ctx, "members.rename", data.get("rename")), keyword, positional,
                  tuple(sorted((k, _frozen(v)) for k, v in _entries(fixed))), tuple(_frozen(prefix)),
                  tuple(sorted((k, tuple(v)) for k, v in _entries(transpose))))


def _names(ctx: _Ctx, field: str, names: Any) -> Tuple[str, ...]:
    if names is None:
        return ()
    if not isinstance(names, list) or not all(_is_str(k) for k in names):
        raise ctx.fail(field, f"expected a list of canonical argument names, got {_shown(names)}", "write e.g. [dim]")
    return tuple(names)


def _class_id(data: Dict[Any, Any], k: int) -> str:
    """The class's id for messages (its position where it has no usable id)."""
    cid = data.get("id")
    if isinstance(cid, str) and cid.strip():
        return cid if len(cid) <= 80 else cid[:77] + "..."
    return f"classes[{k}]"


def _args_of(ctx: _Ctx, args: List[Any]) -> Tuple[Tuple[str, ...], Tuple[ArgSpec, ...]]:
    """`args`: all names, or all written-out arguments (mappings in spec-file form)."""
    line = ctx.line
    if not all(_is_str(a) or isinstance(a, dict) for a in args):
        raise ctx.fail("args", f"expected a list of argument names or argument mappings, got {_shown(args)}",
                       "write e.g. `args: [x, dim]` or `args: [{name: x, kind: tensor}]`")
    written = [a for a in args if isinstance(a, dict)]
    if written and len(written) != len(args):
        raise ctx.fail("args", "mixes argument names and written-out arguments",
                       "write all as names or all as mappings")
    specs: List[ArgSpec] = []
    for a in written:
        specs.append(_arg(ctx, a, [b.name for b in specs]))
    ctx.line = line
    names = tuple(a.name for a in specs) if specs else tuple(args)
    twice = _twice(names)
    if twice:
        raise ctx.fail("args", f"argument(s) {_shown(twice)} appear twice", "name each canonical argument once")
    return names, tuple(specs)


def _check_member(ctx: _Ctx, m: Member, args: Tuple[str, ...]) -> None:
    """A member's `keyword`, `positional` and `transpose` name the class's canonical arguments (a
    typo would be ignored silently), and `fixed` none of them (the call would get it twice).
    `rename` may name more: a derived member keeps its mapping of arguments another member lacks."""
    canonical = set(args)
    rename = dict(m.rename)
    twice = sorted({rename.get(a, a) for a in args} & {k for k, _ in m.fixed})
    if twice:
        raise ctx.fail("members.fixed", f"member {m.id} fixes {_shown(twice)}, which the canonical call passes",
                       "drop it from `fixed`, or from the class's `args`")
    for field, named in (("keyword", m.keyword), ("positional", m.positional),
                         ("transpose", [k for k, _ in m.transpose if k])):
        stray = sorted(set(named) - canonical)
        if stray:
            raise ctx.fail(f"members.{field}", f"member {m.id} names {_shown(stray)}, not canonical arguments "
                           f"{_shown(list(args))}",
                           "name the class's `args` (canonical names, before `rename`)"
                           + (" or '' for the output" if field == "transpose" else ""))


def _class(ctx: _Ctx, data: Any, k: int = 0) -> EquivalenceClass:
    if not isinstance(data, dict):
        raise ctx.fail("classes", f"each class is a mapping, got {_shown(data)}", "write {id: ..., members: [...]}")
    ctx.line = data.get("__line__", ctx.line)
    line = ctx.line
    ctx.api = _class_id(data, k)
    unknown = set(data) - _CLASS_FIELDS
    if unknown:
        raise ctx.fail(f"classes.{ctx.api}", f"unknown key(s) {_keys(unknown)}",
                       f"use only {sorted(_CLASS_FIELDS - {'__line__'})}")
    cid = _expect(ctx, data, "id", str, "give the class an id, e.g. `id: erfinv`")
    if not cid.strip():
        raise ctx.fail("id", "is empty", "give the class an id, e.g. `id: erfinv`")
    reference = _expect(ctx, data, "reference", str, "name the member whose argument specs are canonical, "
                        "e.g. `reference: torch:torch.erfinv`")
    rows = _expect(ctx, data, "members", list, "list the members, e.g. [{library: torch, api: torch.sin}, ...]")
    members = []
    for j, row in enumerate(rows):
        ctx.line = _line_of(rows, j, line)
        members.append(_member(ctx, row))
    ctx.line = line
    libs = [m.library for m in members]
    if len(set(libs)) != len(libs):
        raise ctx.fail("members", f"library {_shown(_twice(libs))} appears twice", "keep one member per library")
    if reference not in {m.id for m in members}:
        raise ctx.fail("reference", f"{_shown(reference)} is not one of the members {_shown([m.id for m in members])}",
                       "name a member as library:api")
    names, specs = _args_of(ctx, _expect(ctx, data, "args", list,
                                         "list the canonical arguments every member takes, e.g. [x]"))
    for j, m in enumerate(members):
        ctx.line = _line_of(rows, j, line)
        _check_member(ctx, m, names)
    ctx.line = line
    text = {key: _opt(ctx, data, key, key, lambda v: isinstance(v, str), "a string",
                      f"write `{key}:` as text (quote it if it looks like a number or a date)", "")
            for key in ("evidence", "why")}
    return EquivalenceClass(cid, reference, names, tuple(members), text["evidence"], f"{ctx.path}:{ctx.line}",
                            specs, text["why"])


def load_classes(path: Path) -> Tuple[EquivalenceClass, ...]:
    """The equivalence map; a malformed entry is an error naming the file, line, class and field."""
    ctx = _Ctx(str(path))
    if not path.exists():
        raise ctx.fail("(file)", "does not exist", "derive it with `nablafuzz specs derive-cross` or pass --equivalence FILE")
    data = _read_yaml(ctx, path)
    fix = "list the classes under `classes:`"
    if data is not None and not isinstance(data, dict):
        raise ctx.fail("classes", f"the file must be a mapping with a `classes:` list, got {_shown(data)}", fix)
    unknown = set(data or {}) - {"classes", "__line__"}
    if unknown:
        raise ctx.fail(", ".join(_keys(unknown)), "unknown top-level key(s)", "use only `classes:`")
    rows = _expect(ctx, data or {}, "classes", list, fix)
    classes = []
    for k, row in enumerate(rows):
        ctx.line, ctx.api = _line_of(rows, k, 0), ""
        classes.append(_class(ctx, row, k))
    seen: Dict[str, str] = {}
    for c in classes:
        if c.id in seen:
            raise SpecError(c.source, c.id, "id", f"duplicate of the class at {seen[c.id]}", "keep one class per id")
        seen[c.id] = c.source
    return tuple(classes)


def class_dict(cls: EquivalenceClass) -> Dict[str, Any]:
    """The YAML form of a class (what `load_classes` reads back)."""
    def member(m: Member) -> Dict[str, Any]:
        out: Dict[str, Any] = {"library": m.library, "api": m.api}
        if m.rename:
            out["rename"] = dict(m.rename)
        if m.keyword:
            out["keyword"] = list(m.keyword)
        if m.positional:
            out["positional"] = list(m.positional)
        if m.fixed:
            out["fixed"] = {k: list(v) if isinstance(v, tuple) else v for k, v in m.fixed}
        if m.prefix:
            out["prefix"] = list(m.prefix)
        if m.transpose:
            out["transpose"] = {k: list(v) for k, v in m.transpose}
        return out
    head = {"id": cls.id, **({"why": cls.why} if cls.why else {}), "reference": cls.reference}
    args = [arg_dict(a) for a in cls.arg_specs] if cls.arg_specs else list(cls.args)
    return {**head, "args": args, "members": [member(m) for m in cls.members], "evidence": cls.evidence}


def arg_dict(a: ArgSpec) -> Dict[str, Any]:
    """A written-out argument in spec-file form (fields at their default left out)."""
    out: Dict[str, Any] = {"name": a.name}
    for f in fields(ArgSpec):
        v = getattr(a, f.name)
        if f.name != "name" and v != f.default:
            out[f.name] = v.value if f.name == "kind" else list(v) if isinstance(v, tuple) else v
    return out
