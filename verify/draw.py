"""Draw a circuit as a layered picture: embeddings at the bottom, one row per block, ``out`` on top.

Why layered rather than a force layout: a reader of a transformer circuit wants to see
which layer each piece sits in and which edges skip layers; rows by forward order make
that readable at a glance.  Nodes are the node-level view of ``Circuit.to_networkx``
(q/k/v readers folded into their head, GQA k/v groups drawn as their own nodes);
an edge's colour says which input it feeds (q, k, v, or a plain block input).
"""

from __future__ import annotations

from pathlib import Path

from edgeprune.core import names
from edgeprune.core.circuit import Circuit
from edgeprune.core.errors import EdgePruneError

FORMATS = (".png", ".svg")
ROLE_COLOURS = {"q": "#1f77b4", "k": "#2ca02c", "v": "#d62728", "": "#555555", "several": "#9467bd"}
ROLE_LABELS = {
    "q": "query input",
    "k": "key input",
    "v": "value input",
    "": "block input",
    "several": "several inputs of one head",
}
KIND_COLOURS = {
    "tok": "#f2d16b",
    "pos": "#f2d16b",
    "out": "#b39ddb",
    "head": "#9ecae1",
    "group": "#c7e9c0",
    "mlp": "#fdae6b",
}


def _row(node: str) -> int:
    """Row of a node: 0 embeddings, 2L+1 layer L's attention, 2L+2 its MLP; ``out`` is placed later."""
    kind, layer, _, _ = names.parse_node(node)
    if kind in ("tok", "pos"):
        return 0
    if kind == "out":
        return -1
    return 2 * layer + (2 if kind == "mlp" else 1)


def _edge_role(roles: list[str]) -> str:
    distinct = set(roles)
    return roles[0] if len(distinct) == 1 else "several"


def layered_positions(nodes: list[str]) -> dict[str, tuple[float, float]]:
    """(x, y) per node: y by row (``out`` one row above the highest block), x spread evenly in its row."""
    rows: dict[int, list[str]] = {}
    for n in nodes:
        rows.setdefault(_row(n), []).append(n)
    top = max([r for r in rows if r >= 0], default=0) + 1
    if -1 in rows:
        rows[top] = rows.pop(-1)
    width = max((len(v) for v in rows.values()), default=1)
    pos = {}
    for y, row in rows.items():
        for i, n in enumerate(row):
            pos[n] = ((i + 0.5) * width / len(row), float(y))
    return pos


def draw_circuit(circuit: Circuit | str | Path, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG or SVG picture of ``circuit`` (a Circuit or a circuit JSON file) to ``path``."""
    out = Path(path)
    if out.suffix.lower() not in FORMATS:
        raise EdgePruneError(
            f"cannot draw to {out}: unknown picture format {out.suffix or '(no suffix)'!r}; "
            f"name the file with one of {', '.join(FORMATS)}"
        )
    if not isinstance(circuit, Circuit):
        circuit = Circuit.load(circuit)
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import networkx as nx

    g = circuit.to_networkx()
    nodes = circuit.nodes  # sorted in forward order
    g.add_nodes_from(nodes)
    pos = layered_positions(nodes)
    width = max((sum(1 for p in pos.values() if p[1] == y) for y in {p[1] for p in pos.values()}), default=1)
    height = max((p[1] for p in pos.values()), default=0) + 1
    fig, ax = plt.subplots(figsize=(min(40.0, 2 + 1.1 * width), min(40.0, 1.5 + 0.9 * height)))
    try:
        if not nodes:
            ax.text(0.5, 0.5, "empty circuit (no edges)", ha="center", va="center", transform=ax.transAxes)
        else:
            colours = [KIND_COLOURS.get(names.parse_node(n)[0], "#dddddd") for n in nodes]
            nx.draw_networkx_nodes(
                g, pos, nodelist=nodes, node_color=colours, node_size=700, edgecolors="#333333", ax=ax
            )
            nx.draw_networkx_labels(g, pos, font_size=7, ax=ax)
            for role, colour in ROLE_COLOURS.items():
                edges = [(w, r) for w, r, d in g.edges(data=True) if _edge_role(d["roles"]) == role]
                if edges:
                    nx.draw_networkx_edges(
                        g,
                        pos,
                        edgelist=edges,
                        edge_color=colour,
                        arrows=True,
                        arrowsize=10,
                        node_size=700,
                        connectionstyle="arc3,rad=0.08",
                        ax=ax,
                        width=1.0,
                    )
            used = {_edge_role(d["roles"]) for _, _, d in g.edges(data=True)}
            handles = [plt.Line2D([], [], color=c, label=ROLE_LABELS[r]) for r, c in ROLE_COLOURS.items() if r in used]
            ax.legend(handles=handles, loc="upper left", fontsize=7, frameon=False)
        model = f" of {circuit.model}" if circuit.model else ""
        ax.set_title(title if title is not None else f"circuit{model}: {len(circuit)} edges", fontsize=9)
        ax.set_axis_off()
        out.parent.mkdir(parents=True, exist_ok=True)
        with plt.rc_context({"svg.fonttype": "none"}):  # SVG text stays text (searchable), not outlines
            fig.savefig(out, format=out.suffix.lower()[1:], bbox_inches="tight", dpi=120)
    finally:
        plt.close(fig)
    return out
