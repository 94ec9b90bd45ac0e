"""A Tracr-style transformer in PyTorch: token and position embeddings, attention and ReLU MLPs.

The blocks are exposed one by one (``attention``, ``mlp``) so that the plain
forward, the slow ground-truth checker and the edge-pruning engine all run the
very same arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from edgeprune.compiled.metadata import ModelMetadata
from edgeprune.core import names
from edgeprune.core.errors import InputError

# A categorical readout whose largest entry is at most this is undefined (decodes to None).
UNDEFINED_THRESHOLD = 0.5


@dataclass
class TransformerConfig:
    d_model: int
    n_layers: int
    n_heads: int
    key_size: int
    mlp_hidden: int
    vocab_size: int  # number of input ids, BOS and pad included
    n_positions: int  # max_seq_len + 1 (BOS)
    layer_norm: bool = False
    causal: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


# parameter name -> shape as a function of the config; the file format is these names
def param_shapes(c: TransformerConfig) -> dict[str, tuple[int, ...]]:
    L, H, D, K, M = c.n_layers, c.n_heads, c.d_model, c.key_size, c.mlp_hidden
    shapes = {
        "token_embed": (c.vocab_size, D),
        "pos_embed": (c.n_positions, D),
        "W_Q": (L, H, D, K),
        "b_Q": (L, H, K),
        "W_K": (L, H, D, K),
        "b_K": (L, H, K),
        "W_V": (L, H, D, K),
        "b_V": (L, H, K),
        "W_O": (L, H, K, D),
        "b_O": (L, D),
        "W_1": (L, D, M),
        "b_1": (L, M),
        "W_2": (L, M, D),
        "b_2": (L, D),
    }
    if c.layer_norm:
        shapes.update({"ln_attn_w": (L, D), "ln_attn_b": (L, D), "ln_mlp_w": (L, D), "ln_mlp_b": (L, D)})
    return shapes


# The axis of each weight (as ``param_shapes`` lays it out) that runs over the residual stream:
# two compilations with the same residual labels in another order differ by a permutation there.
RESIDUAL_AXIS = {
    "token_embed": 1,
    "pos_embed": 1,
    "W_Q": 2,
    "W_K": 2,
    "W_V": 2,
    "W_O": 3,
    "b_O": 1,
    "W_1": 1,
    "W_2": 2,
    "b_2": 1,
}


class CompiledTransformer(nn.Module):
    """A compiled RASP program; ``metadata`` says what every direction and block means."""

    # Weights, registered by name from ``param_shapes`` (declared here for readers and type checkers).
    token_embed: nn.Parameter
    pos_embed: nn.Parameter
    W_Q: nn.Parameter
    b_Q: nn.Parameter
    W_K: nn.Parameter
    b_K: nn.Parameter
    W_V: nn.Parameter
    b_V: nn.Parameter
    W_O: nn.Parameter
    b_O: nn.Parameter
    W_1: nn.Parameter
    b_1: nn.Parameter
    W_2: nn.Parameter
    b_2: nn.Parameter

    def __init__(self, config: TransformerConfig, metadata: ModelMetadata, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config = config
        self.metadata = metadata
        for name, shape in param_shapes(config).items():
            init = torch.ones(shape, dtype=dtype) if name.endswith("_w") else torch.zeros(shape, dtype=dtype)
            self.register_parameter(name, nn.Parameter(init, requires_grad=False))

    # ----- blocks -------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token and position embeddings, each (B, T, D)."""
        T = ids.shape[-1]
        if T > self.config.n_positions:
            raise InputError(f"sequence of {T} positions exceeds the model's {self.config.n_positions} (BOS included)")
        tok = self.token_embed[ids]
        pos = self.pos_embed[:T].expand_as(tok)
        return tok, pos

    def _norm(self, x: torch.Tensor, layer: int, which: str) -> torch.Tensor:
        if not self.config.layer_norm:
            return x
        w = getattr(self, f"ln_{which}_w")[layer]
        b = getattr(self, f"ln_{which}_b")[layer]
        return nn.functional.layer_norm(x, (x.shape[-1],), w, b)

    def attention_scores_mask(self, T: int, key_mask: torch.Tensor | None, device) -> torch.Tensor | None:
        """Boolean (B or 1, 1, T, T) mask of allowed query->key pairs, or None for all."""
        mask = None
        if self.config.causal:
            mask = torch.ones(T, T, dtype=torch.bool, device=device).tril()[None, None]
        if key_mask is not None:
            km = key_mask[:, None, None, :].bool()
            mask = km if mask is None else (mask & km)
        return mask

    def attention(
        self,
        layer: int,
        xq: torch.Tensor,
        xk: torch.Tensor,
        xv: torch.Tensor,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-head outputs (B, H, T, D) of ``layer``; inputs are (B, T, D) or per-head (B, H, T, D).

        The output bias is split evenly over heads, so the heads sum to the block output.
        """
        H = self.config.n_heads
        xq, xk, xv = (self._norm(x, layer, "attn") for x in (xq, xk, xv))
        xq, xk, xv = (x if x.dim() == 4 else x.unsqueeze(1) for x in (xq, xk, xv))
        q = torch.einsum("bhtd,hdk->bhtk", xq, self.W_Q[layer]) + self.b_Q[layer][None, :, None]
        k = torch.einsum("bhtd,hdk->bhtk", xk, self.W_K[layer]) + self.b_K[layer][None, :, None]
        v = torch.einsum("bhtd,hdk->bhtk", xv, self.W_V[layer]) + self.b_V[layer][None, :, None]
        scores = torch.einsum("bhqk,bhsk->bhqs", q, k) / (self.config.key_size**0.5)
        mask = self.attention_scores_mask(scores.shape[-1], key_mask, scores.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        pattern = torch.softmax(scores, dim=-1)
        z = torch.einsum("bhqs,bhsk->bhqk", pattern, v)
        return torch.einsum("bhqk,hkd->bhqd", z, self.W_O[layer]) + self.b_O[layer][None, None, None] / H

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        x = self._norm(x, layer, "mlp")
        hidden = torch.relu(x @ self.W_1[layer] + self.b_1[layer])
        return hidden @ self.W_2[layer] + self.b_2[layer]

    # ----- whole model ----------------------------------------------------
    def forward(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final residual stream (B, T, D)."""
        tok, pos = self.embed(ids)
        x = tok + pos
        for layer in range(self.config.n_layers):
            x = x + self.attention(layer, x, x, x, key_mask).sum(1)
            x = x + self.mlp(layer, x)
        return x

    def writer_outputs(self, ids: torch.Tensor, key_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every writer's output (B, T, D) in the unmasked model, by node name (``tok``, ``pos``, heads, MLPs)."""
        tok, pos = self.embed(ids)
        outs = {names.TOK: tok, names.POS: pos}
        x = tok + pos
        for layer in range(self.config.n_layers):
            heads = self.attention(layer, x, x, x, key_mask)
            for h in range(self.config.n_heads):
                outs[names.head(layer, h)] = heads[:, h]
            x = x + heads.sum(1)
            outs[names.mlp(layer)] = m = self.mlp(layer, x)
            x = x + m
        return outs

    def residual_trace(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Residual after every attention and MLP block, in order attn0, mlp0, attn1, ..."""
        tok, pos = self.embed(ids)
        x = tok + pos
        trace = []
        for layer in range(self.config.n_layers):
            x = x + self.attention(layer, x, x, x).sum(1)
            trace.append(x)
            x = x + self.mlp(layer, x)
            trace.append(x)
        return trace

    def readout(self, residual: torch.Tensor) -> torch.Tensor:
        """Output-space logits (B, T, n_out) for categorical programs, values (B, T) for numerical ones."""
        space = residual[..., self.metadata.output_space]
        return space if self.is_categorical else space[..., 0]

    @property
    def is_categorical(self) -> bool:
        return self.metadata.output_encoding == "categorical"

    def decode(self, out: torch.Tensor) -> list[list[Any]]:
        """Readout (B, T, ...) -> per-sequence decoded values; position 0 (BOS) included."""
        if self.is_categorical:
            # A defined categorical value is a one-hot direction; an undefined one (RASP None) is a zero
            # vector (exactly zero in Tracr, ~1e-8 in the own compiler), so it decodes to None, not an argmax.
            top, idx = out.max(-1)
            values = self.metadata.output_values
            return [
                [values[i] if t > UNDEFINED_THRESHOLD else None for i, t in zip(ir, tr)]
                for ir, tr in zip(idx.tolist(), top.tolist())
            ]
        return [[float(v) for v in row] for row in out.tolist()]

    # ----- convenience for tokens ------------------------------------------------
    def encode_batch(self, inputs: Sequence[Sequence[Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad a list of token sequences: (ids (B, T), key_mask (B, T)); BOS first."""
        if not inputs:
            raise InputError("no inputs given")
        rows = [self.metadata.encode(list(seq)) for seq in inputs]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), self.metadata.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        return ids, mask

    @torch.no_grad()
    def run(self, inputs: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """Decoded outputs for each input, one per input token (BOS excluded)."""
        ids, mask = self.encode_batch(inputs)
        key_mask = None if bool(mask.all()) else mask
        decoded = self.decode(self.readout(self.forward(ids, key_mask)))
        return [row[1 : len(seq) + 1] for row, seq in zip(decoded, inputs)]
