"""Pass 1: the RASP expression DAG as a graph keyed by label (Tracr's ``rasp_to_graph``).

The traversal is breadth-first from the output and reads each expression's
label in the same order as Tracr does; since labels draw their ids lazily,
a freshly built program gets the same labels here as in Tracr.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edgeprune.core.errors import CompileError
from edgeprune.programs import rasp


@dataclass
class GraphNode:
    """One RASP expression and what the passes learn about it."""

    label: str
    expr: rasp.RASPExpr
    value_set: set | None = None
    output_basis: list = field(default_factory=list)  # craft Directions
    block: Any = None  # craft block (AttentionHead, MLP, AttnMLPPair) or None
    depth: int = 0  # computational depth (longest path counting SOps)
    half_layer: int | None = None  # Tracr's allocation index: even = attention, odd = MLP
    layer: int | None = None  # assembled layer
    head: int | None = None

    @property
    def is_sop(self) -> bool:
        return isinstance(self.expr, rasp.SOp)


@dataclass
class ProgramGraph:
    """Nodes in discovery order, edges child -> parent (operand -> user), the sink and the sources."""

    nodes: dict[str, GraphNode]
    edges: list[tuple[str, str]]
    sink: str
    sources: list[str]

    def predecessors(self, label: str) -> list[str]:
        return [a for a, b in self.edges if b == label]

    def successors(self, label: str) -> list[str]:
        return [b for a, b in self.edges if a == label]


def extract_graph(program: rasp.SOp) -> ProgramGraph:
    if not isinstance(program, rasp.SOp):
        raise CompileError(
            f"the program to compile must be an SOp (a sequence operation), got {type(program).__name__}; "
            "compile the SOp that computes the output, e.g. an Aggregate or a Map"
        )
    nodes: dict[str, GraphNode] = {}
    edges: list[tuple[str, str]] = []
    sources: list[str] = []

    def ensure(expr: rasp.RASPExpr) -> str:
        label = expr.label
        known = nodes.get(label)
        if known is None:
            nodes[label] = GraphNode(label, expr)
        elif known.expr is not expr:
            raise CompileError(
                f"two different expressions share the label {label!r}; give them distinct names with .named(...)"
            )
        return label

    sink = ensure(program)
    queue: deque[rasp.RASPExpr] = deque([program])
    visited: set[str] = set()
    while queue:
        expr = queue.popleft()
        parent = ensure(expr)
        if parent in visited:
            continue
        visited.add(parent)
        children = list(expr.children)
        for child in children:
            child_label = ensure(child)
            if (child_label, parent) not in edges:
                edges.append((child_label, parent))
            queue.append(child)
        if not children:
            sources.append(parent)
    return ProgramGraph(nodes=nodes, edges=edges, sink=sink, sources=sources)
