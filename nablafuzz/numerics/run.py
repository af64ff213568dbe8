"""`nablafuzz numerics`: trace a model's loss and its gradient in the library, analyse both
graphs with intervals, report each vulnerable operation with the clamp that proves it safe."""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.graph import Graph, from_wire
from ..core.model import Candidate, Finding as StoreFinding, Severity, TensorRecord, Verdict
from ..core.tensors import to_array, to_record
from ..modelfuzz.client import ModelClient
from ..reports.store import write_atomic
from ..specs.models import ModelSpec
from .intervals import EXP_LIMIT, TINY, Flag, Interval, analyse, operand_position


@dataclass(frozen=True)
class Confirmation:
    """Per seed: the guided search and uniform sampling (found, evaluations, seconds), and where
    the guided search found an input, whether the clamp makes it finite."""

    seed: int
    guided: bool
    guided_evaluations: int
    guided_seconds: float
    uniform: bool
    uniform_samples: int
    uniform_seconds: float
    fixed_finite: Optional[bool] = None
    fix_change: Optional[float] = None
    # the guided search's failing input, where it moved the input alone (the trained parameters
    # reproduce it): the literal input of the defect's report
    x: Optional[TensorRecord] = None
    y: int = 0
    fixed_finite_all: Optional[bool] = None  # with every flag's fix of the model in place
    # the clamp removes the defect's own non-finite value (Note [the defect's own NaN] in worker/numerics.py)
    removed: Optional[bool] = None


@dataclass(frozen=True)
class Finding:
    """A vulnerable operation (a defect): its flag, the graph it is in, whether the analysis
    with its fix in place proves it safe, the flags of its derivative (backward operations of
    the same source line, which its fix removes too), and confirmations."""

    flag: Flag
    graph: str  # "forward" or "backward" (exists only to compute the gradient)
    proved: bool
    derivatives: Tuple[Flag, ...] = ()
    # the nodes (and flags) the fix applies to in the graph it is verified in (the gradient's, if
    # traced): the flag's, and its siblings' (the same operation on the same source line: a
    # function called twice, two logs on one line), which one fix in the code covers too
    fix_nodes: Tuple[Tuple[int, Flag], ...] = ()
    confirmations: Tuple[Confirmation, ...] = ()

    @property
    def siblings(self) -> Tuple[Flag, ...]:
        return tuple(g for _, g in self.fix_nodes[1:])


def fix_text(flag: Flag) -> str:
    if flag.away > 0:
        return f"keep the operand at least {flag.away:g} away from 0, its sign kept"
    return f"clamp the operand to {flag.safe}"


@dataclass(frozen=True)
class Result:
    model: str
    library: str
    findings: Tuple[Finding, ...]
    nodes: Tuple[int, int]  # forward, gradient graph sizes
    unknown: Tuple[Tuple[str, int], ...]
    seconds: float  # analysis time (both graphs), tracing excluded
    versions: Tuple[str, ...] = ()


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
    again = analyse(graph, start, {flag.node.id: flag})
    return all(f.node.id != flag.node.id for f in again.flags)


# what confirming a flag searches for: (kind, limit, operand position) per operation
def search_target(flag: Flag) -> Tuple[str, float, int]:
    op, tiny = flag.node.op, TINY.get(flag.node.dtype, TINY["float32"])
    position = operand_position(op)
    if op in ("div", "integer_pow"):
        return "zero", tiny, position
    if op == "exp":
        return "high", EXP_LIMIT.get(flag.node.dtype, EXP_LIMIT["float32"]), position
    return "low", {"log": 0.0, "log1p": -1.0, "sqrt": -tiny, "rsqrt": 0.0}.get(op, 0.0), position


@dataclass(frozen=True)
class Search:
    seeds: int = 10
    steps: int = 200
    uniform: int = 2000  # uniform samples per seed


def _fixes(finding: "Finding") -> List[list]:
    return [[node, search_target(g)[2], g.safe.lo, g.safe.hi, g.away] for node, g in finding.fix_nodes if node >= 0]


def _nodes(finding: "Finding") -> List[int]:
    """The finding's operations in the graph its fix is verified in: its own, its siblings',
    its derivative's."""
    return [node for node, _ in finding.fix_nodes if node >= 0] + [d.node.id for d in finding.derivatives]


def confirm(client: ModelClient, finding: "Finding", box: Tuple[float, float], search: Search,
            others: Sequence["Finding"] = ()) -> "Finding":
    """Searches per seed for a failing input; each found one is re-run with the finding's fix,
    and with every other finding's fix in place too (`others`: the model's whole suggested fix)."""
    kind, limit, position = search_target(finding.flag)
    runs = []
    for seed in range(search.seeds):
        f = finding.flag
        a = client.confirm({"node": f.node.id, "position": position, "kind": kind, "limit": limit,
                            "backward": finding.graph == "backward", "box": list(box), "seed": seed,
                            "steps": search.steps, "uniform": search.uniform, "fix": _fixes(finding),
                            "others": [c for o in others if o is not finding for c in _fixes(o)],
                            "own": _nodes(finding), "flagged": [i for o in others for i in _nodes(o)]})
        g, u = a["guided"], a["uniform"]
        literal = to_record(np.asarray(g["x"])[0]) if g["found"] and not g["params_moved"] else None
        runs.append(Confirmation(seed, bool(g["found"]), int(g["evaluations"]), float(g["seconds"]), bool(u["found"]),
                                 int(u["samples"]), float(u["seconds"]), a.get("fixed_finite"), a.get("fix_change"),
                                 literal, int(g.get("y", 0)), a.get("fixed_finite_all", a.get("fixed_finite")),
                                 a.get("removed")))
    return replace(finding, confirmations=tuple(runs))


def analyse_model(spec: ModelSpec, library: str, input_range: Optional[Tuple[float, float]],
                  weights: Optional[Tuple[float, float]], backward: bool, log: Path,
                  search: Optional[Search] = None) -> Result:
    client = ModelClient(spec, library, log)
    try:
        fwd_wire, ranges, classes = client.graph(False)
        bwd_wire = client.graph(True)[0] if backward else None
        result = _analyse(spec, library, input_range, weights, fwd_wire, bwd_wire, ranges, classes)
        if search is not None:
            box = input_range or spec.input_range
            result = replace(result, findings=tuple(confirm(client, f, box, search, result.findings)
                                                    for f in result.findings),
                             versions=client.versions)
    finally:
        client.close()
    return result


def _analyse(spec: ModelSpec, library: str, input_range: Optional[Tuple[float, float]],
             weights: Optional[Tuple[float, float]], fwd_wire: Dict, bwd_wire: Optional[Dict],
             ranges: Dict[str, Sequence[float]], classes: int) -> Result:
    box = input_range or spec.input_range
    start = time.perf_counter()
    forward = from_wire(fwd_wire)
    fargs = arguments(forward, box, weights, ranges, classes)
    a = analyse(forward, fargs)
    found = _grouped([Finding(f, "forward", _proved(forward, fargs, f), fix_nodes=((f.node.id, f),)) for f in a.flags])
    unknown = dict(a.unknown)
    size = (len(forward.nodes), 0)
    if bwd_wire is not None:
        grad = from_wire(bwd_wire)
        gargs = arguments(grad, box, weights, ranges, classes)
        b = analyse(grad, gargs)
        # the gradient's graph starts with the forward pass: its first node of each (op, line,
        # shape) per forward node is that node; the others exist only for the gradient (JVP rules)
        left = Counter((n.op, n.source, n.shape) for n in forward.nodes)
        copies: Dict[Tuple, List[int]] = {}  # per (op, line, shape): the gradient graph's forward nodes, in order
        extra = set()
        for n in grad.nodes:
            key = (n.op, n.source, n.shape)
            if not n.backward and left[key] > 0:
                left[key] -= 1
                copies.setdefault(key, []).append(n.id)
            else:
                extra.add(n.id)
        ordinal: Dict[int, int] = {}  # a forward node's rank among the forward nodes of its key
        seen: Counter = Counter()
        for n in forward.nodes:
            key = (n.op, n.source, n.shape)
            ordinal[n.id] = seen[key]
            seen[key] += 1

        def twin(g: Flag) -> int:
            ids = copies.get((g.node.op, g.node.source, g.node.shape), [])
            return ids[ordinal[g.node.id]] if ordinal[g.node.id] < len(ids) else -1
        for i, f in enumerate(found):  # a forward fix is verified in the gradient's graph: its twin nodes there
            found[i] = replace(f, fix_nodes=tuple((twin(g), g) for _, g in f.fix_nodes))
        backward_only = []
        for f in b.flags:
            if f.node.id not in extra:
                continue
            k = _primal(grad, found, f)
            if k is not None:  # the derivative of a flagged forward operation: one defect
                found[k] = replace(found[k], derivatives=found[k].derivatives + (f,))
            else:
                backward_only.append(Finding(f, "backward", _proved(grad, gargs, f), fix_nodes=((f.node.id, f),)))
        found += _grouped(backward_only)
        for op, n in b.unknown:
            unknown[op] = max(unknown.get(op, 0), n)
        size = (len(forward.nodes), len(grad.nodes))
    return Result(spec.name, library, tuple(found), size, tuple(sorted(unknown.items())),
                  time.perf_counter() - start)


def _operand(graph: Graph, node: int) -> int:
    n = graph.nodes[node]
    position = operand_position(n.op)
    return n.inputs[position] if position < len(n.inputs) else -1


def _primal(grad: Graph, found: Sequence[Finding], flag: Flag) -> Optional[int]:
    """The forward finding a backward flag is the derivative of: one on the same source line,
    preferably the one whose operand the flag's operand is (log's 1/x), or is made from in one
    step (a quotient's 1/d**2); None where no forward finding shares the line."""
    same = [i for i, g in enumerate(found) if g.graph == "forward" and g.flag.node.source
            and g.flag.node.source == flag.node.source]
    mine = _operand(grad, flag.node.id)
    theirs = {i: _operand(grad, found[i].fix_nodes[0][0]) if found[i].fix_nodes[0][0] >= 0 else -1 for i in same}
    exact = [i for i in same if theirs[i] >= 0 and theirs[i] == mine]
    step = [i for i in same if theirs[i] >= 0 and mine >= 0 and theirs[i] in grad.nodes[mine].inputs]
    return (exact + step + same + [None])[0]


def record_reports(store_dir: Path, spec: ModelSpec, r: Result, versions: Sequence[str]) -> List[str]:
    """Each confirmed defect with a failing input under the trained parameters becomes a report
    (verdict numerical_defect; replayed as the `nonfinite` objective on its literal input)."""
    from ..modelfuzz.findings import model_trial
    from ..reports.lock import exclusive
    from ..reports.store import Store, path_of, remove_leftovers
    written = []
    with exclusive(Path(store_dir), "report store"):
        remove_leftovers(Path(store_dir))
        store = Store(Path(store_dir))
        for f in r.findings:
            c = next((c for c in f.confirmations if c.x is not None), None)
            if c is None:
                continue
            n = f.flag.node
            where = f"{n.op} at {Path(n.source).name or '?'} ({f.graph})"
            fixed = ("makes it finite" if c.fixed_finite else
                     "removes this operation's non-finite value; what stays non-finite arises at another flagged "
                     "operation, whose own fix removes it" if c.removed else
                     "does NOT make it finite" if c.fixed_finite is False else "not checked")
            message = (f"model {spec.name} ({r.library}): {f.flag.problem} at {n.source or 'an unknown line'} "
                       f"({f.graph} graph): its operand lies in {f.flag.operand} over the inputs and parameters; an input "
                       f"found by the guided search (seed {c.seed}) drives it there and makes the loss or its gradient "
                       f"non-finite. Fix: {fix_text(f.flag)} (proved safe by the analysis; at this input it {fixed})")
            trial = model_trial(spec, r.library, to_array(c.x), c.y, c.seed)
            finding = StoreFinding(trial, Candidate(Verdict.NUMERICAL_DEFECT, ("nonfinite",), 1, error_type=where,
                                                    message=message), (), Severity.TAIL, message)
            report, created = store.record(finding, trial, versions, f"numerics-{spec.name}-{r.library}")
            written.append(f"{'new report' if created else 'seen before'} {path_of(store.root, report)}")
    return written


def _grouped(findings: Sequence[Finding]) -> List[Finding]:
    """One finding per (operation, source line); the others become its siblings."""
    out: List[Finding] = []
    for f in findings:
        n = f.flag.node
        k = next((i for i, g in enumerate(out) if n.source and (g.flag.node.op, g.flag.node.source) == (n.op, n.source)),
                 None)
        if k is None:
            out.append(f)
        else:
            g = out[k]
            out[k] = replace(g, fix_nodes=g.fix_nodes + f.fix_nodes, proved=g.proved and f.proved)
    return out


def lines(r: Result, fixes: bool = True) -> List[str]:
    """What `nablafuzz numerics` prints; `fixes`: each flag's clamp, and how it did at the
    confirming inputs (--fix)."""
    out = [f"{r.model} ({r.library}): {len(r.findings)} vulnerable operation(s); graphs of {r.nodes[0]} and "
           f"{r.nodes[1]} nodes analysed in {r.seconds * 1000:.1f} ms"
           + (f"; analysed as unbounded (unknown): {', '.join(f'{op} x{n}' for op, n in r.unknown)}" if r.unknown else "")]
    for f in r.findings:
        n = f.flag.node
        out.append(f"  {f.graph:8s} {n.op:12s} {n.source or '(no source line)'}: {f.flag.problem}; operand in "
                   f"{f.flag.operand}" + (f"; fix: {fix_text(f.flag)} ({'proved safe' if f.proved else 'NOT proved'})"
                                          if fixes else ""))
        if f.siblings:
            out.append(f"           and {len(f.siblings)} more {n.op} on that line (one fix covers them)")
        for d in f.derivatives:
            out.append(f"           and in its derivative: {d.node.op}: {d.problem} (operand in {d.operand})")
        c = f.confirmations
        if c:
            g, u = [x for x in c if x.guided], [x for x in c if x.uniform]
            removed = [x for x in g if x.removed]
            fixed = [x for x in g if x.fixed_finite]
            together = [x for x in g if x.fixed_finite_all]
            out.append(f"           confirmed: guided search {len(g)}/{len(c)} seeds ({_mean(x.guided_seconds for x in c)} s "
                       f"per seed), uniform sampling {len(u)}/{len(c)} ({_mean(x.uniform_seconds for x in c)} s)"
                       + (f"; the clamp removes its non-finite value at {len(removed)}/{len(g)} confirming inputs, and "
                          f"makes {len(fixed)}/{len(g)} wholly finite ({len(together)}/{len(g)} with the model's other "
                          "fixes too)" if fixes else "")
                       + (f", changing outputs at a seed input by at most {max(x.fix_change or 0 for x in g):.2g} (relative)"
                          if g and fixes else ""))
    return out


def _mean(values) -> str:
    v = list(values)
    return f"{sum(v) / len(v):.3f}" if v else "-"


def write_result(path: Path, r: Result) -> None:
    data = {"model": r.model, "library": r.library, "nodes": list(r.nodes), "seconds": r.seconds,
            "unknown": [list(u) for u in r.unknown],
            "findings": [{"graph": f.graph, "op": f.flag.node.op, "source": f.flag.node.source,
                          "node": f.flag.node.id, "problem": f.flag.problem,
                          "operand": [f.flag.operand.lo, f.flag.operand.hi], "fix": fix_text(f.flag),
                          "proved": f.proved, "derivatives": [d.node.op for d in f.derivatives],
                          "confirmations": [dict(asdict(c), x=None) for c in f.confirmations]}
                         for f in r.findings]}
    write_atomic(path, json.dumps(data, indent=1, default=str) + "\n")
