"""A circuit: a set of writer -> reader edges, with a canonical, sorted JSON form."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from edgeprune.core import names
from edgeprune.core.errors import EdgePruneError

Edge = tuple[str, str]


def _node_sort_key(name: str) -> tuple:
    kind, layer, head, role = names.parse_node(name)
    order = {"tok": (0,), "pos": (1,), "out": (10**9,)}
    if kind in order:
        return order[kind]
    sub = {"head": 0, "head_input": 0, "group": 0.5, "group_input": 0.5, "mlp": 1}[kind]
    return (2, layer, sub, head, "qkv".find(role) if role else -1)


def sort_edges(edges: Iterable[Edge]) -> list[Edge]:
    return sorted({(str(w), str(r)) for w, r in edges}, key=lambda e: (_node_sort_key(e[1]), _node_sort_key(e[0])))


@dataclass
class Circuit:
    """A set of edges in the names of DESIGN.md section 2; two circuits compare with ``==``."""

    edges: list[Edge]
    model: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for e in self.edges:
            if len(e) != 2:
                raise EdgePruneError(f"an edge must be a [writer, reader] pair, got {e!r}")
            names.parse_node(e[0])
            names.parse_node(e[1])
        self.edges = sort_edges(self.edges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Circuit) and self.edges == other.edges

    def __len__(self) -> int:
        return len(self.edges)

    def __contains__(self, edge: object) -> bool:
        return edge in set(self.edges)

    @property
    def edge_set(self) -> frozenset[Edge]:
        return frozenset(self.edges)

    @property
    def nodes(self) -> list[str]:
        ns = {w for w, _ in self.edges} | {names.reader_node(r) for _, r in self.edges}
        return sorted(ns, key=_node_sort_key)

    def to_dict(self) -> dict:
        return {"model": self.model, "nodes": self.nodes, "edges": [list(e) for e in self.edges], "meta": self.meta}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> Circuit:
        if not isinstance(data, dict) or "edges" not in data:
            raise EdgePruneError("a circuit file must be a JSON object with an 'edges' list of [writer, reader] pairs")
        return cls(edges=[tuple(e) for e in data["edges"]], model=data.get("model", ""), meta=data.get("meta", {}))

    @classmethod
    def load(cls, path: str | Path) -> Circuit:
        p = Path(path)
        if not p.is_file():
            raise EdgePruneError(f"circuit file {p} does not exist")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise EdgePruneError(f"circuit file {p} is not UTF-8 text ({exc}); write it again with edgeprune") from exc
        except json.JSONDecodeError as exc:
            raise EdgePruneError(f"circuit file {p} is not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(data)
        except EdgePruneError as exc:
            raise EdgePruneError(f"circuit file {p}: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise EdgePruneError(
                f"circuit file {p} is malformed ({type(exc).__name__}: {exc}); it needs an 'edges' "
                "list of [writer, reader] name pairs, as edgeprune prune writes"
            ) from exc

    def to_networkx(self) -> nx.DiGraph:
        """Node-level view: q/k/v readers fold into their head, edges labelled by role."""
        g = nx.DiGraph()
        for w, r in self.edges:
            node = names.reader_node(r)
            role = r.rsplit(".", 1)[1] if node != r else ""
            if g.has_edge(w, node):
                g[w][node]["roles"].append(role)
            else:
                g.add_edge(w, node, roles=[role])
        return g

    def to_reader_networkx(self) -> nx.DiGraph:
        """Edge-exact view: one graph edge per circuit edge (q/k/v readers kept apart)."""
        g = nx.DiGraph()
        g.add_edges_from(self.edges)
        return g
