"""Spec sources: derive `api_specs/<library>/` from the library's own metadata.

Two sources, both asked of the library's worker (the orchestrator never imports a DL library):
`specs`, specs an adapter derives itself (torch from OpInfo), and `catalogue`, public callables
with signatures that the probing source (`nablafuzz.derive.probing`) turns into specs by running
argument templates.  The union is validated and written by `write_specs`; what neither could
derive is listed at the end of the file with the reason.
"""
from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import yaml

from ..core.errors import SpecError, WorkerError
from ..core.model import ApiSpec
from ..core.tensors import non_empty
from ..libraries import describe, record
from ..runtime.process import WorkerProcess
from ..runtime.registry import resolve_runtime
from ..specs.generate import generate
from ..specs.spec import HINTS_FILE, load_file, load_probe_hints, load_specs, write_specs
from .probing import Entry, entry_from_dict, probe_entries

LOGS = Path(".nablafuzz/logs")


def _ask(worker: WorkerProcess, op: str, library: str, timeout_s: float) -> Dict[str, Any]:
    ex = worker.request({"op": op}, timeout_s, until=op)
    if ex.death is not None or not ex.messages or ex.messages[-1].get("op") != op:
        detail = ex.death.detail if ex.death else ex.messages[-1] if ex.messages else "no answer"
        raise WorkerError(f"spec derivation ({op}) for {library} failed: {detail}")
    return ex.messages[-1]


# A library that mirrors another's API (its record's `mirror`): its specs are the other's,
# renamed, each confirmed by running it (OneFlow mirrors PyTorch).  Layer specs (torch.nn
# modules) are not mirrored yet.
MIRRORED_DTYPES = ("float64", "float32")


def mirrored(library: str, spec_dir: Path) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The source library's spec dicts renamed for `library`, and the specs not mirrored, with why."""
    source, renames = describe(library).mirror
    path = spec_dir / source / "derived.yaml"
    if not path.exists():
        raise WorkerError(f"{library} specs mirror {source}'s, but {path} is missing; "
                          f"run `nablafuzz specs derive {source}` first")
    load_file(path)  # valid (a SpecError naming file, line and field otherwise), so the dicts below are too
    specs, skipped = [], []
    for spec in (yaml.safe_load(path.read_text()) or {}).get("apis", []):
        name = spec["name"]
        if "module" in spec:
            skipped.append(f"{name}: a {source} layer spec; layers are not mirrored yet")
            continue
        new = next((to + name[len(frm):] for frm, to in renames if name.startswith(frm)), None)
        if new is None:
            skipped.append(f"{name}: no {library} name for it")
            continue
        dtypes = [d for d in spec.get("dtypes", MIRRORED_DTYPES) if d in MIRRORED_DTYPES] or list(MIRRORED_DTYPES)
        keep = {k: v for k, v in spec.items() if k not in ("capabilities", "unsupported", "notes")}
        specs.append(dict(keep, name=new, dtypes=dtypes, notes=name))
    return specs, skipped


def derive(library: str, out: Path, timeout_s: float = 1800.0, workers: int = 2, verbose: bool = False,
           only: Optional[Sequence[str]] = None, hints_path: Path = Path("api_specs") / HINTS_FILE) -> int:
    """Write `out`; `only` (globs) re-probes just the matching APIs and keeps the rest of an
    existing `out` as it is (specs and dropped lines alike).  Probing follows the library's
    rows of `hints_path` (what its documentation says that a probe cannot learn)."""
    hints = load_probe_hints(hints_path, library)
    runtime = resolve_runtime(library, [str(Path.cwd())])
    worker = WorkerProcess(runtime, LOGS / f"specs-{library}.log")
    worker.start()
    try:
        derived = _ask(worker, "specs", library, timeout_s)
        catalogue = _ask(worker, "catalogue", library, timeout_s)
    finally:
        worker.close()
    apis: List[Dict[str, Any]] = list(derived.get("apis", []))
    dropped: List[str] = list(derived.get("dropped", [])) + list(catalogue.get("dropped", []))
    have = {a["name"] for a in apis}
    entries = [entry_from_dict(e) for e in catalogue.get("entries", []) if e["name"] not in have
               and (not only or any(fnmatch.fnmatchcase(e["name"], g) for g in only))]
    given: Dict[str, Dict[str, Any]] = {}
    if record(library).mirror:
        specs, skipped = mirrored(library, hints_path.parent)
        dropped += skipped
        given = {s["name"]: dict(s, notes="") for s in specs if not only or _matches(s["name"], only)}
        entries += [Entry(s["name"], s["name"].rsplit(".", 1)[0], (), doc=s["notes"]) for s in specs
                    if s["name"] in given and s["name"] not in have]
    log = (lambda line: print(line, file=sys.stderr)) if verbose else None
    for entry, spec, why in probe_entries(runtime, entries, LOGS, workers, log, hints, given):
        if spec is not None:
            apis.append(spec)
        else:
            dropped.append(f"{entry.name}: {why}")
    if only and out.exists():
        apis, dropped = _keep_others(out, only, apis, dropped)
    if not apis:
        raise WorkerError(f"the {library} adapter derived no specs (it has no spec source yet); "
                          f"nothing was written to {out}")
    apis.sort(key=lambda a: a["name"])
    write_specs(out, library, apis, f"nablafuzz specs derive {library}", dropped)
    return len(apis)


def _matches(name: str, only: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in only)


def _keep_others(out: Path, only: Sequence[str], apis: List[Dict[str, Any]],
                 dropped: List[str]) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The new results for the APIs `only` selects, the old file's entries for all others."""
    load_file(out)  # valid (a SpecError naming file, line and field otherwise), so the dicts below are too
    text = out.read_text()
    old = yaml.safe_load(text) or {}
    kept = [a for a in old.get("apis", []) if not _matches(a["name"], only)]
    old_dropped = [line[len("# dropped: "):] for line in text.splitlines() if line.startswith("# dropped: ")]
    new = [a for a in apis if _matches(a["name"], only)]
    return kept + new, [d for d in old_dropped if not _matches(d.split(":")[0], only)] + [
        d for d in dropped if _matches(d.split(":")[0], only)]


def list_specs(spec_dir: Path, library: Optional[str], check_only: bool) -> Iterator[str]:
    have = sorted(p.name for p in spec_dir.iterdir() if p.is_dir())
    if library and library not in have:
        raise SpecError(str(spec_dir / library), "", "library", f"no spec directory for {library!r} under {spec_dir}",
                        f"name one of {', '.join(have) or '(none)'}, or derive its specs with "
                        f"`nablafuzz specs derive {library}`")
    libraries = [library] if library else have
    total = 0
    for lib in libraries:
        for f in sorted((spec_dir / lib).glob("*.yaml")):
            specs = load_file(f)
            total += len(specs)
            if check_only:
                yield f"{f}: {len(specs)} specs OK"
            else:
                yield from (f"{s.id}  ({s.source})" for s in specs)
    specs = load_specs(spec_dir, libraries)  # cross-file duplicates
    yield f"{total} specs in {len(libraries)} libraries"
    if check_only and not library:
        yield from _check_map(spec_dir, specs, libraries)
    if check_only:
        yield from _check_trials(specs.specs, libraries)


# Note [trial validity]
# A trial whose differentiable inputs are all empty compares nothing (its derivatives have no
# element), so a spec is only as useful as the share of its trials with a non-empty one.  The
# generator draws empty tensors in a few trials on purpose (Note [empty trials]); a spec below
# MIN_NON_EMPTY has fixed zero-sized dims (a derived sample that was empty) or no
# differentiable input at all.  `specs check` measures the share on CHECK_TRIALS trials per spec
# with a fixed seed (deterministic, so the check is too) and fails naming the specs below it.
CHECK_TRIALS = 40
CHECK_SEED = 0
MIN_NON_EMPTY = 0.9


def non_empty_share(spec: ApiSpec, trials: int = CHECK_TRIALS, seed: int = CHECK_SEED) -> float:
    """The share of `trials` generated trials of `spec` with a non-empty differentiable input."""
    return sum(non_empty(generate(spec, seed, index)) for index in range(trials)) / trials


def _check_trials(specs: Sequence[ApiSpec], libraries: Sequence[str]) -> Iterator[str]:
    """Per library, the share of generated trials with a non-empty differentiable input, and
    every spec below MIN_NON_EMPTY; a SpecError naming them if there are any (Note [trial validity])."""
    low: List[Tuple[ApiSpec, float]] = []
    for lib in libraries:
        shares = [(s, non_empty_share(s)) for s in specs if s.library == lib]
        if not shares:
            continue
        under = [(s, v) for s, v in shares if v < MIN_NON_EMPTY]
        yield (f"{lib}: {sum(v for _, v in shares) / len(shares):.1%} of {CHECK_TRIALS * len(shares)} generated "
               f"trials have a non-empty differentiable input; {len(under)} specs under {MIN_NON_EMPTY:.0%}")
        yield from (f"  {s.id}: {v:.0%} ({s.source})" for s, v in under)
        low += under
    if low:
        names = ", ".join(f"{s.id} ({v:.0%})" for s, v in low[:20]) + (f" and {len(low) - 20} more"
                                                                      if len(low) > 20 else "")
        raise SpecError(low[0][0].source.rsplit(":", 1)[0], "", "dims",
                        f"{len(low)} specs give a non-empty differentiable input in fewer than {MIN_NON_EMPTY:.0%} "
                        f"of {CHECK_TRIALS} generated trials: {names}",
                        "give each spec's differentiable tensors shapes with elements (no '0' in `dims`); "
                        "re-derive derived specs with `nablafuzz specs derive <library>`")


def _check_map(spec_dir: Path, specs, libraries) -> Iterator[str]:
    """The equivalence map and its hand-written source: valid, and how many classes resolve."""
    from ..specs.equivalence import EQUIVALENCE_FILE, load_classes, resolve
    from .crossderive import MANUAL_FILE
    for name in (MANUAL_FILE, EQUIVALENCE_FILE):
        if (spec_dir / name).exists():
            classes = load_classes(spec_dir / name)
            found = resolve(classes, specs, libraries)
            yield (f"{spec_dir / name}: {len(classes)} classes OK, {len(found)} resolve against these specs, "
                   f"{sum(len(r.libraries) >= 3 for r in found)} with 3 or more libraries")
