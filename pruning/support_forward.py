"""The disentangled forward of a compiled model, mixed per residual direction instead of per writer.

Why: a compiled (Tracr-style) block writes only its own output directions, so at a
residual direction ``d`` at most one or two writers are ever non-zero.  A reader's mixed
input ``sum_w z_wr y_w`` is then, at ``d``, just ``z_{owner(d) r} y_owner(d)``: one
elementwise product per reader over the running residual of deltas, instead of a
(readers x writers) matrix product over ``B*T*D`` values per reader group (that product
was most of a recovery step).  Directions two writers share (a SelectorWidth's attention
scratch direction, which its MLP cleans up) keep the second writer's part in a few extra
columns added back with ``index_add``.  The values equal ``DisentangledForward``'s: the
terms left out are exact zeros.  Used only when every writer's support is known from the
weights (``compiled_supports``); any other adapter keeps ``DisentangledForward``.
"""

from __future__ import annotations

import torch

from edgeprune.pruning.adapter import ModelAdapter, at_positions
from edgeprune.pruning.disentangled import AblatedStates, effective_edge_mask


@torch.no_grad()
def compiled_supports(adapter: ModelAdapter) -> torch.Tensor | None:
    """(W, D) bool: the residual directions each writer can write, from a compiled model's weights; None when the
    adapter is not a compiled model (its blocks may write anywhere)."""
    from edgeprune.compiled.model import CompiledTransformer

    model = getattr(adapter, "model", None)
    if not isinstance(model, CompiledTransformer):
        return None
    g = adapter.graph
    c = model.config
    if (
        tuple(g.embeddings) != ("tok", "pos")
        or g.n_layers != c.n_layers
        or g.n_heads != c.n_heads
        or g.kv_heads != c.n_heads
    ):
        return None
    rows = [(model.token_embed != 0).any(0), (model.pos_embed != 0).any(0)]
    for layer in range(c.n_layers):
        bias = model.b_O[layer] != 0
        rows += [(model.W_O[layer, h] != 0).any(0) | bias for h in range(c.n_heads)]
        rows.append((model.W_2[layer] != 0).any(0) | (model.b_2[layer] != 0))
    supports = torch.stack(rows)
    if supports.shape[0] != len(g.writers):
        return None
    return supports


class SupportForward:
    """Same interface and values as ``DisentangledForward`` (all writers live), for writers with known supports."""

    def __init__(self, adapter: ModelAdapter, supports: torch.Tensor):
        self.adapter = adapter
        g = adapter.graph
        self.graph = g
        W, D = supports.shape
        self.n_emb = len(g.embeddings)
        owner = torch.full((D,), W, dtype=torch.long)  # W: the zero row appended to the mask (no writer)
        extra_dim: list[int] = []
        extra_owner: list[int] = []
        for d in range(D):
            ws = supports[:, d].nonzero().flatten().tolist()
            if ws:
                owner[d] = ws[0]
                extra_dim += [d] * (len(ws) - 1)
                extra_owner += ws[1:]
        self.owner = owner
        self.extra_dim = torch.tensor(extra_dim, dtype=torch.long)
        self.extra_owner = torch.tensor(extra_owner, dtype=torch.long)
        # per writer: None when it owns every direction it writes (its delta is added as it is), else the 0/1
        # selections of its primary directions and of its extra columns
        self.select: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for w in range(W):
            if bool((supports[w] <= (owner == w)).all()):
                self.select.append(None)
            else:
                self.select.append(((owner == w).float(), (self.extra_owner == w).float()))
        self.layers = []
        for layer in range(g.n_layers):
            q0 = g.reader_index[f"a{layer}.h0.q"]
            m = g.reader_index[f"m{layer}"]
            self.layers.append((g.n_writers_before_layer(layer), q0, m))
        self.out_index = g.reader_index["out"]

    def __call__(
        self,
        ids: torch.Tensor,
        edge_mask: torch.Tensor,
        node_mask: torch.Tensor | None = None,
        ablated: AblatedStates | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        g, ad = self.graph, self.adapter
        H = g.n_heads
        W = len(g.writers)
        per_example = edge_mask.dim() == 3
        edge_mask = effective_edge_mask(edge_mask, node_mask)  # node gates on the mask rows, as DisentangledForward
        states = ablated.states if ablated is not None else None
        emb = torch.stack(ad.embed(ids), 1)  # (B, n_emb, T, D)
        edge_mask = edge_mask.to(emb.device)
        if states is not None:
            emb = emb - states[: self.n_emb].transpose(0, 1)
        # the mask at each direction's owner: (B, D, R) or (D, R); extra columns (B, E, R) or (E, R)
        padded = torch.cat([edge_mask, edge_mask.new_zeros(edge_mask.shape[:-2] + (1, edge_mask.shape[-1]))], -2)
        owner, extra_dim = self.owner.to(emb.device), self.extra_dim.to(emb.device)
        m0 = padded.index_select(-2, owner)
        mE = padded.index_select(-2, self.extra_owner.to(emb.device)) if len(extra_dim) else None
        res: list[torch.Tensor | None] = [None, None]  # running residual of deltas (B, T, D), extra (B, T, E)

        def write(w: int, delta: torch.Tensor) -> None:
            sel = self.select[w]
            main = delta if sel is None else delta * sel[0].to(delta.device)
            res[0] = main if res[0] is None else res[0] + main
            if sel is not None and mE is not None:
                part = delta.index_select(-1, extra_dim) * sel[1].to(delta.device)
                res[1] = part if res[1] is None else res[1] + part

        def mix(a: int, b: int) -> torch.Tensor:
            """(B, b - a, T, D): the inputs of readers a..b."""
            cols = m0[..., a:b].transpose(-1, -2)  # (B, r, D) or (r, D)
            base = res[0]
            assert base is not None
            x = base.unsqueeze(1) * (cols.unsqueeze(-2) if per_example else cols[None, :, None, :])
            if mE is not None and res[1] is not None:
                ce = mE[..., a:b].transpose(-1, -2)
                xe = res[1].unsqueeze(1) * (ce.unsqueeze(-2) if per_example else ce[None, :, None, :])
                x.index_add_(-1, extra_dim, xe)  # in place: x is the product's fresh output, never saved by it
            return x

        for i in range(self.n_emb):
            write(i, emb[:, i])
        KV = g.kv_heads
        for layer, (n_in, q0, m) in enumerate(self.layers):
            x = mix(q0, m)
            if ablated is not None:
                x = x + ablated.prefix[n_in].unsqueeze(1)
            xq, xk, xv = torch.split(x, [H, KV, KV], dim=1)
            heads = ad.attention(layer, xq, xk, xv, key_mask)  # (B, H, T, D)
            if states is not None:
                heads = heads - states[n_in : n_in + H].transpose(0, 1)
            for h in range(H):
                write(n_in + h, heads[:, h])
            xm = mix(m, m + 1).select(1, 0)
            if ablated is not None:
                xm = xm + ablated.prefix[n_in + H]
            y = ad.mlp(layer, xm)
            if states is not None:
                y = y - states[n_in + H]
            write(n_in + H, y)
        x = mix(self.out_index, self.out_index + 1).select(1, 0)
        if ablated is not None:
            x = x + ablated.prefix[W]
        return x

    def output(self, ids, edge_mask, node_mask=None, ablated=None, key_mask=None, positions=None) -> torch.Tensor:
        """The task output (logits or values) of the masked model; at ``positions`` (B, K) only when given."""
        return self.adapter.readout(at_positions(self(ids, edge_mask, node_mask, ablated, key_mask), positions))
