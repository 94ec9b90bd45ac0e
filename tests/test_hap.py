"""HAP: masks exist only on the kept subgraph, and the circuit never leaves it."""

from __future__ import annotations

import pytest
import torch

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.attribution import edge_scores
from edgeprune.pruning.hap import hap, select_subgraph
from edgeprune.pruning.hard_concrete import MaskParameters
from edgeprune.pruning.train import PruneConfig, PruneData, Pruner
from tests.pruning_helpers import random_model

torch.set_num_threads(1)

FAST = dict(
    steps=40,
    batch_size=16,
    lr=0.5,
    lambda_lr=0.05,
    edge_target=1.02,
    per_example_masks=True,
    loss_scale=100.0,
    normalize_loss=True,
)


def _setup(seed: int = 0):
    ad = CompiledAdapter(random_model(seed, n_layers=2, n_heads=2, d_model=8))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 3, (16, 4), generator=g)
    ids[:, 0] = 3
    return ad, PruneData(ids=ids)


def test_masks_exist_only_for_the_subset_and_are_zero_elsewhere():
    ad, _ = _setup()
    g = ad.graph
    subset = g.edges[::3]
    masks = MaskParameters(g, edge_subset=subset)
    assert masks.edge_log_alpha.numel() == len(subset)
    assert masks.graph.edges == subset  # graph order kept
    dense = masks.dense(masks.sample()[0])
    allowed = torch.zeros_like(dense, dtype=torch.bool)
    for w, r in subset:
        allowed[g.writer_index[w], g.reader_index[r]] = True
    assert bool((dense[~allowed] == 0).all())
    assert bool((dense[allowed] > 0).any())
    # the same subset as a bool matrix gives the same parametrisation
    assert MaskParameters(g, edge_subset=allowed).graph.edges == subset


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hap_never_returns_an_edge_outside_its_subgraph(seed):
    ad, data = _setup(seed)
    res = hap(ad, data, PruneConfig(**FAST, seed=seed), keep_fraction=0.3)
    assert len(res.subset) == -(-3 * ad.graph.n_edges // 10)
    assert set(res.circuit.edges) <= set(res.subset)
    assert res.circuit.meta["method"] == "hap"


def test_pruning_confined_to_low_scoring_edges_stays_there():
    """Keep only the edges attribution ranks LOWEST: the loss wants the others, pruning cannot take them."""
    ad, data = _setup(4)
    scores = edge_scores(ad, data, "eap", "zero")
    worst = [e for e, _ in scores.ranked()[-15:]]
    cfg = PruneConfig(**{**FAST, "edge_target": 0.2})
    pruner = Pruner(ad, data, cfg, edge_subset=worst)
    circuit = pruner.run(progress=False).circuit
    assert set(circuit.edges) <= set(worst)
    assert set(pruner.masks.graph.edges) == set(worst)  # masks only there
    if not circuit.edges:  # the lowest-ranked edges need not connect an embedding to out: the cut says so
        assert "connect" in circuit.meta.get("cut_note", ""), circuit.meta


def test_subset_selection_and_bad_subsets():
    ad, data = _setup()
    s = edge_scores(ad, data, "eap", "zero")
    assert select_subgraph(s, edge_budget=5) == s.top_edges(5)
    assert len(select_subgraph(s, keep_fraction=1.0)) == ad.graph.n_edges
    with pytest.raises(EdgePruneError, match="not both"):
        select_subgraph(s, 0.5, 5)
    with pytest.raises(EdgePruneError, match=r"\(0, 1\]"):
        select_subgraph(s, keep_fraction=0.0)
    with pytest.raises(EdgePruneError, match="empty"):
        MaskParameters(ad.graph, edge_subset=[])
    with pytest.raises(EdgePruneError, match="not in the graph"):
        MaskParameters(ad.graph, edge_subset=[("m1", "a0.h0.q")])
    bad = torch.ones(len(ad.graph.writers), len(ad.graph.readers), dtype=torch.bool)
    with pytest.raises(EdgePruneError, match="not edges of the graph"):
        MaskParameters(ad.graph, edge_subset=bad)
    with pytest.raises(EdgePruneError, match="shape"):
        MaskParameters(ad.graph, edge_subset=bad[:, :3])


def test_without_a_subset_masks_are_unchanged():
    ad, _ = _setup()
    a = MaskParameters(ad.graph, generator=torch.Generator().manual_seed(0))
    b = MaskParameters(ad.graph, generator=torch.Generator().manual_seed(0), edge_subset=None)
    assert a.graph is b.graph
    torch.testing.assert_close(a.edge_log_alpha, b.edge_log_alpha)
