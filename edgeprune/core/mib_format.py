"""Circuits and edge scores in EAP-IG's graph JSON, the format MIB takes submissions in.

Why: other circuit tools read and write this file, so a circuit found here can be
evaluated there and the other way round.  The file is one JSON object:

* ``cfg``: ``n_layers``, ``n_heads``, ``parallel_attn_mlp`` (false here: a layer's
  heads feed its MLP) and ``d_model``;
* ``nodes``: node name -> ``{"in_graph": bool}``, for ``input``, every ``a{L}.h{H}``,
  every ``m{L}`` and ``logits``;
* ``edges``: edge name -> ``{"score": float, "in_graph": bool}``, for every edge of
  the full graph; the name is ``parent->child``, with ``<q>``/``<k>``/``<v>`` appended
  when the child is an attention head.

Names map one to one (``a{L}.h{H}``, ``m{L}``; ``a{L}.h{H}.q`` <-> ``a{L}.h{H}<q>``;
``out`` <-> ``logits``) except the embeddings: EAP-IG has one ``input`` node, this
project separate ``tok`` and ``pos`` writers.  The rule, both ways:

* export: ``input -> X`` is in the graph when ``tok -> X`` or ``pos -> X`` is, and
  its score is their sum (the input node writes tok + pos, and an attribution score
  is linear in what the writer writes).  A circuit with ``tok -> X`` but not
  ``pos -> X`` (or the reverse) loses that distinction, so it is refused unless
  ``merge_inputs`` says the union is wanted;
* import: ``input -> X`` becomes ``tok -> X`` and ``pos -> X``, each with half the
  score (so exporting again gives the same file); a model with one embedding
  (rotary, ``embeddings=("tok",)``) maps ``input`` to ``tok`` alone.

Grouped-query attention (shared k/v readers) has no EAP-IG name: refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgeprune.core import names
from edgeprune.core.circuit import Circuit, Edge, sort_edges
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.graph import ComputationalGraph

INPUT = "input"
LOGITS = "logits"
#: the top-level keys of EAP-IG's ``Graph.to_json`` and the keys of its node and edge entries
TOP_KEYS = ("cfg", "nodes", "edges")
CFG_KEYS = ("n_layers", "n_heads", "parallel_attn_mlp", "d_model")
NODE_KEYS = ("in_graph",)
EDGE_KEYS = ("score", "in_graph")

_EDGE = re.compile(r"^([^<>-]+)->([^<>-]+?)(?:<([qkv])>)?$")


class MibFormatError(EdgePruneError):
    """A file or circuit that cannot be written or read as EAP-IG's graph JSON."""


def _check_graph(graph: ComputationalGraph) -> None:
    if graph.kv_heads != graph.n_heads:
        raise MibFormatError(
            f"{graph.model or 'this model'} uses grouped-query attention ({graph.kv_heads} k/v groups for "
            f"{graph.n_heads} heads): EAP-IG's graph has one q, k and v input per head and cannot name "
            "shared k/v readers"
        )
    if not graph.embeddings or any(e not in (names.TOK, names.POS) for e in graph.embeddings):
        raise MibFormatError(
            f"embeddings {list(graph.embeddings)}: EAP-IG's graph has one input node, which maps to tok, pos or both"
        )


# ----- names -------------------------------------------------------------------------
def writer_to_mib(writer: str) -> str:
    """This project's writer name as EAP-IG's node name (tok and pos both become ``input``)."""
    kind = names.parse_node(writer)[0]
    if kind in (names.TOK, names.POS):
        return INPUT
    if kind in ("head", "mlp"):
        return writer
    raise MibFormatError(f"{writer!r} is not a writer EAP-IG can name (tok, pos, a<L>.h<H>, m<L>)")


def reader_to_mib(reader: str) -> tuple[str, str]:
    """(EAP-IG child node, qkv letter or "") of this project's reader name."""
    kind, layer, head, role = names.parse_node(reader)
    if kind == "head_input":
        return names.head(layer, head), role
    if kind == "mlp":
        return reader, ""
    if reader == names.OUT:
        return LOGITS, ""
    raise MibFormatError(f"{reader!r} is not a reader EAP-IG can name (a<L>.h<H>.q|k|v, m<L>, out)")


def mib_edge_name(parent: str, child: str, qkv: str = "") -> str:
    return f"{parent}->{child}" + (f"<{qkv}>" if qkv else "")


def parse_mib_edge(name: str) -> tuple[str, str, str]:
    """(parent, child, qkv) of an EAP-IG edge name such as ``input->a0.h1<q>`` or ``m3->logits``."""
    m = _EDGE.match(name)
    if not m:
        raise MibFormatError(f"edge name {name!r} is not EAP-IG's parent->child[<q|k|v>]")
    return m.group(1), m.group(2), m.group(3) or ""


def reader_from_mib(child: str, qkv: str) -> str:
    if child == LOGITS:
        return names.OUT
    kind, layer, head, _ = names.parse_node(child)
    if kind == "head":
        if not qkv:
            raise MibFormatError(f"an edge into the head {child} needs <q>, <k> or <v>")
        return names.head_input(layer, head, qkv)
    if kind == "mlp" and not qkv:
        return child
    raise MibFormatError(
        f"{child}{f'<{qkv}>' if qkv else ''} is not an EAP-IG child node (a<L>.h<H><q|k|v>, m<L>, logits)"
    )


def writers_from_mib(parent: str, embeddings: tuple[str, ...]) -> tuple[str, ...]:
    if parent == INPUT:
        return embeddings
    kind = names.parse_node(parent)[0]
    if kind not in ("head", "mlp"):
        raise MibFormatError(f"{parent!r} is not an EAP-IG parent node (input, a<L>.h<H>, m<L>)")
    return (parent,)


# ----- export ------------------------------------------------------------------------
def mib_edges(graph: ComputationalGraph) -> list[tuple[str, tuple[Edge, ...]]]:
    """Every EAP-IG edge name of ``graph``'s full graph, in EAP-IG's order, with the project's edges it stands for."""
    _check_graph(graph)
    groups: dict[str, list[Edge]] = {}
    for w, r in graph.edges:
        child, qkv = reader_to_mib(r)
        groups.setdefault(mib_edge_name(writer_to_mib(w), child, qkv), []).append((w, r))

    def order(item: tuple[str, list[Edge]]) -> tuple:
        """EAP-IG's: per layer the heads' q/k/v edges (by parent), then the MLP's; logits last."""
        w, r = item[1][0]
        kind, layer, _, _ = names.parse_node(r)
        block = 2 * layer + (kind == "mlp") if r != names.OUT else 2 * graph.n_layers
        return (block, graph.writer_index[w], graph.reader_index[r])

    return [(name, tuple(es)) for name, es in sorted(groups.items(), key=order)]


def to_mib(
    circuit: Circuit | Iterable[Edge],
    graph: ComputationalGraph,
    d_model: int,
    scores: Mapping[Edge, float] | None = None,
    merge_inputs: bool = False,
) -> dict:
    """EAP-IG's graph JSON (as a dict) of ``circuit`` on ``graph``; ``scores`` per edge (default: 1.0 for the
    circuit's edges, 0.0 for the others, so EAP-IG's top-n of the file gives the circuit back)."""
    _check_graph(graph)  # first: a model EAP-IG cannot name is the reason, whatever the circuit holds
    edges = set(circuit.edges if isinstance(circuit, Circuit) else ((e[0], e[1]) for e in circuit))
    for e in edges:
        graph.check_edge(e)
    out_edges: dict[str, dict] = {}
    touched: set[str] = set()
    split = []
    for name, group in mib_edges(graph):
        inside = [e in edges for e in group]
        if any(inside) and not all(inside):
            split.append((name, [e for e, i in zip(group, inside) if i]))
        in_graph = any(inside)
        if scores is None:
            score = 1.0 if in_graph else 0.0
        else:
            score = float(sum(scores.get(e, 0.0) for e in group))
        out_edges[name] = {"score": score, "in_graph": bool(in_graph)}
        if in_graph:
            parent, child, _ = parse_mib_edge(name)
            touched |= {parent, child}
    if split and not merge_inputs:
        shown = "; ".join(f"{n} (only {', '.join(names.edge_str(e) for e in es)})" for n, es in split[:3])
        more = f" and {len(split) - 3} more" if len(split) > 3 else ""
        raise MibFormatError(
            f"EAP-IG has one input node, but this circuit uses tok and pos apart: {shown}{more}; pass "
            "merge_inputs (--merge-inputs) to export input -> X wherever tok -> X or pos -> X is in the circuit"
        )
    nodes: dict[str, dict] = {INPUT: {"in_graph": INPUT in touched}}
    for layer in range(graph.n_layers):
        for h in range(graph.n_heads):
            nodes[names.head(layer, h)] = {"in_graph": names.head(layer, h) in touched}
        nodes[names.mlp(layer)] = {"in_graph": names.mlp(layer) in touched}
    nodes[LOGITS] = {"in_graph": True}  # EAP-IG: the logits node is always in the graph
    cfg = {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "parallel_attn_mlp": False, "d_model": int(d_model)}
    return {"cfg": cfg, "nodes": nodes, "edges": out_edges}


def save_mib(data: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(data) + "\n")


# ----- import ------------------------------------------------------------------------
@dataclass
class MibGraph:
    """A graph JSON read back: the circuit (``in_graph`` edges), every edge's score, and the graph it lives on."""

    circuit: Circuit
    scores: dict[Edge, float]
    graph: ComputationalGraph
    cfg: dict = field(default_factory=dict)


def from_mib(data: object, embeddings: tuple[str, ...] = (names.TOK, names.POS), model: str = "") -> MibGraph:
    """Read EAP-IG's graph JSON (a dict); ``embeddings`` are the target model's (``("tok",)`` for rotary ones)."""
    if not isinstance(data, dict) or any(k not in data for k in TOP_KEYS):
        raise MibFormatError("an EAP-IG graph file is a JSON object with 'cfg', 'nodes' and 'edges'")
    cfg = data["cfg"]
    if not isinstance(cfg, dict) or "n_layers" not in cfg or "n_heads" not in cfg:
        raise MibFormatError("the graph file's 'cfg' needs n_layers and n_heads")
    if cfg.get("parallel_attn_mlp"):
        raise MibFormatError(
            "parallel_attn_mlp is true: in that graph a layer's heads do not feed its MLP, which this project's "
            "sequential graph cannot express"
        )
    for key in ("n_layers", "n_heads"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise MibFormatError(f"the graph file's cfg.{key} must be a positive integer, got {cfg[key]!r}")
    graph = ComputationalGraph(int(cfg["n_layers"]), int(cfg["n_heads"]), embeddings=tuple(embeddings), model=model)
    _check_graph(graph)
    edges_in = data["edges"]
    if not isinstance(edges_in, dict):
        raise MibFormatError("the graph file's 'edges' must map edge names to {score, in_graph}")
    kept: list[Edge] = []
    scores: dict[Edge, float] = {}
    for name, info in edges_in.items():
        parent, child, qkv = parse_mib_edge(name)
        reader = reader_from_mib(child, qkv)
        writers = writers_from_mib(parent, graph.embeddings)
        if not isinstance(info, dict) or "in_graph" not in info:
            raise MibFormatError(f"edge {name}: expected {{'score': float, 'in_graph': bool}}, got {info!r}")
        if not isinstance(info["in_graph"], bool):
            raise MibFormatError(f"edge {name}: 'in_graph' must be true or false, got {info['in_graph']!r}")
        score = info.get("score", 0.0)
        if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
            raise MibFormatError(f"edge {name}: 'score' must be a number, got {score!r}")
        share = float(score or 0.0) / len(writers)
        for w in writers:
            e = (w, reader)
            if e not in graph.edge_set:
                raise MibFormatError(
                    f"edge {name} is not in a {graph.n_layers}-layer, {graph.n_heads}-head graph (a writer must "
                    "come before its reader)"
                )
            scores[e] = share
            if info["in_graph"]:
                kept.append(e)
    meta = {"source": "EAP-IG graph JSON", "cfg": dict(cfg), "n_edges_total": graph.n_edges}
    return MibGraph(Circuit(sort_edges(kept), model=model, meta=meta), scores, graph, dict(cfg))


def load_mib(path: str | Path, embeddings: tuple[str, ...] = (names.TOK, names.POS), model: str = "") -> MibGraph:
    p = Path(path)
    if not p.is_file():
        raise MibFormatError(f"graph file {p} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MibFormatError(f"graph file {p} is not valid UTF-8 JSON: {exc}") from exc
    try:
        return from_mib(data, embeddings, model)
    except EdgePruneError as exc:
        raise MibFormatError(f"graph file {p}: {exc}") from exc


# ----- this project's edge-score files (compare-methods writes them; export reads them) ------------------
def scores_to_dict(scores: Mapping[Edge, float], model: str = "", meta: dict | None = None) -> dict:
    """An edge-score file: ``{"model", "meta", "scores": [[writer, reader, score], ...]}`` in the circuit order."""
    rows = [[w, r, float(scores[(w, r)])] for w, r in sort_edges(scores)]
    return {"model": model, "meta": dict(meta or {}), "scores": rows}


def scores_from_dict(data: object) -> dict[Edge, float]:
    if not isinstance(data, dict) or not isinstance(data.get("scores"), list):
        raise MibFormatError("an edge-score file is a JSON object with 'scores': [[writer, reader, score], ...]")
    out: dict[Edge, float] = {}
    for row in data["scores"]:
        if not isinstance(row, list) or len(row) != 3:
            raise MibFormatError(f"an edge-score entry is [writer, reader, score], got {row!r}")
        if not isinstance(row[0], str) or not isinstance(row[1], str):
            raise MibFormatError(f"an edge-score entry names its writer and reader as strings, got {row!r}")
        if not isinstance(row[2], (int, float)) or isinstance(row[2], bool):
            raise MibFormatError(f"an edge-score entry's score must be a number, got {row!r}")
        names.parse_node(row[0])
        names.parse_node(row[1])
        out[(row[0], row[1])] = float(row[2])
    return out


def load_scores(path: str | Path) -> dict[Edge, float]:
    p = Path(path)
    if not p.is_file():
        raise MibFormatError(f"edge-score file {p} does not exist")
    try:
        return scores_from_dict(json.loads(p.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MibFormatError(f"edge-score file {p} is not valid UTF-8 JSON: {exc}") from exc
    except EdgePruneError as exc:
        raise MibFormatError(f"edge-score file {p}: {exc}") from exc
