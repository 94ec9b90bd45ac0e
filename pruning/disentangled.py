"""The disentangled residual stream: every reader mixes the writers through its own edge masks.

For a reader r, ``x_r = sum_w z_wr y_w + (1 - z_wr) y~_w`` with ``y~`` the ablated
output (0, or the writer's output on the corrupted input).  Rewritten as
``x_r = sum_w y~_w + sum_w z_wr (y_w - y~_w)``: the first sum is a prefix sum of
the ablated writers, computed once per batch; the second is ONE matrix product
per reader group (a layer's q/k/v readers together, its MLP, ``out``) between the
stacked writer deltas (n_writers_so_far, B*T*D) and that group's mask columns.
Node masks scale a writer's delta, so the effective edge mask is ``z_wr * z_w``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.errors import EdgePruneError
from pruning.adapter import ModelAdapter

ABLATIONS = ("zero", "interchange")


@dataclass
class AblatedStates:
    """Writer outputs of the plain model on the corrupted input, and their prefix sums."""

    states: torch.Tensor  # (W, B, T, D)
    prefix: torch.Tensor  # (W + 1, B, T, D); prefix[k] = sum of states[:k]


@torch.no_grad()
def ablated_states(adapter: ModelAdapter, ablation: str, ids: torch.Tensor, corrupted_ids: torch.Tensor | None,
                   key_mask: torch.Tensor | None = None) -> AblatedStates | None:
    """Corrupted activations for one batch (None under zero ablation); computed without gradients."""
    if ablation not in ABLATIONS:
        raise EdgePruneError(f"unknown ablation {ablation!r}; use one of {', '.join(ABLATIONS)}")
    if ablation == "zero":
        return None
    if corrupted_ids is None:
        raise EdgePruneError("interchange ablation needs corrupted inputs; give a corruption for every clean input")
    if tuple(corrupted_ids.shape) != tuple(ids.shape):
        raise EdgePruneError(
            f"corrupted inputs have shape {tuple(corrupted_ids.shape)} but clean inputs {tuple(ids.shape)}: "
            "each corruption must have the same length as its clean input"
        )
    states = adapter.writer_outputs(corrupted_ids, key_mask)
    prefix = torch.cat([torch.zeros_like(states[:1]), states.cumsum(0)])
    return AblatedStates(states, prefix)


def _mix(delta: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Shared mask: delta (n, B, T, D) x cols (n, r) -> (r, B, T, D), one matrix product.

    Per-example masks: delta (B, n, T, D) x cols (B, n, r) -> (B, r, T, D), one batched product.
    """
    if cols.dim() == 2:
        n = delta.shape[0]
        return (cols.transpose(0, 1) @ delta.reshape(n, -1)).reshape(cols.shape[1], *delta.shape[1:])
    B, n = delta.shape[0], delta.shape[1]
    return torch.bmm(cols.transpose(1, 2), delta.reshape(B, n, -1)).reshape(B, cols.shape[2], *delta.shape[2:])


class DisentangledForward:
    """The fast masked forward of any adapter; ``__call__`` returns the mixed input of ``out`` (B, T, D)."""

    def __init__(self, adapter: ModelAdapter):
        self.adapter = adapter
        g = adapter.graph
        self.graph = g
        self.n_emb = len(g.embeddings)
        self.layers = []
        for layer in range(g.n_layers):
            q0 = g.reader_index[f"a{layer}.h0.q"]
            n_attn_readers = g.n_heads + 2 * g.kv_heads
            m = g.reader_index[f"m{layer}"]
            assert m == q0 + n_attn_readers
            self.layers.append((g.n_writers_before_layer(layer), q0, m))
        self.out_index = g.reader_index["out"]

    def __call__(self, ids: torch.Tensor, edge_mask: torch.Tensor, node_mask: torch.Tensor | None = None,
                 ablated: AblatedStates | None = None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_mask`` is dense (W, R) (zeros outside allowed edges) or per example (B, W, R);
        ``node_mask`` (W,) or (B, W), or None for all ones."""
        g, ad = self.graph, self.adapter
        H, KV = g.n_heads, g.kv_heads
        W = len(g.writers)
        per_example = edge_mask.dim() == 3
        # writer axis: 0 with a shared mask, 1 (after the batch) with per-example masks
        ax = 1 if per_example else 0
        if node_mask is None:
            node_mask = edge_mask.new_ones(W)
        if node_mask.dim() == 1:
            nz = node_mask[:, None, None, None] if not per_example else node_mask[None, :, None, None]
        else:
            nz = node_mask[:, :, None, None] if per_example else node_mask.T[:, :, None, None]

        def writers(t: torch.Tensor) -> torch.Tensor:  # (k, B, T, D) in the working layout
            return t.transpose(0, 1) if per_example else t

        def nz_slice(a: int, b: int) -> torch.Tensor:
            return nz[:, a:b] if per_example else nz[a:b]

        states = ablated.states if ablated is not None else None
        emb = torch.stack(ad.embed(ids))
        if states is not None:
            emb = emb - states[: self.n_emb]
        delta = writers(emb) * nz_slice(0, self.n_emb)
        for layer, (n_in, q0, m) in enumerate(self.layers):
            x = _mix(delta, edge_mask[..., :n_in, q0:m])  # (B, r, T, D) or (r, B, T, D)
            if not per_example:
                x = x.transpose(0, 1)
            if ablated is not None:
                x = x + ablated.prefix[n_in].unsqueeze(1)
            heads = ad.attention(layer, x[:, :H], x[:, H:H + KV], x[:, H + KV:], key_mask)  # (B, H, T, D)
            if states is not None:
                heads = heads - states[n_in:n_in + H].transpose(0, 1)
            delta = torch.cat([delta, (heads if per_example else heads.transpose(0, 1)) * nz_slice(n_in, n_in + H)], ax)
            xm = _mix(delta, edge_mask[..., :n_in + H, m:m + 1]).select(ax, 0)
            if ablated is not None:
                xm = xm + ablated.prefix[n_in + H]
            y = ad.mlp(layer, xm)
            if states is not None:
                y = y - states[n_in + H]
            delta = torch.cat([delta, y.unsqueeze(ax) * nz_slice(n_in + H, n_in + H + 1)], ax)
        x = _mix(delta, edge_mask[..., :, self.out_index:self.out_index + 1]).select(ax, 0)
        if ablated is not None:
            x = x + ablated.prefix[W]
        return x

    def output(self, ids, edge_mask, node_mask=None, ablated=None, key_mask=None) -> torch.Tensor:
        """The task output (logits or values) of the masked model."""
        return self.adapter.readout(self(ids, edge_mask, node_mask, ablated, key_mask))
