"""Adapter for ``transformers`` Llama (``LlamaForCausalLM``), CodeLlama included.

Layout (method-facts 1.2): one ``tok`` writer (rotary positions: no ``pos`` node);
per layer H query readers and, with grouped-query attention, one key and one value
reader per KV head (inputs (B, KV, T, D)); every reader is normalised by the
layer's ``input_layernorm`` (RMSNorm) after mixing; rotary embeddings from the
model's own ``rotary_emb`` module, applied with the ``transformers`` helper; a
head's output is its attention result through its slice of ``o_proj`` (plus
``o_proj.bias / H`` when the config has attention biases); the gated MLP is the
module's own ``mlp`` on ``post_attention_layernorm`` of its input; ``out`` is
``lm_head(norm(x))``.  Scaling is the attention module's own ``scaling``.
"""

from __future__ import annotations

from typing import Any

import torch

from edgeprune.core import names
from edgeprune.core.graph import ComputationalGraph
from edgeprune.pruning.adapters.hf_loading import HFAdapterBase


class LlamaAdapter(HFAdapterBase):
    """Llama blocks for the disentangled forward; options as in ``HFAdapterBase``.

    Positions are 0..T-1 for every row (``transformers``' default without explicit
    ``position_ids``): pad on the right.  The graph always has the ``tok`` writer;
    the paper's CodeLlama count (no embedding node) is ``ComputationalGraph(...,
    embeddings=())``, which the engine cannot run because it mixes at least one writer.
    """

    def __init__(self, model: Any, **options: Any):
        super().__init__(model, **options)
        cfg = model.config
        self.inner = model.model
        self.H = cfg.num_attention_heads
        self.KV = cfg.num_key_value_heads or self.H
        self.D = cfg.hidden_size
        self.dh = getattr(cfg, "head_dim", None) or self.D // self.H
        name = getattr(cfg, "_name_or_path", "") or "llama"
        kv = self.KV if self.KV != self.H else None
        self.graph = ComputationalGraph(
            cfg.num_hidden_layers, self.H, embeddings=(names.TOK,), n_kv_heads=kv, model=name
        )

    # ----- writers ---------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> list[torch.Tensor]:
        return [self._out(self.inner.embed_tokens(ids.to(self.device)))]

    @staticmethod
    def _project(x: torch.Tensor, proj: torch.nn.Linear, n: int, dh: int) -> torch.Tensor:
        """Per-head projection: reader i's input (B, n, T, D) or a shared (B, T, D) -> (B, n, T, dh)."""
        w = proj.weight.reshape(n, dh, -1)
        y = torch.einsum("btd,hed->bhte" if x.dim() == 3 else "bhtd,hed->bhte", x, w)
        if proj.bias is not None:
            y = y + proj.bias.reshape(n, dh)[None, :, None, :]
        return y

    def _attention_block(
        self, layer: int, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        block = self.inner.layers[layer]
        attn = block.self_attn
        norm = block.input_layernorm
        q = self._project(norm(self._in(xq)), attn.q_proj, self.H, self.dh)
        k = self._project(norm(self._in(xk)), attn.k_proj, self.KV, self.dh)
        v = self._project(norm(self._in(xv)), attn.v_proj, self.KV, self.dh)
        T = q.shape[2]
        position_ids = torch.arange(T, device=self.device)[None]
        cos, sin = self.inner.rotary_emb(v, position_ids)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        z = self._attend(q, k, v, attn.scaling, key_mask)  # (B, H, T, dh)
        w_o = attn.o_proj.weight.reshape(self.D, self.H, self.dh)
        heads = torch.einsum("bhte,dhe->bhtd", z, w_o)
        if attn.o_proj.bias is not None:
            heads = heads + attn.o_proj.bias / self.H
        return self._out(heads)

    def attention(
        self, layer: int, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._maybe_checkpoint(self._attention_block, layer, xq, xk, xv, key_mask)

    def attention_head_major(self, layer: int, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``attention`` for head-major reader inputs (H + 2 KV, B, T, D): the norm once over all of them, one
        batched product with each reader's rows of q/k/v_proj; outputs (H, B, T, D)."""
        block = self.inner.layers[layer]
        attn = block.self_attn
        r, B, T, D = x.shape
        H, KV, dh = self.H, self.KV, self.dh
        h = block.input_layernorm(self._in(x)).reshape(r, B * T, D)
        projs = ((attn.q_proj, H), (attn.k_proj, KV), (attn.v_proj, KV))
        w = torch.cat([p.weight.view(n, dh, D) for p, n in projs]).transpose(1, 2)  # (r, D, dh)
        y = torch.bmm(h, w)
        if attn.q_proj.bias is not None:
            y = y + torch.cat([p.bias.view(n, 1, dh) for p, n in projs])
        q, k, v = y.view(r, B, T, dh).transpose(0, 1).split([H, KV, KV], dim=1)  # (B, n, T, dh)
        return self._rotate_attend_project(layer, q, k, v, key_mask)

    def attention_of_residual(self, layer: int, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The corrupted run's per-head outputs (H, B, T, D): the norm once on the residual and the block's own
        q/k/v projections, as the model itself runs, then each head through its columns of ``o_proj``."""
        block = self.inner.layers[layer]
        attn = block.self_attn
        B, T, _ = x.shape
        h = block.input_layernorm(self._in(x))
        q, k, v = (
            proj(h).view(B, T, n, self.dh).transpose(1, 2)
            for proj, n in ((attn.q_proj, self.H), (attn.k_proj, self.KV), (attn.v_proj, self.KV))
        )
        return self._rotate_attend_project(layer, q, k, v, key_mask)

    def _rotate_attend_project(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Head outputs (H, B, T, D) from projected q (B, H, T, dh), k and v (B, KV, T, dh): rotary positions,
        attention, then head h through its columns of ``o_proj`` (plus its bias / H, inside the product)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        attn = self.inner.layers[layer].self_attn
        _, H, T, dh = q.shape
        position_ids = torch.arange(T, device=self.device)[None]
        cos, sin = self.inner.rotary_emb(v, position_ids)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        z = self._attend(q, k, v, attn.scaling, key_mask)  # (B, H, T, dh)
        w_o = attn.o_proj.weight.view(self.D, H, dh).permute(1, 2, 0)  # (H, dh, D)
        return self._heads_through(z, w_o, attn.o_proj.bias)

    def _mlp_block(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        block = self.inner.layers[layer]
        return self._out(block.mlp(block.post_attention_layernorm(self._in(x))))

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self._maybe_checkpoint(self._mlp_block, layer, x)

    def readout(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.inner.norm(self._in(x))).float()
