"""`nablafuzz numerics`: trace a model's loss and its gradient in the library, analyse both
graphs with intervals, report each vulnerable operation with the clamp that proves it safe."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.graph import Graph, from_wire
from ..modelfuzz.client import ModelClient
from ..reports.store import write_atomic
from ..specs.models import ModelSpec
from .intervals import Flag, Interval, analyse


@dataclass(frozen=True)
class Finding:
    flag: Flag
    graph: str  # "forward" or "backward" (exists only to compute the gradient)
    fix: Interval  # clamp of the operand
    proved: bool  # the analysis with the clamp in place finds the operation safe


@dataclass(frozen=True)
class Result:
    model: str
    library: str
    findings: Tuple[Finding, ...]
    nodes: Tuple[int, int]  # forward, gradient graph sizes
    unknown: Tuple[Tuple[str, int], ...]
    seconds: float  # analysis time (both graphs), tracing excluded


def arguments(graph: Graph, x: Tuple[float, float], weights: Optional[Tuple[float, float]],
              ranges: Dict[str, Sequence[float]], classes: int) -> Dict[str, Interval]:
    """The analysis's starting intervals: the input range, labels 0..classes-1, each parameter
    its own values' range (or --weights for all)."""
    out = {"x": Interval(*x), "y": Interval(0.0, float(max(classes - 1, 0)))}
    for name, _ in graph.arguments:
        if name.startswith("param:"):
            lo, hi = weights if weights is not None else ranges[name[len("param:"):]]
            out[name] = Interval(float(lo), float(hi))
    return out


def _proved(graph: Graph, start: Dict[str, Interval], flag: Flag) -> bool:
    again = analyse(graph, start, {flag.node.id: flag.safe})
    return all(f.node.id != flag.node.id for f in again.flags)


def analyse_model(spec: ModelSpec, library: str, input_range: Optional[Tuple[float, float]],
                  weights: Optional[Tuple[float, float]], backward: bool, log: Path) -> Result:
    client = ModelClient(spec, library, log)
    try:
        fwd_wire, ranges, classes = client.graph(False)
        bwd_wire = client.graph(True)[0] if backward else None
    finally:
        client.close()
    box = input_range or spec.input_range
    start = time.perf_counter()
    forward = from_wire(fwd_wire)
    fargs = arguments(forward, box, weights, ranges, classes)
    a = analyse(forward, fargs)
    found = [Finding(f, "forward", f.safe, _proved(forward, fargs, f)) for f in a.flags]
    unknown = dict(a.unknown)
    size = (len(forward.nodes), 0)
    if bwd_wire is not None:
        grad = from_wire(bwd_wire)
        gargs = arguments(grad, box, weights, ranges, classes)
        b = analyse(grad, gargs)
        seen = {(n.op, n.source, n.shape) for n in forward.nodes}
        for f in b.flags:
            if f.node.backward or (f.node.op, f.node.source, f.node.shape) not in seen:
                found.append(Finding(f, "backward", f.safe, _proved(grad, gargs, f)))
        for op, n in b.unknown:
            unknown[op] = max(unknown.get(op, 0), n)
        size = (len(forward.nodes), len(grad.nodes))
    return Result(spec.name, library, tuple(found), size, tuple(sorted(unknown.items())),
                  time.perf_counter() - start)


def lines(r: Result) -> List[str]:
    out = [f"{r.model} ({r.library}): {len(r.findings)} vulnerable operation(s); graphs of {r.nodes[0]} and "
           f"{r.nodes[1]} nodes analysed in {r.seconds * 1000:.1f} ms"
           + (f"; analysed as unbounded (unknown): {', '.join(f'{op} x{n}' for op, n in r.unknown)}" if r.unknown else "")]
    for f in r.findings:
        n = f.flag.node
        out.append(f"  {f.graph:8s} {n.op:12s} {n.source or '(no source line)'}: {f.flag.problem}; operand in "
                   f"{f.flag.operand}; fix: clamp the operand to {f.fix} ({'proved safe' if f.proved else 'NOT proved'})")
    return out


def write_result(path: Path, r: Result) -> None:
    data = {"model": r.model, "library": r.library, "nodes": list(r.nodes), "seconds": r.seconds,
            "unknown": [list(u) for u in r.unknown],
            "findings": [{"graph": f.graph, "op": f.flag.node.op, "source": f.flag.node.source,
                          "node": f.flag.node.id, "problem": f.flag.problem,
                          "operand": [f.flag.operand.lo, f.flag.operand.hi], "clamp": [f.fix.lo, f.fix.hi],
                          "proved": f.proved} for f in r.findings]}
    write_atomic(path, json.dumps(data, indent=1, default=str) + "\n")
