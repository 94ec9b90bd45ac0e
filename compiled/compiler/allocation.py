"""Pass 4: place blocks in half-layers (Tracr's ``craft_graph_to_model`` allocation) and name assembled layers.

* computational depth = longest path from a source counting SOps only
  (selectors add nothing);
* a depth holding only attention followed by a depth holding only MLPs is
  merged into one (attention runs before the MLP of the same layer);
* depth d goes to half-layers 2(d-1) (attention) / 2(d-1)+1 (MLP); a
  SelectorWidth takes attention at 2(d-1) and its MLP right after;
* non-empty half-layers are then packed into transformer layers in order,
  each block taking the next free slot of its kind (attn_0, mlp_0, attn_1, ...).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from edgeprune.compiled.compiler.craft import MLP, AttentionHead, AttnMLPPair
from edgeprune.compiled.compiler.graph import ProgramGraph
from edgeprune.core.errors import CompileError


def computational_depth(graph: ProgramGraph) -> dict[str, int]:
    """Longest path from the sources, counting SOp nodes (equal to Tracr's DFS, without its blow-up)."""
    depth: dict[str, int] = {}

    def visit(label: str) -> int:
        if label in depth:
            return depth[label]
        preds = graph.predecessors(label)
        if not preds:
            d = 0
        else:
            bump = 1 if graph.nodes[label].is_sop else 0
            d = max(visit(p) for p in preds) + bump
        depth[label] = d
        return d

    for label in graph.nodes:
        visit(label)
    return depth


def _is_attn(block: object) -> bool:
    return isinstance(block, AttentionHead)


def _is_mlp(block: object) -> bool:
    return isinstance(block, MLP)


@dataclass
class Layout:
    """Where each block landed."""

    half_layers: dict[int, list[str]] = field(default_factory=dict)  # half-layer -> node labels (in order)
    num_layers: int = 0
    # half-layer -> assembled (layer, kind) for non-empty half-layers
    module_of_half_layer: dict[int, tuple[int, str]] = field(default_factory=dict)


def allocate(graph: ProgramGraph, max_layers: int | None = None) -> Layout:
    depths = computational_depth(graph)
    for label, d in depths.items():
        graph.nodes[label].depth = d
    component_depth: dict[str, int] = {}
    by_depth: dict[int, list[str]] = defaultdict(list)
    for label, node in graph.nodes.items():
        if node.block is not None:
            component_depth[label] = depths[label]
            by_depth[depths[label]].append(label)
    if not component_depth:
        raise CompileError(
            "the program computes nothing beyond its inputs (no Map, SequenceMap, Aggregate or SelectorWidth), "
            "so there is no transformer layer to build; compile a program with at least one operation"
        )

    def all_kind(labels: list[str], pred) -> bool:
        return all(pred(graph.nodes[l].block) for l in labels)

    lo, hi = min(by_depth), max(by_depth)
    d = lo
    while d < hi:
        if all_kind(by_depth[d], _is_attn) and all_kind(by_depth[d + 1], _is_mlp):
            for upd in range(d + 1, hi + 1):
                for label in by_depth[upd]:
                    component_depth[label] = upd - 1
                by_depth[upd - 1].extend(by_depth[upd])
                by_depth[upd] = []
            hi -= 1
        d += 1

    layer_of: dict[str, int] = {}
    current_layer, current_depth = 0, 1
    for label, dep in sorted(component_depth.items(), key=lambda kv: kv[1]):
        while dep > current_depth:
            current_depth += 1
            current_layer += 2
        if dep == current_depth:
            block = graph.nodes[label].block
            layer_of[label] = current_layer if isinstance(block, AttnMLPPair) else current_layer + int(_is_mlp(block))

    layout = Layout()
    half: dict[int, list[str]] = defaultdict(list)
    for label, hl in layer_of.items():
        node = graph.nodes[label]
        node.half_layer = hl
        half[hl].append(label)
        if isinstance(node.block, AttnMLPPair):
            half[hl + 1].append(label)
    layout.half_layers = dict(sorted(half.items()))

    # Pack non-empty half-layers into transformer layers: next free slot of the right kind.
    slot = 0  # 2*layer + (0 attention, 1 MLP)
    for hl in layout.half_layers:
        kind = "attn" if hl % 2 == 0 else "mlp"
        want = 0 if kind == "attn" else 1
        while slot % 2 != want:
            slot += 1
        layout.module_of_half_layer[hl] = (slot // 2, kind)
        slot += 1
    layout.num_layers = max(layer for layer, _ in layout.module_of_half_layer.values()) + 1
    if max_layers is not None and layout.num_layers > max_layers:
        raise CompileError(
            f"the program needs {layout.num_layers} layers but max_layers={max_layers}; raise max_layers or "
            "shorten the program's chain of dependent operations"
        )
    return layout
