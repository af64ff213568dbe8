"""Spec sources: derive `api_specs/<library>/` from the library's own metadata.

Derivation runs inside the library's worker (the orchestrator never imports a DL library):
the worker's `specs` request returns spec dicts, validated and written here by `write_specs`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

from .errors import WorkerError
from .runtime.process import WorkerProcess
from .runtime.registry import resolve_runtime
from .spec import load_file, load_specs, write_specs


def derive(library: str, out: Path, timeout_s: float = 1800.0) -> int:
    worker = WorkerProcess(resolve_runtime(library), Path(".nablafuzz/logs") / f"specs-{library}.log")
    worker.start()
    try:
        ex = worker.request({"op": "specs"}, timeout_s, until="specs")
    finally:
        worker.close()
    if ex.death is not None or not ex.messages or ex.messages[-1].get("op") != "specs":
        detail = ex.death.detail if ex.death else ex.messages[-1] if ex.messages else "no answer"
        raise WorkerError(f"spec derivation for {library} failed: {detail}")
    apis, dropped = ex.messages[-1]["apis"], ex.messages[-1].get("dropped", [])
    if not apis:
        raise WorkerError(f"the {library} adapter derived no specs (it has no spec source yet); "
                          f"nothing was written to {out}")
    write_specs(out, library, apis, f"nablafuzz specs derive {library}", dropped)
    return len(apis)


def list_specs(spec_dir: Path, library: Optional[str], check_only: bool) -> Iterator[str]:
    libraries = [library] if library else sorted(p.name for p in spec_dir.iterdir() if p.is_dir())
    total = 0
    for lib in libraries:
        for f in sorted((spec_dir / lib).glob("*.yaml")):
            specs = load_file(f)
            total += len(specs)
            if check_only:
                yield f"{f}: {len(specs)} specs OK"
            else:
                yield from (f"{s.id}  ({s.source})" for s in specs)
    load_specs(spec_dir, libraries)  # cross-file duplicates
    yield f"{total} specs in {len(libraries)} libraries"
