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
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import SpecError
from .model import ApiSpec, ArgKind, ArgSpec, InputValue, Scalar, Trial
from .spec import SpecSet, _arg, _Ctx, _expect, _frozen, _read_yaml, _shown

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
        found = [(m.library, index[m.id]) for m in cls.members if m.library in libraries and m.id in index]
        if len(found) >= 2:
            out.append(Resolved(cls, canonical_spec(cls, index[cls.reference], [s for _, s in found]), tuple(found)))
    return out


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
                 r.spec(library).differentiable_outputs, layout=layout)


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

def _pairs(ctx: _Ctx, field: str, data: Any) -> Tuple[Tuple[str, str], ...]:
    if not isinstance(data, dict) or not all(isinstance(v, str) for k, v in data.items() if k != "__line__"):
        raise ctx.fail(field, f"expected a mapping canonical name -> this library's name, got {_shown(data)}",
                       "write e.g. {dim: axis, keepdim: keepdims}")
    return tuple(sorted((k, v) for k, v in data.items() if k != "__line__"))


def _member(ctx: _Ctx, data: Any) -> Member:
    if not isinstance(data, dict) or set(data) - _MEMBER_FIELDS:
        raise ctx.fail("members", f"each member is a mapping with keys {sorted(_MEMBER_FIELDS - {'__line__'})}, "
                       f"got {_shown(data)}", "write {library: jax, api: jax.numpy.sin}")
    library = _expect(ctx, data, "library", str, "name the member's library, e.g. `library: jax`")
    api = _expect(ctx, data, "api", str, "name the member's API, e.g. `api: jax.numpy.sin`")
    fixed = data.get("fixed", {})
    prefix = data.get("prefix", [])
    if not isinstance(fixed, dict) or not isinstance(prefix, list):
        raise ctx.fail("members.fixed", f"expected `fixed` a mapping and `prefix` a list, got {_shown(fixed)}, "
                       f"{prefix!r}", "write e.g. fixed: {ord: fro} and prefix: ['ij,jk->ik']")
    transpose = data.get("transpose", {})
    if not isinstance(transpose, dict) or not all(isinstance(v, list) and all(isinstance(k, int) for k in v)
                                                  for k, v in transpose.items() if k != "__line__"):
        raise ctx.fail("members.transpose", f"expected a mapping argument -> axis permutation, got {_shown(transpose)}",
                       "write e.g. {x: [0, 2, 3, 1], '': [0, 3, 1, 2]} ('' is the output)")
    return Member(library, api, _pairs(ctx, "members.rename", data.get("rename", {})),
                  _names(ctx, "members.keyword", data.get("keyword", [])),
                  _names(ctx, "members.positional", data.get("positional", [])),
                  tuple(sorted((k, _frozen(v)) for k, v in fixed.items() if k != "__line__")), tuple(_frozen(prefix)),
                  tuple(sorted((k, tuple(v)) for k, v in transpose.items() if k != "__line__")))


def _names(ctx: _Ctx, field: str, names: Any) -> Tuple[str, ...]:
    if not isinstance(names, list) or not all(isinstance(k, str) for k in names):
        raise ctx.fail(field, f"expected a list of canonical argument names, got {names!r}", "write e.g. [dim]")
    return tuple(names)


def _class(ctx: _Ctx, data: Any) -> EquivalenceClass:
    if not isinstance(data, dict):
        raise ctx.fail("classes", f"each class is a mapping, got {_shown(data)}", "write {id: ..., members: [...]}")
    ctx.line = data.get("__line__", ctx.line)
    ctx.api = str(data.get("id", ""))
    unknown = set(data) - _CLASS_FIELDS
    if unknown:
        raise ctx.fail(f"classes.{ctx.api}", f"unknown key(s) {sorted(unknown)}", f"use only {sorted(_CLASS_FIELDS - {'__line__'})}")
    cid = _expect(ctx, data, "id", str, "give the class an id, e.g. `id: erfinv`")
    reference = _expect(ctx, data, "reference", str, "name the member whose argument specs are canonical, "
                        "e.g. `reference: torch:torch.erfinv`")
    members = tuple(_member(ctx, m) for m in _expect(ctx, data, "members", list, "list the members"))
    libs = [m.library for m in members]
    if len(set(libs)) != len(libs):
        raise ctx.fail("members", f"a library appears twice ({libs})", "keep one member per library")
    if reference not in {m.id for m in members}:
        raise ctx.fail("reference", f"{reference!r} is not one of the members {[m.id for m in members]}",
                       "name a member as library:api")
    args = _expect(ctx, data, "args", list, "list the canonical arguments every member takes, e.g. [x]")
    written = [a for a in args if isinstance(a, dict)]
    specs = tuple(_arg(ctx, a, [str(b.get("name")) for b in written[:k]]) for k, a in enumerate(written))
    if written and len(written) != len(args):
        raise ctx.fail("args", "mixes argument names and written-out arguments", "write all as names or all as mappings")
    names = tuple(a.name for a in specs) if specs else tuple(str(a) for a in args)
    return EquivalenceClass(cid, reference, names, members, str(data.get("evidence", "")), f"{ctx.path}:{ctx.line}",
                            specs, str(data.get("why", "")))


def load_classes(path: Path) -> Tuple[EquivalenceClass, ...]:
    """The equivalence map; a malformed entry is an error naming the file, line, class and field."""
    ctx = _Ctx(str(path))
    if not path.exists():
        raise ctx.fail("(file)", "does not exist", "derive it with `nablafuzz specs derive-cross` or pass --equivalence FILE")
    data = _read_yaml(ctx, path)
    rows = _expect(ctx, data if isinstance(data, dict) else {}, "classes", list, "list the classes under `classes:`")
    classes = [_class(ctx, row) for row in rows]
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
