"""Graph-exact comparison of a recovered circuit with the ground truth, with a readable diff.

Both sides first lose their dangling edges by the one rule of
``edgeprune.core.dangling.prune_dangling`` (an edge stays only if its writer is ``tok``/
``pos`` or has an in-edge, and its reader's node is ``out`` or has an out-edge,
to a fixed point): a dangling edge cannot carry anything from the input to the
output, so keeping or dropping it is not a disagreement about the circuit.
Equality is then checked on the edge-exact networkx view (q/k/v readers apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from edgeprune.core import names
from edgeprune.core.circuit import Circuit, Edge, sort_edges
from edgeprune.core.dangling import prune_dangling


@dataclass
class Comparison:
    exact: bool
    missing: list[Edge]  # in the truth, not recovered
    extra: list[Edge]  # recovered, not in the truth
    recovered: list[Edge] = field(default_factory=list)  # after dangling removal
    truth: list[Edge] = field(default_factory=list)
    dangling_removed: list[Edge] = field(default_factory=list)  # dropped from the recovered side

    def diff(self) -> str:
        """``diff``-style listing: ``-`` missing, ``+`` extra, ``=`` shared edges."""
        lines = []
        missing, extra = set(self.missing), set(self.extra)
        for e in sort_edges(set(self.truth) | set(self.recovered)):
            mark = "-" if e in missing else "+" if e in extra else "="
            lines.append(f"{mark} {names.edge_str(e)}")
        if self.dangling_removed:
            lines.append(
                f"({len(self.dangling_removed)} dangling recovered edge(s) ignored: "
                + ", ".join(names.edge_str(e) for e in self.dangling_removed)
                + ")"
            )
        head = "exact match" if self.exact else f"{len(self.missing)} missing (-), {len(self.extra)} extra (+)"
        return "\n".join([head, *lines])

    def to_dict(self) -> dict:
        return {"exact": self.exact, "missing": [list(e) for e in self.missing], "extra": [list(e) for e in self.extra]}


def compare(circuit: Circuit, truth: Circuit) -> Comparison:
    raw = set(circuit.edges)
    ablation = truth.meta.get("ablation")  # per-position mean: heads are sources too (core.dangling)
    got = prune_dangling(raw, ablation=ablation)
    want = prune_dangling(truth.edges, ablation=ablation)
    g_got, g_want = nx.DiGraph(), nx.DiGraph()
    g_got.add_edges_from(got)
    g_want.add_edges_from(want)
    exact = set(g_got.edges) == set(g_want.edges)
    return Comparison(
        exact=exact,
        missing=sort_edges(want - got),
        extra=sort_edges(got - want),
        recovered=sort_edges(got),
        truth=sort_edges(want),
        dangling_removed=sort_edges(raw - got),
    )
