"""`nablafuzz specs derive-cross`: the equivalence map, derived where names and probing agree.

Candidates: APIs of different libraries whose last name component matches after
normalisation (`erf_inv` = `erfinv`) and a table of synonyms (`arcsin` = `asin`,
`reduce_sum` = `sum`); per library the most canonical namespaces are tried first.  Arguments
are mapped to the reference's (the first library's candidate in LIBRARIES order): tensors by
position, the rest by name or synonym (`dim` = `axis`, `keepdim` = `keepdims`), passed by
keyword.  A candidate that needs an argument nobody else has is left out.

Evidence: every candidate computes the direct call on the same few canonical trials in its own
worker; the largest group of libraries whose outputs agree on every trial that ran in all of
them (and on at least MIN_AGREED) is the class.  Each class records what agreed, on how many
trials, and which candidates disagreed.
"""
from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from ..core.errors import WorkerError
from ..core.model import ApiSpec, ArgKind, ArgSpec, Outcome, Tolerance
from ..libraries import LIBRARIES as REGISTERED
from ..libraries import describe
from ..oracle.compare import same_outputs
from ..oracle.cross import picked_outputs
from ..reports.store import write_atomic
from ..runtime.pool import Members, installed_runtimes
from ..runtime.runner import Runner
from ..specs.equivalence import (EquivalenceClass, Member, Resolved, aliases, canonical_spec, class_dict, load_classes,
                                 member_trial, resolve)
from ..specs.generate import generate
from ..specs.spec import SpecSet, load_specs

# the libraries whose APIs classes are derived over (every registered one but the numpy reference),
# in the order that picks a class's reference
LIBRARIES = tuple(lib for lib in REGISTERED if lib != "numpy_ref")
MANUAL_FILE = "equivalence_manual.yaml"  # hand-written classes: probed like the derived ones
MIN_LIBRARIES = 3
PROBE_TRIALS = 5
MIN_AGREED = 2
AGREED_SHARE = 0.6  # of the probe trials both ran: a pole or a domain edge where one library differs
# (NaN against inf) must not hide a class; the campaign then reports that point if it is a bug
PER_LIBRARY = 3  # candidates tried per library and key
# Same function, not same accuracy: a float64 result good to 1e-8 (TensorFlow's gelu) is still
# gelu; the campaign's own tolerance (tolerance.CROSS_VALUE) then judges its accuracy.
SAME_FUNCTION = Tolerance(atol=1e-8, rtol=1e-6)

# Another library's name for the same function ("": never a class: a different function)
SYNONYMS = {
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh", "arccosh": "acosh",
    "arctanh": "atanh", "arctan2": "atan2", "absolute": "abs", "negative": "neg", "subtract": "sub",
    "multiply": "mul", "divide": "div", "truediv": "div", "truedivide": "div", "realdiv": "div", "power": "pow",
    "expit": "sigmoid", "gammaln": "lgamma", "swish": "silu", "clip": "clamp", "clipbyvalue": "clamp",
    "concatenate": "cat", "concat": "cat", "reducesum": "sum", "reducemean": "mean", "reduceprod": "prod",
    "reducemax": "amax", "reducemin": "amin", "reducelogsumexp": "logsumexp", "reducestd": "std",
    "reducevariance": "var", "matrixexp": "expm", "matrixdeterminant": "det", "matrixinverse": "inv",
    "besseli0": "i0", "besseli0e": "i0e", "besseli1": "i1", "besseli1e": "i1e", "cumlogsumexp": "logcumsumexp",
    "hardsilu": "hardswish", "sigmoidcrossentropy": "", "fabs": "abs", "bitwisenot": "",
    "matrixsquareroot": "sqrtm", "degrees": "rad2deg", "radians": "deg2rad", "sgn": "sign", "fix": "trunc",
    "mod": "remainder", "floormod": "remainder", "conjugate": "conj", "adjoint": "matrixtranspose",
    "permutedims": "permute", "unsqueeze": "expanddims", "logistic": "sigmoid", "reverse": "flip",
    "rev": "flip", "gammainc": "igamma", "gammaincc": "igammac", "diagpart": "diagonal",
    "matrixdiagpart": "diagonal", "euclideannorm": "vectornorm", "reduceeuclideannorm": "vectornorm",
    "takealongdim": "takealongaxis", "mv": "matvec", "multigammaln": "mvlgamma",
    "selfadjointeigvals": "eigvalsh", "cumulativesum": "cumsum", "cumulativeprod": "cumprod",
    "swapaxes": "transpose", "matrixsolve": "solve", "bmm": "batchmatmul",
    "matrixtriangularsolve": "triangularsolve", "solvetriangular": "triangularsolve",
    "logmatrixdeterminant": "slogdet", "batchmatmulv2": "batchmatmul", "concatv2": "cat", "loggamma": "lgamma",
    "l2normalize": "normalize", "squareddifference": "", "cumulativelogsumexp": "logcumsumexp", "clone": "copy",
    "repeatinterleave": "repeat", "moveaxis": "movedim", "unstack": "unbind", "broadcastarrays": "broadcasttensors",
    # the order of general eigenvalues is unspecified: libraries list the same ones differently
    "eigvals": "",
    # an eigenvector's sign is arbitrary (TensorFlow's solver picks others than LAPACK's): the
    # eigenvalues are compared in eigvalsh
    "eigh": "",
}
ARG_SYNONYMS = [{"dim", "axis", "axes", "dims", "dimensions", "perm"}, {"keepdim", "keepdims"},
                {"input", "x", "a", "features", "logits", "t"}, {"other", "y", "b", "x2"},
                {"min", "clip_value_min", "a_min"}, {"max", "clip_value_max", "a_max"},
                {"diagonal", "k", "offset"}, {"shifts", "shift"}, {"p", "ord"}, {"dim0", "axis1"}, {"dim1", "axis2"},
                {"negative_slope", "alpha"}, {"repeats"}, {"source", "destination"}]


def key(name: str) -> str:
    k = name.split(".")[-1].lower().replace("_", "")
    return SYNONYMS.get(k, k)


def _rank(library: str, name: str) -> int:
    prefixes = describe(library).namespaces  # its public namespaces, most preferred first
    namespace = name.rsplit(".", 1)[0] + "."
    return prefixes.index(namespace) if namespace in prefixes else len(prefixes)


def candidates(specs: SpecSet) -> Dict[str, Dict[str, List[Tuple[str, ApiSpec]]]]:
    """key -> library -> [(name to call, spec)], most canonical namespace first."""
    out: Dict[str, Dict[str, List[Tuple[str, ApiSpec]]]] = {}
    for s in specs.specs:
        if s.module or s.random or s.library not in LIBRARIES or ".Tensor." in s.name or ".masked." in s.name:
            continue
        for name in (s.name,) + aliases(s):
            k = key(name)
            if k and ":" not in name:
                out.setdefault(k, {}).setdefault(s.library, []).append((name, s))
    for by_lib in out.values():
        for lib, names in by_lib.items():
            names.sort(key=lambda n: (_rank(lib, n[0]), len(n[0])))
            by_lib[lib] = names[:PER_LIBRARY]
    return {k: v for k, v in out.items() if len(v) >= MIN_LIBRARIES}


def _same_arg(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in ARG_SYNONYMS)


@dataclass(frozen=True)
class Mapping:
    args: Tuple[str, ...]  # canonical (reference) arguments this member takes
    rename: Tuple[Tuple[str, str], ...]
    keyword: Tuple[str, ...]
    positional: Tuple[str, ...] = ()


def map_args(ref: ApiSpec, spec: ApiSpec) -> Optional[Mapping]:
    """How `spec` takes the reference's arguments: tensors by position, the others by name (or
    synonym) and else by the same position; a keyword argument of the reference with no
    counterpart keeps its default.  None if a required argument is left on either side.
    Liberal on purpose: the probe, not the mapping, decides what computes the same function."""
    tensors = lambda s: [a for a in s.args if a.kind in TENSORS and not (a.keyword or a.optional)]  # noqa: E731
    rt, mt = tensors(ref), tensors(spec)
    if len(rt) != len(mt) or any(a.kind != b.kind for a, b in zip(rt, mt)):
        return None
    kept, rename, keyword, positional = [], [], [], []
    for a, b in zip(rt, mt):
        kept.append(a.name)
        if a.name != b.name:
            rename.append((a.name, b.name))
        if a.keyword:
            keyword.append(a.name)
    used = {b.name for b in mt}
    for pos, a in enumerate(ref.args):
        if a in rt:
            continue
        b = next((b for b in spec.args if b.name not in used and _same_arg(a.name, b.name)), None)
        if b is None and a.kind in SCALAR_KINDS and not a.keyword:
            # a positional option (torch's `arg1`): the member's next free option of a compatible kind
            b = next((b for b in spec.args[pos:] if b.name not in used and b.kind in SCALAR_KINDS), None)
        if b is None:
            if not _droppable(a):
                return None
            continue
        used.add(b.name)
        kept.append(a.name)
        same_place = pos < len(spec.args) and spec.args[pos] is b and not b.keyword
        if same_place and not a.keyword:
            continue  # positional in both
        if same_place and a.name == b.name:
            continue  # by the same name (keyword in the reference)
        if same_place:
            positional.append(a.name)
        else:
            keyword.append(a.name)
            if a.name != b.name:
                rename.append((a.name, b.name))
    if any(b.name not in used and not _droppable(b) for b in spec.args):
        return None
    return Mapping(tuple(kept), tuple(rename), tuple(keyword), tuple(positional))


SCALAR_KINDS = (ArgKind.CHOICE, ArgKind.AXIS, ArgKind.INT, ArgKind.BOOL)
TENSORS = (ArgKind.TENSOR, ArgKind.TENSOR_LIST)


def _droppable(a: ArgSpec) -> bool:
    """Whether a call may leave the argument at its default: optional ones, and keyword options
    (mode strings, flags, tensor-valued parameters such as jax.nn.elu's alpha)."""
    return a.optional or a.default is not None or (a.keyword and a.kind in TENSORS + (ArgKind.CHOICE, ArgKind.BOOL,
                                                                                      ArgKind.FLOAT))


def _probe_class(cid: str, ref: Tuple[str, ApiSpec], members: List[Tuple[str, ApiSpec, Mapping]],
                 runners: Members) -> Tuple[List[str], str]:
    """The member names whose outputs agree with the largest group on the probe trials."""
    args = tuple(a for a in ref[1].args if all(a.name in m.args for _, _, m in members))
    cls = EquivalenceClass(cid, f"{ref[1].library}:{ref[0]}", tuple(a.name for a in args),
                           tuple(Member(s.library, name, m.rename, m.keyword, m.positional) for name, s, m in members))
    canon = canonical_spec(cls, ref[1], [s for _, s, _ in members])
    return _agreeing(_outputs(cls, canon, {f"{s.library}:{n}": s for n, s, _ in members}, runners))


def _outputs(cls: EquivalenceClass, canon: ApiSpec, specs: Dict[str, ApiSpec], runners: Members) -> Dict[str, List]:
    """Each member's direct outputs on the same PROBE_TRIALS canonical trials (None: failed)."""
    outputs: Dict[str, List] = {m.id: [] for m in cls.members}
    for index in range(PROBE_TRIALS):
        trial = generate(canon, 0, index, 24, 3, dtype="float64")
        for m in cls.members:
            r = Resolved(replace(cls, members=(m,)), canon, ((m.library, specs[m.id]),))
            try:
                ex = runners[m.library].run(member_trial(r, m.library, trial), specs[m.id], ())
            except WorkerError:  # the name does not resolve in that library: not a member
                outputs[m.id].append(None)
                continue
            d = ex.get("direct")
            outputs[m.id].append(picked_outputs(r, m.library, d) if d is not None and d.outcome is Outcome.OK else None)
    return outputs


def probe_written(cls: EquivalenceClass, specs: SpecSet, runners: Members) -> Optional[EquivalenceClass]:
    """A hand-written class (api_specs/equivalence_manual.yaml), kept with the members whose
    outputs agree; None if fewer than MIN_LIBRARIES do, or its reference does not."""
    found = resolve([cls], specs, [m.library for m in cls.members])
    if not found:
        return None
    r = found[0]
    agreed, evidence = _agreeing(_outputs(cls, r.canonical, {m.id: r.spec(m.library) for m in cls.members
                                                             if m.library in r.libraries}, runners))
    if len(agreed) < MIN_LIBRARIES or cls.reference not in agreed:
        return None
    return replace(cls, members=tuple(m for m in cls.members if m.id in agreed),
                   evidence=f"written by hand; {evidence}")


def _agreeing(outputs: Dict[str, List]) -> Tuple[List[str], str]:
    same = same_outputs(SAME_FUNCTION)
    best: List[str] = []
    best_n = 0
    for seed in outputs:
        group, counts = [seed], []
        for other in outputs:
            if other == seed or other.split(":")[0] in {g.split(":")[0] for g in group}:
                continue
            both = [(a, b) for a, b in zip(outputs[seed], outputs[other]) if a is not None and b is not None]
            agreed = sum(same(a, b) for a, b in both)
            if agreed >= MIN_AGREED and agreed >= AGREED_SHARE * len(both):
                group.append(other)
                counts.append(agreed)
        if len(group) > len(best):
            best, best_n = group, min(counts, default=0)
    rejected = [m for m in outputs if m.split(":")[0] not in {b.split(":")[0] for b in best}]
    evidence = (f"direct outputs agree on {best_n} of {PROBE_TRIALS} probe trials (float64): "
                f"{', '.join(best)}" + (f"; disagreed or failed: {', '.join(rejected)}" if rejected else ""))
    return best, evidence


def derive_classes(spec_dir: Path, out: Path, verbose: bool = False, only: Sequence[str] = ()) -> int:
    runtimes = installed_runtimes(LIBRARIES, [str(Path.cwd())])
    specs = load_specs(spec_dir, list(runtimes))
    members = Members(lambda lib: Runner(runtimes[lib], Path(".nablafuzz/logs") / f"cross-{lib}.log", 30.0))
    wanted = lambda k: not only or any(fnmatch.fnmatchcase(k, g) for g in only)  # noqa: E731
    # with `only`, the other classes of an existing map are kept as they are
    classes = {c.id: c for c in (load_classes(out) if only and out.exists() else ()) if not wanted(c.id)}
    written = load_classes(spec_dir / MANUAL_FILE) if (spec_dir / MANUAL_FILE).exists() else ()
    try:
        for k, by_lib in sorted(candidates(specs).items()):
            if wanted(k) and k not in {c.id for c in written}:
                _keep(classes, k, _derive_one(k, by_lib, members), verbose)
        for c in written:
            if wanted(c.id):
                _keep(classes, c.id, probe_written(c, specs, members), verbose)
    finally:
        members.close()
    _write(out, [classes[k] for k in sorted(classes)])
    return len(classes)


def _keep(classes: Dict[str, EquivalenceClass], k: str, cls: Optional[EquivalenceClass], verbose: bool) -> None:
    if cls is not None:
        classes[k] = cls
    if verbose:
        print(f"{k}: {cls.evidence if cls else 'no class'}", file=sys.stderr)


def _derive_one(k: str, by_lib: Dict[str, List[Tuple[str, ApiSpec]]], runners: Members,
                again: bool = True) -> Optional[EquivalenceClass]:
    ordered = [lib for lib in LIBRARIES if lib in by_lib]
    ref, tried = max((_mapped(by_lib[lib][0], by_lib, ordered) for lib in ordered),
                     key=lambda rt: len({s.library for _, s, _ in rt[1]}))
    if len({s.library for _, s, _ in tried}) < MIN_LIBRARIES:
        return None
    agreed, evidence = _probe_class(k, ref, tried, runners)
    if len(agreed) < MIN_LIBRARIES:
        return None
    chosen = [t for t in tried if f"{t[1].library}:{t[0]}" in agreed]
    ref_member = next((t for t in chosen if t[1] is ref[1]), None)
    if ref_member is None:  # the reference disagreed: an agreeing member becomes it
        if not again:
            return None
        return _derive_one(k, {lib: [(n, s) for n, s, _ in chosen if s.library == lib] for lib in ordered
                               if any(s.library == lib for _, s, _ in chosen)}, runners, False)
    args = tuple(a.name for a in ref[1].args if all(a.name in m.args for _, _, m in chosen))
    ms = tuple(Member(s.library, n, m.rename, tuple(x for x in m.keyword if x in args),
                      tuple(x for x in m.positional if x in args)) for n, s, m in chosen)
    return EquivalenceClass(k, f"{ref[1].library}:{ref_member[0]}", args, ms,
                            f"names match ({k}); {evidence}")


def _mapped(ref: Tuple[str, ApiSpec], by_lib: Dict[str, List[Tuple[str, ApiSpec]]], ordered: Sequence[str]):
    """(ref, the candidates that map onto its arguments)."""
    tried = []
    for lib in ordered:
        for name, spec in by_lib[lib]:
            m = map_args(ref[1], spec)
            if m is not None:
                tried.append((name, spec, m))
    return ref, tried


def _write(path: Path, classes: Sequence[EquivalenceClass]) -> None:
    header = ("# Generated by `nablafuzz specs derive-cross`: classes of ops that compute the same function,\n"
              "# found where names and probing agree (see nablafuzz/crossderive.py); each records its evidence.\n")
    body = yaml.safe_dump({"classes": [class_dict(c) for c in classes]}, sort_keys=False, width=110)
    write_atomic(path, header + body)


