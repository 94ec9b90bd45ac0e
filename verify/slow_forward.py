"""A slow, obviously-correct edge-masked forward pass of a compiled model.

Every reader's input is summed writer by writer: a kept edge passes the
writer's clean output, a removed edge passes its ablated output (zero, the
writer's output on the corrupted input under the full model, or its mean over
reference inputs: ``mean_outputs``, per position or over all positions).  The fast engine
in ``pruning/`` is tested against this loop.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core import names
from edgeprune.core.graph import ComputationalGraph
from edgeprune.core.options import ABLATIONS, is_mean


def graph_of(model: CompiledTransformer) -> ComputationalGraph:
    return ComputationalGraph(model.config.n_layers, model.config.n_heads, model=model.metadata.name)


@torch.no_grad()
def writer_outputs(
    model: CompiledTransformer, ids: torch.Tensor, key_mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Every writer's output (B, T, D) in the unmasked model (``CompiledTransformer.writer_outputs``)."""
    outs = model.writer_outputs(ids, key_mask)
    assert set(outs) == set(graph_of(model).writers)
    return outs


@torch.no_grad()
def mean_outputs(
    model: CompiledTransformer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
    ablation: str = "mean",
) -> dict[str, torch.Tensor]:
    """Each writer's mean output over reference inputs, by name: (T, D) per position, (1, D) for ``mean-all``.

    ``batches`` are (ids, key mask or None) of the references.  Written as a plain loop over
    positions: at position t, the mean over the references that have it; ``mean-all`` over
    every position any reference has.  Accumulated in float64.
    """
    if not is_mean(ablation):
        raise ValueError(f"mean_outputs is for the mean ablations, got {ablation!r}")
    sums: dict[str, dict[int, torch.Tensor]] = {}
    counts: dict[int, int] = {}
    for ids, key_mask in batches:
        outs = writer_outputs(model, ids, key_mask)
        for t in range(ids.shape[1]):
            have = torch.ones(ids.shape[0], dtype=torch.bool) if key_mask is None else key_mask[:, t].bool()
            if not bool(have.any()):
                continue
            counts[t] = counts.get(t, 0) + int(have.sum())
            for w, y in outs.items():
                per = sums.setdefault(w, {})
                v = y[have, t].to(torch.float64).sum(0)
                per[t] = per[t] + v if t in per else v
    if not counts:
        raise ValueError("mean ablation needs at least one reference input")
    T = max(counts) + 1
    means = {}
    for w, per in sums.items():
        D = next(iter(per.values())).shape[0]
        if ablation == "mean-all":
            total = sum(per.values(), torch.zeros(D, dtype=torch.float64))
            means[w] = (total / sum(counts.values())).float()[None]
        else:
            rows = [per[t] / counts[t] if t in counts else torch.zeros(D, dtype=torch.float64) for t in range(T)]
            means[w] = torch.stack(rows).float()
    return means


def _broadcast_means(means: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, T, D) per writer: the per-position rows (0 past the references), or the one mean row everywhere."""
    B, T = ids.shape
    out = {}
    for w, m in means.items():
        if m.shape[0] == 1:
            rows = m.expand(T, m.shape[1])
        elif m.shape[0] >= T:
            rows = m[:T]
        else:
            rows = torch.cat([m, m.new_zeros(T - m.shape[0], m.shape[1])])
        out[w] = rows.unsqueeze(0).expand(B, T, m.shape[1])
    return out


@torch.no_grad()
def masked_forward(
    model: CompiledTransformer,
    ids: torch.Tensor,
    edges: Iterable[tuple[str, str]],
    ablation: str = "zero",
    corrupted_ids: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
    means: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Residual stream read by ``out`` (B, T, D) when only ``edges`` carry clean activations.

    Mean ablation needs ``means`` (``mean_outputs`` over the reference inputs)."""
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    kept = set(map(tuple, edges))
    graph = graph_of(model)
    if ablation == "interchange":
        if corrupted_ids is None or corrupted_ids.shape != ids.shape:
            raise ValueError("interchange ablation needs corrupted_ids of the same shape as ids")
        ablated = writer_outputs(model, corrupted_ids, key_mask)
    elif is_mean(ablation):
        if means is None:
            raise ValueError(f"{ablation} ablation needs means= (mean_outputs over the reference inputs)")
        ablated = _broadcast_means(means, ids)
    else:
        ablated = None

    clean: dict[str, torch.Tensor] = {}

    def read(reader: str) -> torch.Tensor:
        total = None
        for w in graph.writers[: graph.n_inputs(reader)]:
            if (w, reader) in kept:
                y = clean[w]
            elif ablated is not None:
                y = ablated[w]
            else:
                continue
            total = y if total is None else total + y
        if total is None:
            total = torch.zeros_like(clean[names.TOK])
        return total

    clean[names.TOK], clean[names.POS] = model.embed(ids)
    for layer in range(model.config.n_layers):
        H = model.config.n_heads
        xq = torch.stack([read(names.head_input(layer, h, "q")) for h in range(H)], 1)
        xk = torch.stack([read(names.head_input(layer, h, "k")) for h in range(H)], 1)
        xv = torch.stack([read(names.head_input(layer, h, "v")) for h in range(H)], 1)
        heads = model.attention(layer, xq, xk, xv, key_mask)
        for h in range(H):
            clean[names.head(layer, h)] = heads[:, h]
        clean[names.mlp(layer)] = model.mlp(layer, read(names.mlp(layer)))
    return read(names.OUT)
