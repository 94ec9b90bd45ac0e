"""Gradients of the in-place writer buffer (custom autograd) against a plain-autograd reference forward.

The fast forward writes every writer's delta into one preallocated buffer and hands gradients
back through its own backward; this checks those gradients, for edge masks and node masks,
shared and per-example, zero and interchange ablation, against an obvious implementation that
stacks the deltas with ordinary differentiable ops.
"""

from __future__ import annotations

import pytest
import torch

from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states
from tests.pruning_helpers import random_model


def reference_forward(ad, ids, edge_mask, node_mask, ablation, corr):
    """x_out by the textbook formula, every reader mixing a freshly stacked list of writer deltas."""
    g = ad.graph
    H, KV = g.n_heads, g.kv_heads
    per_example = edge_mask.dim() == 3
    states = ad.writer_outputs(corr) if ablation == "interchange" else None

    def nz(i):  # (B or 1, 1, 1)
        return node_mask[:, i, None, None] if node_mask.dim() == 2 else node_mask[i]

    deltas = []
    for i, y in enumerate(ad.embed(ids)):
        deltas.append((y - (states[i] if states is not None else 0)) * nz(i))

    def read(n, col):
        m = edge_mask[..., :n, col]  # (n,) or (B, n)
        stacked = torch.stack(deltas[:n], 1)  # (B, n, T, D)
        w = m[:, :, None, None] if per_example else m[None, :, None, None]
        x = (stacked * w).sum(1)
        return x + (states[:n].sum(0) if states is not None else 0)

    for layer in range(g.n_layers):
        n_in = g.n_writers_before_layer(layer)
        q_readers = [r for r in g.readers if r.startswith(f"a{layer}.") and r.endswith(".q")]
        q = torch.stack([read(n_in, g.reader_index[r]) for r in q_readers], 1)
        k = torch.stack([read(n_in, g.reader_index[r]) for r in g.kv_reader_names(layer, "k")], 1)
        v = torch.stack([read(n_in, g.reader_index[r]) for r in g.kv_reader_names(layer, "v")], 1)
        heads = ad.attention(layer, q, k, v)
        for h in range(H):
            deltas.append((heads[:, h] - (states[n_in + h] if states is not None else 0)) * nz(n_in + h))
        y = ad.mlp(layer, read(n_in + H, g.reader_index[f"m{layer}"]))
        deltas.append((y - (states[n_in + H] if states is not None else 0)) * nz(n_in + H))
    assert KV == H
    return read(len(g.writers), g.reader_index["out"])


@pytest.mark.parametrize("per_example", [False, True])
@pytest.mark.parametrize("ablation", ["zero", "interchange"])
def test_mask_gradients_match_plain_autograd(per_example, ablation):
    model = random_model(11, n_layers=3, n_heads=2, layer_norm=True)
    ad = CompiledAdapter(model)
    g = ad.graph
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 3, (3, 5), generator=gen)
    corr = torch.randint(0, 3, (3, 5), generator=gen)
    ids[:, 0] = corr[:, 0] = 3
    allowed = g.allowed_mask()
    shape = (3, *allowed.shape) if per_example else allowed.shape
    edge = (torch.rand(shape, generator=gen) * allowed).requires_grad_(True)
    node = torch.rand((3, len(g.writers)) if per_example else (len(g.writers),), generator=gen).requires_grad_(True)
    weights = torch.randn(3, 5, model.config.d_model, generator=gen)

    fast = DisentangledForward(ad)(ids, edge, node, ablated_states(ad, ablation, ids, corr))
    ge_fast, gn_fast = torch.autograd.grad((fast * weights).sum(), (edge, node))
    slow = reference_forward(ad, ids, edge, node, ablation, corr)
    ge_slow, gn_slow = torch.autograd.grad((slow * weights).sum(), (edge, node))

    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=1e-4)
    assert ge_slow.abs().max() > 0 and gn_slow.abs().max() > 0
    torch.testing.assert_close(ge_fast * allowed, ge_slow * allowed, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gn_fast, gn_slow, atol=1e-4, rtol=1e-4)


def _folded_layers(fwd: DisentangledForward) -> list[int]:
    g = fwd.graph
    return [
        layer for layer, p in enumerate(fwd.layers) if p.heads and fwd._folded(layer, p, g.n_heads + 2 * g.kv_heads)
    ]


@pytest.mark.parametrize("which", ["gpt2", "llama"])
@pytest.mark.parametrize("ablation", ["zero", "interchange", "mean"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_folded_mixes_give_the_unfolded_values_and_gradients(which, ablation, checkpointing, monkeypatch):
    """A layer's MLP and ``out`` mixed partly inside the layer's attention product (shared masks) give the
    values and edge/node gradients of their own full mixes, under every ablation and with checkpointing."""
    from edgeprune.pruning.adapters.hf_loading import adapter_for
    from edgeprune.pruning.disentangled import data_means
    from tests.hf_helpers import tiny_gpt2, tiny_llama

    model = (
        tiny_gpt2(40, n_layer=4, n_head=2, n_embd=16) if which == "gpt2" else tiny_llama(40, 2, 1, layers=4, hidden=16)
    )
    model = model.eval().requires_grad_(False)
    ad = adapter_for(model, gradient_checkpointing=checkpointing, freeze=True)
    g = ad.graph
    gen = torch.Generator().manual_seed(3)
    ids, corr = torch.randint(0, 40, (3, 6), generator=gen), torch.randint(0, 40, (3, 6), generator=gen)
    means = data_means(ad, type("Data", (), {"ids": corr, "key_mask": None})(), ablation)
    ablated = ablated_states(ad, ablation, ids, corr, means=means)
    allowed = g.allowed_mask()
    results = []
    for fold in (True, False):
        fwd = DisentangledForward(ad)
        if fold:
            assert _folded_layers(fwd), "the test model must be deep enough for a layer to fold"
        else:
            monkeypatch.setattr(fwd, "_folded", lambda *a: [])
            assert not _folded_layers(fwd)
        edge = (torch.rand(allowed.shape, generator=torch.Generator().manual_seed(5)) * allowed).requires_grad_(True)
        node = torch.rand(len(g.writers), generator=torch.Generator().manual_seed(6)).requires_grad_(True)
        out = fwd.output(ids, edge, node, ablated)
        out.logsumexp(-1).sum().backward()
        results.append((out.detach(), edge.grad, node.grad))
    (o1, e1, n1), (o2, e2, n2) = results
    assert e2.abs().sum() > 0 and n2.abs().sum() > 0
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e1 * allowed, e2 * allowed, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(n1, n2, atol=1e-5, rtol=1e-4)
