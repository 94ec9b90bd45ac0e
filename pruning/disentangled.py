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
    """(n, B, T, D) x (n, r) -> (r, B, T, D): one contraction over the writer axis.

    With per-example masks ``cols`` is (B, n, r) and the contraction is one batched product.
    """
    n, B = delta.shape[0], delta.shape[1]
    if cols.dim() == 2:
        return (cols.transpose(0, 1) @ delta.reshape(n, -1)).reshape(cols.shape[1], *delta.shape[1:])
    x = torch.bmm(cols.transpose(1, 2), delta.transpose(0, 1).reshape(B, n, -1))  # (B, r, T*D)
    return x.transpose(0, 1).reshape(cols.shape[2], *delta.shape[1:])


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
        if node_mask is None:
            node_mask = edge_mask.new_ones(W)
        nz = node_mask[:, None, None, None] if node_mask.dim() == 1 else node_mask.T[:, :, None, None]
        emb = torch.stack(ad.embed(ids))
        if ablated is not None:
            emb = emb - ablated.states[: self.n_emb]
        delta = emb * nz[: self.n_emb]
        for layer, (n_in, q0, m) in enumerate(self.layers):
            x = _mix(delta, edge_mask[..., :n_in, q0:m])
            if ablated is not None:
                x = x + ablated.prefix[n_in]
            xq, xk, xv = x[:H], x[H:H + KV], x[H + KV:]
            heads = ad.attention(layer, xq.transpose(0, 1), xk.transpose(0, 1), xv.transpose(0, 1), key_mask)
            hd = heads.transpose(0, 1)
            if ablated is not None:
                hd = hd - ablated.states[n_in:n_in + H]
            delta = torch.cat([delta, hd * nz[n_in:n_in + H]])
            xm = _mix(delta, edge_mask[..., :n_in + H, m:m + 1])[0]
            if ablated is not None:
                xm = xm + ablated.prefix[n_in + H]
            y = ad.mlp(layer, xm)
            if ablated is not None:
                y = y - ablated.states[n_in + H]
            delta = torch.cat([delta, (y * nz[n_in + H]).unsqueeze(0)])
        x = _mix(delta, edge_mask[..., :, self.out_index:self.out_index + 1])[0]
        if ablated is not None:
            x = x + ablated.prefix[W]
        return x

    def output(self, ids, edge_mask, node_mask=None, ablated=None, key_mask=None) -> torch.Tensor:
        """The task output (logits or values) of the masked model."""
        return self.adapter.readout(self(ids, edge_mask, node_mask, ablated, key_mask))
