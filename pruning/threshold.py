"""From trained gates to a binary circuit: bisect a threshold on the deterministic soft masks.

The kept count is the sum of the deterministic mask values rounded (the
reference's rule: kept fraction = mean mask value), or a requested sparsity;
bisection on the threshold in [0, 1] until the interval is below 1e-5, as the
reference does.  An edge is in the
circuit when its edge gate passes the edge threshold and its writer's
deterministic node gate is not zero (effective mask = edge x node).
"""

from __future__ import annotations

import torch

from edgeprune.core.circuit import Circuit
from edgeprune.pruning.hard_concrete import MaskParameters


def bisect_threshold(values: torch.Tensor, keep: int, tol: float = 1e-5) -> float:
    """Threshold t in [0, 1] such that ``values > t`` keeps ``keep`` entries (at least, on ties).

    Bisection as the reference does, but on a whole number of kept entries: the
    reference compares fractions directly, and when the kept soft values are all
    slightly below 1 (e.g. 0.9993) the target fraction lands a hair above the clean
    count and the bisection drops one needed edge.
    """
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if int((values > mid).sum()) < keep:
            hi = mid
        else:
            lo = mid
    return lo


def binarize(values: torch.Tensor, sparsity: float | None = None) -> torch.Tensor:
    """Boolean keep-mask; kept count = round(sum(values)) (mean mask value), or round((1 - sparsity) * n)."""
    if values.numel() == 0:
        return values.bool()
    n = values.numel()
    keep = int(round(float(values.sum()))) if sparsity is None else int(round((1.0 - sparsity) * n))
    keep = max(0, min(n, keep))
    if keep == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    return values > bisect_threshold(values, keep)


def extract_circuit(
    masks: MaskParameters,
    edge_sparsity: float | None = None,
    use_nodes: bool = True,
    model: str = "",
    meta: dict | None = None,
) -> Circuit:
    edge_soft, node_soft = masks.deterministic()
    keep = binarize(edge_soft.detach(), edge_sparsity)
    if use_nodes:
        # a writer stays unless its deterministic gate is 0 (it is expected to be off); bisecting the
        # node gates to their mean would drop a writer whenever all of them sit a little below 1
        node_keep = node_soft.detach() > 0
        keep = keep & node_keep[masks.edge_writer]
    edges = [e for e, k in zip(masks.graph.edges, keep.tolist()) if k]
    return Circuit(edges=edges, model=model, meta=dict(meta or {}))
