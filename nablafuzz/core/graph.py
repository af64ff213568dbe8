"""A library-neutral computational graph (`nablafuzz numerics`): what a library's tracer saw.

Built in the worker from the library's own tracer (jax.make_jaxpr of the loss and of its
gradient) and sent as plain lists; analysed in the orchestrator (numerics/intervals.py).
Worker-safe: standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple, Union

Attr = Union[int, float, str, Tuple[int, ...]]


@dataclass(frozen=True)
class Node:
    """One operation: `inputs` are node ids, or -1 where `literals` holds the value at that
    position.  `backward`: the operation exists only to compute the gradient."""

    id: int
    op: str
    inputs: Tuple[int, ...]
    shape: Tuple[int, ...]
    dtype: str
    attrs: Tuple[Tuple[str, Attr], ...] = ()
    literals: Tuple[Tuple[int, float], ...] = ()
    backward: bool = False
    source: str = ""

    def attr(self, name: str, default: Any = None) -> Any:
        return dict(self.attrs).get(name, default)


@dataclass(frozen=True)
class Graph:
    """Nodes in evaluation order; `arguments` names the graph's inputs (`x`, `y`, `param:<name>`)
    by node id, `outputs` the ids of what it returns."""

    nodes: Tuple[Node, ...]
    arguments: Tuple[Tuple[str, int], ...]
    outputs: Tuple[int, ...]


def to_wire(g: Graph) -> Dict[str, Any]:
    return {"nodes": [[n.id, n.op, list(n.inputs), list(n.shape), n.dtype, [[k, list(v) if isinstance(v, tuple) else v]
                                                                           for k, v in n.attrs],
                       [list(p) for p in n.literals], n.backward, n.source] for n in g.nodes],
            "arguments": [list(a) for a in g.arguments], "outputs": list(g.outputs)}


def from_wire(d: Dict[str, Any]) -> Graph:
    nodes: List[Node] = []
    for i, op, inputs, shape, dtype, attrs, literals, backward, source in d["nodes"]:
        nodes.append(Node(int(i), str(op), tuple(int(v) for v in inputs), tuple(int(v) for v in shape), str(dtype),
                          tuple((str(k), tuple(v) if isinstance(v, list) else v) for k, v in attrs),
                          tuple((int(p), float(v)) for p, v in literals), bool(backward), str(source)))
    return Graph(tuple(nodes), tuple((str(n), int(i)) for n, i in d["arguments"]), tuple(int(v) for v in d["outputs"]))
