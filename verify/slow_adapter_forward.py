"""A slow, obviously-correct edge-masked forward for any ``ModelAdapter``.

Every reader's input is summed writer by writer, by name: a kept edge passes the
writer's clean output, a removed edge its ablated output (nothing under zero
ablation; under interchange ablation the writer's output when the FULL model runs
on the corrupted input, computed by this same loop with every edge kept; under mean
ablation the mean of those full-model outputs over reference inputs, per position
over the references that have it, or over every position for ``mean-all``).  The
blocks are the adapter's own; the fast engine's mixing is tested against this.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from edgeprune.core import names
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import ABLATIONS, is_mean
from edgeprune.pruning.adapter import ModelAdapter


@torch.no_grad()
def _run(
    adapter: ModelAdapter,
    ids: torch.Tensor,
    kept: set[tuple[str, str]],
    ablated: dict[str, torch.Tensor] | None,
    key_mask: torch.Tensor | None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(clean writer outputs by name, input of ``out``)."""
    g = adapter.graph
    clean: dict[str, torch.Tensor] = dict(zip(g.embeddings, adapter.embed(ids)))
    zero = torch.zeros_like(next(iter(clean.values())))

    def read(reader: str) -> torch.Tensor:
        total = zero.clone()
        for w in g.writers[: g.n_inputs(reader)]:
            if (w, reader) in kept:
                total = total + clean[w]
            elif ablated is not None:
                total = total + ablated[w]
        return total

    for layer in range(g.n_layers):
        xq = torch.stack([read(names.head_input(layer, h, "q")) for h in range(g.n_heads)], 1)
        xk = torch.stack([read(r) for r in g.kv_reader_names(layer, "k")], 1)
        xv = torch.stack([read(r) for r in g.kv_reader_names(layer, "v")], 1)
        heads = adapter.attention(layer, xq, xk, xv, key_mask)
        for h in range(g.n_heads):
            clean[names.head(layer, h)] = heads[:, h]
        clean[names.mlp(layer)] = adapter.mlp(layer, read(names.mlp(layer)))
    return clean, read(names.OUT)


@torch.no_grad()
def masked_forward_adapter(
    adapter: ModelAdapter,
    ids: torch.Tensor,
    edges: Iterable[tuple[str, str]],
    ablation: str = "zero",
    corrupted_ids: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
    reference_ids: torch.Tensor | None = None,
    reference_key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Task output (``adapter.readout``) when only ``edges`` carry clean activations.

    Mean ablation averages over ``reference_ids`` (default: ``ids`` with ``key_mask``)."""
    if ablation not in ABLATIONS:
        raise EdgePruneError(f"ablation must be one of {', '.join(ABLATIONS)}, got {ablation!r}")
    kept = {(e[0], e[1]) for e in edges}
    ablated = None
    if ablation == "interchange":
        if corrupted_ids is None or corrupted_ids.shape != ids.shape:
            raise EdgePruneError("interchange ablation needs corrupted_ids of the same shape as ids")
        ablated, _ = _run(adapter, corrupted_ids, set(adapter.graph.edges), None, key_mask)
    elif is_mean(ablation):
        if reference_ids is None:
            reference_ids, reference_key_mask = ids, key_mask
        ablated = _means(adapter, reference_ids, reference_key_mask, ablation, ids.shape)
    _, x = _run(adapter, ids, kept, ablated, key_mask)
    return adapter.readout(x)


@torch.no_grad()
def _means(
    adapter: ModelAdapter, ids: torch.Tensor, key_mask: torch.Tensor | None, ablation: str, shape: torch.Size
) -> dict[str, torch.Tensor]:
    """Each writer's full-model output averaged reference by reference, position by position, as (B, T, D)."""
    full, _ = _run(adapter, ids, set(adapter.graph.edges), None, key_mask)
    B, T = shape
    N, T_ref = ids.shape
    have = [[key_mask is None or bool(key_mask[b, t]) for t in range(T_ref)] for b in range(N)]
    out = {}
    for w, y in full.items():
        every = [y[b, t].double() for b in range(N) for t in range(T_ref) if have[b][t]]
        rows = []
        for t in range(T):
            col = every if ablation == "mean-all" else [y[b, t].double() for b in range(N) if t < T_ref and have[b][t]]
            rows.append(torch.stack(col).mean(0) if col else torch.zeros(y.shape[-1], dtype=torch.float64))
        out[w] = torch.stack(rows).to(y.dtype).unsqueeze(0).expand(B, T, y.shape[-1])
    return out
