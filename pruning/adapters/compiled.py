"""Adapter for compiled (Tracr-style) transformers: ``compiled.model.CompiledTransformer``."""

from __future__ import annotations

import hashlib

import torch

from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.graph import ComputationalGraph
from edgeprune.pruning.adapter import ModelAdapter


class CompiledAdapter(ModelAdapter):
    """Tracr layout: ``tok`` and ``pos`` writers, no final norm, output = the output-space directions.

    Scored positions are those where the compiled program defines an output: for
    categorical programs, the real positions where the full model's output vector
    is decisive (max > 0.5; an Aggregate that selects nothing leaves it near zero,
    and RASP says None there), as the reference's reverse loss (BOS excluded); for
    numerical programs every real position and BOS, as the reference's
    xproportion loss (a softmax across the sequence, BOS included).  Only the
    latter sees the BOS mechanism of a numerical Aggregate (``one`` in q,
    ``tokens:BOS`` in k) when every real query selects something, and the
    ground truth (ACDC's xproportion circuit) counts it.
    """

    shared_head_input = True  # CompiledTransformer.attention reads one residual for every head

    def __init__(self, model: CompiledTransformer):
        self.model = model
        c = model.config
        self.graph = ComputationalGraph(c.n_layers, c.n_heads, model=model.metadata.name)
        self.output_kind = "categorical" if model.is_categorical else "numerical"

    def embed(self, ids: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model.embed(ids))

    def attention(self, layer, xq, xk, xv, key_mask=None):
        return self.model.attention(layer, xq, xk, xv, key_mask)

    def mlp(self, layer, x):
        return self.model.mlp(layer, x)

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.readout(x)

    @torch.no_grad()
    def loss_mask(self, ids, key_mask):
        mask = torch.ones_like(ids, dtype=torch.bool) if key_mask is None else key_mask.bool().clone()
        if self.output_kind == "categorical":
            mask &= self.full_output(ids, key_mask).max(-1).values > 0.5
            mask[:, 0] = False
        return mask

    def model_id(self) -> str:
        """Name plus a hash of the weights: a checkpoint only resumes on the very same model."""
        h = hashlib.sha256()
        h.update(self.model.metadata.name.encode())
        for name, p in sorted(self.model.named_parameters()):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        return f"{self.model.metadata.name}:{h.hexdigest()[:16]}"
