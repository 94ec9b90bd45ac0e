"""Adapter for ``transformers`` GPT-2 (``GPT2LMHeadModel``): the model's own modules and weights.

Layout (method-facts 1.1): writers ``tok`` and ``pos``; per head separate q, k, v
readers, each normalised by the layer's ``ln_1`` after mixing; a head's output is
its attention result through its slice of ``c_proj`` plus ``b_O / H``; the MLP is
the module's own ``mlp`` on ``ln_2`` of its input; ``out`` is ``lm_head(ln_f(x))``.
GPT-2's ``Conv1D`` stores weights as (in, out), so ``c_attn``'s columns are
[q | k | v], each head-major: head h owns columns h*dh .. (h+1)*dh of each part.
"""

from __future__ import annotations

from typing import Any

import torch

from edgeprune.core import names
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.graph import ComputationalGraph
from edgeprune.pruning.adapters.hf_loading import HFAdapterBase


class GPT2Adapter(HFAdapterBase):
    """GPT-2 blocks for the disentangled forward; options as in ``HFAdapterBase``.

    Not supported (refused): cross-attention layers.  ``reorder_and_upcast_attn`` only
    changes rounding; scores are computed in float32 here regardless.
    Positions are 0..T-1 for every row, as ``transformers`` does without explicit
    ``position_ids``: pad on the right.
    """

    def __init__(self, model: Any, **options: Any):
        super().__init__(model, **options)
        cfg = model.config
        if getattr(cfg, "add_cross_attention", False):
            raise EdgePruneError("GPT-2 with cross-attention is not supported by the edge-pruning adapter")
        self.tf = model.transformer
        self.H = cfg.n_head
        self.D = cfg.n_embd
        self.dh = self.D // self.H
        from transformers.activations import NewGELUActivation

        self._fused_gelu = all(isinstance(b.mlp.act, NewGELUActivation) for b in self.tf.h)
        name = getattr(cfg, "_name_or_path", "") or "gpt2"
        self.graph = ComputationalGraph(cfg.n_layer, cfg.n_head, embeddings=(names.TOK, names.POS), model=name)

    # ----- writers ---------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> list[torch.Tensor]:
        ids = ids.to(self.device)
        T = ids.shape[1]
        tok = self.tf.wte(ids)
        pos = self.tf.wpe(torch.arange(T, device=self.device))[None].expand_as(tok)
        return [self._out(tok), self._out(pos)]

    def _qkv_weights(self, layer: int, part: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(D, H, dh) weight and (H, dh) bias of q (part 0), k (1) or v (2) in layer ``layer``."""
        c_attn = self.tf.h[layer].attn.c_attn
        D, H, dh = self.D, self.H, self.dh
        w = c_attn.weight[:, part * D : (part + 1) * D].reshape(D, H, dh)
        b = c_attn.bias[part * D : (part + 1) * D].reshape(H, dh)
        return w, b

    def _attention_block(
        self, layer: int, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        block = self.tf.h[layer]
        projected = []
        for part, x in enumerate((xq, xk, xv)):
            w, b = self._qkv_weights(layer, part)
            if x.dim() == 3:  # one shared input: the plain model, no per-head copies
                y = torch.einsum("btd,dhe->bhte", block.ln_1(self._in(x)), w)
            else:
                y = torch.einsum("bhtd,dhe->bhte", block.ln_1(self._in(x)), w)
            projected.append(y + b[None, :, None, :])
        q, k, v = projected
        z = self._attend(q, k, v, _scaling(block.attn), key_mask)  # (B, H, T, dh)
        c_proj = block.attn.c_proj
        w_o = c_proj.weight.reshape(self.H, self.dh, self.D)
        heads = torch.einsum("bhte,hed->bhtd", z, w_o) + c_proj.bias / self.H
        return self._out(heads)

    def attention(
        self, layer: int, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._maybe_checkpoint(self._attention_block, layer, xq, xk, xv, key_mask)

    def attention_head_major(self, layer: int, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``attention`` for head-major reader inputs (3H, B, T, D): ``ln_1`` once over all of them, and one
        batched product with each reader's slice of ``c_attn``; outputs (H, B, T, D)."""
        block = self.tf.h[layer]
        r, B, T, D = x.shape
        H, dh = self.H, self.dh
        h = block.ln_1(self._in(x)).reshape(r, B * T, D)
        c_attn = block.attn.c_attn
        w = c_attn.weight.view(D, 3, H, dh).permute(1, 2, 0, 3).reshape(3 * H, D, dh)
        y = torch.baddbmm(c_attn.bias.view(3 * H, 1, dh), h, w).view(3, H, B, T, dh).transpose(1, 2)
        q, k, v = y.unbind(0)  # (B, H, T, dh) each
        z = self._attend(q, k, v, _scaling(block.attn), key_mask)
        return self._head_outputs(layer, z)

    def attention_of_residual(self, layer: int, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The corrupted run's per-head outputs (H, B, T, D): ``ln_1`` and ``c_attn`` once on the residual, as
        the model itself runs, then each head through its slice of ``c_proj``."""
        block = self.tf.h[layer]
        B, T, _ = x.shape
        qkv = block.attn.c_attn(block.ln_1(self._in(x)))  # (B, T, 3D)
        q, k, v = qkv.view(B, T, 3, self.H, self.dh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, T, dh) each
        return self._head_outputs(layer, self._attend(q, k, v, _scaling(block.attn), key_mask))

    def _head_outputs(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """(H, B, T, D): each head's attention result z (B, H, T, dh) through its rows of ``c_proj``, plus b_O / H."""
        c_proj = self.tf.h[layer].attn.c_proj
        return self._heads_through(z, c_proj.weight.view(self.H, self.dh, self.D), c_proj.bias)

    def _mlp_block(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        block = self.tf.h[layer]
        mlp = block.mlp
        if not self._fused_gelu:
            return self._out(mlp(block.ln_2(self._in(x))))
        # GPT-2's gelu_new written out is five elementwise passes each way over the (B, T, 4D) hidden
        # state; torch's tanh-approximate GELU is the same function in one (transformers' gelu_pytorch_tanh)
        h = torch.nn.functional.gelu(mlp.c_fc(block.ln_2(self._in(x))), approximate="tanh")
        return self._out(mlp.dropout(mlp.c_proj(h)))

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self._maybe_checkpoint(self._mlp_block, layer, x)

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.tf.ln_f(self._in(x))).float()


def _scaling(attn) -> float:
    """The attention's score scale: ``attn.scaling`` where ``transformers`` has it (4.56 on), else
    the same product from the flags older versions keep (1/sqrt(head_dim), then 1/(layer + 1))."""
    scaling = getattr(attn, "scaling", None)
    if scaling is not None:
        return float(scaling)
    value = attn.head_dim**-0.5 if attn.scale_attn_weights else 1.0
    if attn.scale_attn_by_inverse_layer_idx:
        value /= float(attn.layer_idx + 1)
    return value
