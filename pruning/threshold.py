"""From trained gates to a binary circuit: an exact count of connected edges, taken in rank order.

The kept count is the sum of the deterministic mask values rounded (the
reference's rule: kept fraction = mean mask value), or a requested sparsity.
An edge is a candidate when its writer's deterministic node gate is not zero
(effective mask = edge x node).  The count is of *connected* edges: an edge whose
writer nothing feeds or whose reader feeds nothing (``core.dangling``) changes no
output, so a cut asked for k edges returns k edges that all lie on a path from
an embedding to ``out``, the highest-ranked such set the ranking gives; where
no such set of exactly k exists it returns the nearest one and says why in the
circuit's ``meta["cut_note"]``.
"""

from __future__ import annotations

import torch

from edgeprune.core.circuit import Circuit
from edgeprune.core.dangling import prune_dangling
from edgeprune.pruning.hard_concrete import MaskParameters

Edge = tuple[str, str]


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


def kept_count(values: torch.Tensor, sparsity: float | None = None) -> int:
    """round(sum(values)) (mean mask value), or round((1 - sparsity) * n), within [0, n]."""
    n = values.numel()
    keep = int(round(float(values.sum()))) if sparsity is None else int(round((1.0 - sparsity) * n))
    return max(0, min(n, keep))


def binarize(values: torch.Tensor, sparsity: float | None = None) -> torch.Tensor:
    """Boolean keep-mask; kept count = round(sum(values)) (mean mask value), or round((1 - sparsity) * n).
    Dangling edges are counted here: ``connected_top_k`` counts connected edges only."""
    if values.numel() == 0:
        return values.bool()
    keep = kept_count(values, sparsity)
    if keep == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    return values > bisect_threshold(values, keep)


def connected_top_k(
    edges: list[Edge],
    scores: torch.Tensor,
    k: int,
    allowed: torch.Tensor | None = None,
    embeddings: tuple[str, ...] = ("tok", "pos"),
    ablation: str | None = None,
) -> tuple[torch.Tensor, str | None]:
    """(keep mask, note): ``k`` connected edges, the highest-ranked (``scores``) that the ranking allows.

    The shortest prefix of the ranking whose connected part holds at least ``k`` edges (that part
    only grows with the prefix); when it holds more, its lowest-ranked edges whose removal
    disconnects nothing else are dropped until ``k`` remain.  ``note`` is None when exactly ``k``
    were found, else why not (fewer connected edges exist, or every smaller set disconnects more).
    """
    n = len(edges)
    keep = torch.zeros(n, dtype=torch.bool)
    if k <= 0 or n == 0:
        return keep, None
    ok = torch.ones(n, dtype=torch.bool) if allowed is None else allowed.bool()
    order = [i for i in torch.argsort(scores, descending=True, stable=True).tolist() if ok[i]]
    index = {e: i for i, e in enumerate(edges)}

    def connected(m: int) -> set[Edge]:
        return prune_dangling([edges[i] for i in order[:m]], embeddings, ablation)

    full = connected(len(order))
    if len(full) < k:
        for e in full:
            keep[index[e]] = True
        return keep, (
            f"asked for {k} edges but only {len(full)} of the {len(order)} candidate edges connect an embedding "
            f"to out (the others dangle); kept those {len(full)}"
        )
    lo, hi = 0, len(order)  # smallest prefix whose connected part has >= k edges
    while lo < hi:
        mid = (lo + hi) // 2
        if len(connected(mid)) >= k:
            hi = mid
        else:
            lo = mid + 1
    chosen = connected(hi)
    rank = {edges[i]: r for r, i in enumerate(order)}
    while len(chosen) > k:
        for e in sorted(chosen, key=lambda x: rank[x], reverse=True):
            rest = prune_dangling(chosen - {e}, embeddings, ablation)
            if len(rest) == len(chosen) - 1:
                chosen = rest
                break
        else:
            break
    for e in chosen:
        keep[index[e]] = True
    if len(chosen) != k:
        return keep, (
            f"asked for {k} edges but no connected set of exactly {k} follows the ranking: dropping any edge of the "
            f"{len(chosen)} kept disconnects others; kept {len(chosen)}"
        )
    return keep, None


def extract_circuit(
    masks: MaskParameters,
    edge_sparsity: float | None = None,
    use_nodes: bool = True,
    model: str = "",
    meta: dict | None = None,
    ablation: str | None = None,
) -> Circuit:
    """The circuit of the kept count (``kept_count``) of connected edges, in the deterministic gates' order."""
    edge_soft, node_soft = masks.deterministic()
    values = edge_soft.detach()
    # a writer stays unless its deterministic gate is 0 (it is expected to be off); bisecting the
    # node gates to their mean would drop a writer whenever all of them sit a little below 1
    allowed = (node_soft.detach() > 0)[masks.edge_writer] if use_nodes else None
    k = kept_count(values, edge_sparsity) if values.numel() else 0
    if allowed is not None:
        k = min(k, int(allowed.sum()))
    graph = masks.graph
    keep, note = connected_top_k(list(graph.edges), values, k, allowed, tuple(graph.embeddings), ablation)
    if allowed is not None:
        keep &= allowed
    edges = [e for e, kk in zip(graph.edges, keep.tolist()) if kk]
    out_meta = dict(meta or {})
    out_meta["cut_count"] = {"asked": k, "kept": len(edges)}
    if note is not None:
        out_meta["cut_note"] = note
    return Circuit(edges=edges, model=model, meta=out_meta)
