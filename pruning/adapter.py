"""What a model family provides so the one engine can prune it.

Why an ABC of blocks rather than a model wrapper: the disentangled forward
mixes the writers itself and only needs each block's arithmetic.  A block must
apply its own input normalisation (layer norm per reader, after mixing), accept
per-head inputs, and return per-head outputs that sum to the block output.
Families differ in: the embedding writers (``tok``/``pos`` or a single ``tok``
for rotary models), grouped-query attention (fewer k/v readers: inputs of shape
(B, KV, T, D)), the final read (final norm + unembedding), and which positions
the task scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from edgeprune.core.graph import ComputationalGraph


class ModelAdapter(ABC):
    """One model family's blocks, in the order of ``graph.writers`` / ``graph.readers``."""

    graph: ComputationalGraph
    #: "categorical" (a distribution over an output space) or "numerical" (one value per position)
    output_kind: str = "categorical"
    #: True when ``attention`` takes one (B, T, D) input for every head, so the plain forward
    #: passes the residual as is; False: it takes per-head (B, H, T, D) / (B, KV, T, D) inputs
    shared_head_input: bool = False
    #: True when ``readout`` works position by position (a final norm and an unembedding), so it
    #: may be given only the scored positions' inputs (B, K, D): see ``at_positions``
    readout_per_position: bool = False

    @property
    def n_heads(self) -> int:
        return self.graph.n_heads

    @property
    def n_layers(self) -> int:
        return self.graph.n_layers

    @abstractmethod
    def embed(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Embedding writers' outputs, one (B, T, D) tensor per ``graph.embeddings`` entry."""

    @abstractmethod
    def attention(
        self, layer: int, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-head outputs (B, H, T, D) from per-reader inputs q (B, H, T, D), k and v (B, KV, T, D)."""

    def attention_head_major(self, layer: int, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-head outputs (H, B, T, D) from the layer's reader inputs ``x`` (H + 2 KV, B, T, D) in reader
        order (every q, then every k, then every v).  The engine's layout for masks shared by the batch;
        this default goes through ``attention``, and adapters override it where the transposes cost
        (the ``transformers`` adapters: one normalisation and one batched projection for every reader).
        Overrides do not checkpoint: under gradient checkpointing the engine recomputes this call together
        with the mixing that makes ``x`` (``DisentangledForward``)."""
        H, KV = self.graph.n_heads, self.graph.kv_heads
        xq, xk, xv = torch.split(x.transpose(0, 1), [H, KV, KV], dim=1)
        return self.attention(layer, xq, xk, xv, key_mask).transpose(0, 1)

    def attention_of_residual(self, layer: int, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-head outputs (H, B, T, D) of the plain model, every reader reading the residual ``x`` (B, T, D):
        the corrupted run's attention.  This default goes through ``attention`` (with the residual itself as
        every head's input where ``shared_head_input``); adapters override it with the block's own fused
        projection where that is cheaper."""
        H, KV = self.graph.n_heads, self.graph.kv_heads
        if self.shared_head_input:
            heads = self.attention(layer, x, x, x, key_mask)
        else:
            per = x.unsqueeze(1)
            heads = self.attention(
                layer, per.expand(-1, H, -1, -1), per.expand(-1, KV, -1, -1), per.expand(-1, KV, -1, -1), key_mask
            )
        return heads.transpose(0, 1)

    @abstractmethod
    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """MLP output (B, T, D) from its mixed input (B, T, D)."""

    @abstractmethod
    def readout(self, x: torch.Tensor) -> torch.Tensor:
        """Task output from the mixed input of ``out``: logits (B, T, V) or values (B, T)."""

    @abstractmethod
    def loss_mask(self, ids: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Boolean (B, T): positions whose output the objective scores."""

    def model_id(self) -> str:
        """A fingerprint of the model, stored in checkpoints to refuse resuming on another model."""
        return self.graph.model

    @torch.no_grad()
    def writer_outputs(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Every writer's output (W, B, T, D) in the plain model (no masks): the corrupted activations.

        With ``shared_head_input`` every head reads the residual itself (no per-head copies).
        """
        emb = self.embed(ids)
        H = self.graph.n_heads
        # written in place, writer by writer (one (W, B, T, D) tensor, no stacking copy at the end)
        out = emb[0].new_empty((len(self.graph.writers), *emb[0].shape))
        for i, e in enumerate(emb):
            out[i] = e
        x = out[: len(emb)].sum(0)
        w = len(emb)
        for layer in range(self.n_layers):
            out[w : w + H].copy_(self.attention_of_residual(layer, x, key_mask))
            x = x + out[w : w + H].sum(0)
            out[w + H] = self.mlp(layer, x)
            x = x + out[w + H]
            w += H + 1
        return out

    @torch.no_grad()
    def full_output(
        self, ids: torch.Tensor, key_mask: torch.Tensor | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The unpruned model's task output on ``ids`` (the objective's reference); at ``positions``
        (B, K) only when given (``readout_per_position`` adapters)."""
        return self.readout(at_positions(self.writer_outputs(ids, key_mask).sum(0), positions))


def at_positions(x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """Rows ``positions`` (B, K) of each example's (B, T, D) residual: (B, K, D); ``x`` itself for None.

    Why: a language model's task scores a few positions (the answer), and its readout is a
    vocabulary-wide unembedding; applied at every position it costs about a third of the
    forward and its logits dominate memory, for outputs the loss never reads.
    """
    if positions is None:
        return x
    return x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
