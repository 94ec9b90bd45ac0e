"""A slow, obviously-correct edge-masked forward pass of a compiled model.

Every reader's input is summed writer by writer: a kept edge passes the
writer's clean output, a removed edge passes its ablated output (zero, or the
writer's output on the corrupted input under the full model).  The fast engine
in ``pruning/`` is tested against this loop.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core import names
from edgeprune.core.graph import ComputationalGraph

ABLATIONS = ("zero", "interchange")


def graph_of(model: CompiledTransformer) -> ComputationalGraph:
    return ComputationalGraph(model.config.n_layers, model.config.n_heads, model=model.metadata.name)


@torch.no_grad()
def writer_outputs(
    model: CompiledTransformer, ids: torch.Tensor, key_mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Every writer's output (B, T, D) in the unmasked model."""
    graph = graph_of(model)
    tok, pos = model.embed(ids)
    outs = {names.TOK: tok, names.POS: pos}
    x = tok + pos
    for layer in range(model.config.n_layers):
        heads = model.attention(layer, x, x, x, key_mask)
        for h in range(model.config.n_heads):
            outs[names.head(layer, h)] = heads[:, h]
        x = x + heads.sum(1)
        m = model.mlp(layer, x)
        outs[names.mlp(layer)] = m
        x = x + m
    assert set(outs) == set(graph.writers)
    return outs


@torch.no_grad()
def masked_forward(
    model: CompiledTransformer,
    ids: torch.Tensor,
    edges: Iterable[tuple[str, str]],
    ablation: str = "zero",
    corrupted_ids: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Residual stream read by ``out`` (B, T, D) when only ``edges`` carry clean activations."""
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    kept = set(map(tuple, edges))
    graph = graph_of(model)
    if ablation == "interchange":
        if corrupted_ids is None or corrupted_ids.shape != ids.shape:
            raise ValueError("interchange ablation needs corrupted_ids of the same shape as ids")
        ablated = writer_outputs(model, corrupted_ids, key_mask)
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
