"""From trained gates to a binary circuit: bisect a threshold on the deterministic soft masks.

The kept fraction is chosen to equal the mean deterministic mask value (the
reference's rule), or a requested sparsity; bisection on the threshold in [0, 1]
until the interval is below 1e-5, as the reference does.  An edge is in the
circuit when its edge gate passes the edge threshold and its writer's node gate
passes the node threshold (effective mask = edge x node).
"""

from __future__ import annotations

import torch

from pruning.hard_concrete import MaskParameters
from verify.circuit import Circuit


def bisect_threshold(values: torch.Tensor, target_sparsity: float, tol: float = 1e-5) -> float:
    """Threshold t with 1[values > t] as close to ``target_sparsity`` (fraction off) as bisection gets."""
    lo, hi = 0.0, 1.0
    mid = 0.5
    while hi - lo > tol:
        mid = (lo + hi) / 2
        s = 1.0 - float((values > mid).float().mean())
        if s > target_sparsity:
            hi = mid
        else:
            lo = mid
    return mid


def binarize(values: torch.Tensor, sparsity: float | None = None) -> torch.Tensor:
    """Boolean keep-mask; default sparsity = 1 - mean(values)."""
    if values.numel() == 0:
        return values.bool()
    target = 1.0 - float(values.mean()) if sparsity is None else sparsity
    return values > bisect_threshold(values, target)


def extract_circuit(masks: MaskParameters, edge_sparsity: float | None = None, use_nodes: bool = True,
                    model: str = "", meta: dict | None = None) -> Circuit:
    edge_soft, node_soft = masks.deterministic()
    keep = binarize(edge_soft.detach(), edge_sparsity)
    if use_nodes:
        node_keep = binarize(node_soft.detach())
        keep = keep & node_keep[masks.edge_writer]
    edges = [e for e, k in zip(masks.graph.edges, keep.tolist()) if k]
    return Circuit(edges=edges, model=model, meta=dict(meta or {}))
