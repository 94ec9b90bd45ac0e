"""EAP / EAP-IG scores against finite differences, IG completeness, and the cuts into circuits."""

from __future__ import annotations

import pytest
import torch

from edgeprune.core.dangling import prune_dangling
from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.attribution import circuit_mask, edge_scores, make_metric
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states
from edgeprune.pruning.train import PruneData
from tests.pruning_helpers import random_model

torch.set_num_threads(1)


def _setup(categorical: bool, seed: int = 0):
    model = random_model(seed, n_layers=2, n_heads=2, d_model=8, categorical=categorical).double()
    ad = CompiledAdapter(model)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 3, (12, 4), generator=g)
    ids[:, 0] = 3  # BOS
    corr = torch.randint(0, 3, (12, 4), generator=g)
    corr[:, 0] = 3
    return ad, PruneData(ids=ids, corrupted=corr)


def _metric_at(ad, data, ablation, metric, mask):
    fn = make_metric(metric, ad, data, ablation)
    ablated = ablated_states(ad, ablation, data.ids, data.corrupted)
    with torch.no_grad():
        out = DisentangledForward(ad).output(data.ids, mask, None, ablated)
    return float(fn(out, torch.arange(len(data)))) / len(data)


@pytest.mark.parametrize(
    "categorical,ablation", [(True, "zero"), (True, "interchange"), (False, "zero"), (False, "interchange")]
)
def test_eap_equals_finite_difference_of_each_edge(categorical, ablation):
    ad, data = _setup(categorical)
    s = edge_scores(ad, data, "eap", ablation, "answer")
    g = ad.graph
    full = g.allowed_mask().double()
    h = 1e-5
    fd = []
    for w, r in g.edges:
        up, down = full.clone(), full.clone()
        up[g.writer_index[w], g.reader_index[r]] += h
        down[g.writer_index[w], g.reader_index[r]] -= h
        fd.append(
            (_metric_at(ad, data, ablation, "answer", up) - _metric_at(ad, data, ablation, "answer", down)) / (2 * h)
        )
    fd = torch.tensor(fd, dtype=torch.float64)
    assert fd.abs().max() > 1e-2  # the model is not flat: the comparison means something
    torch.testing.assert_close(s.scores, fd, rtol=1e-3, atol=1e-5)


def test_eap_ig_sums_to_the_metric_change_and_one_step_is_eap():
    ad, data = _setup(True, seed=1)
    ig = edge_scores(ad, data, "eap-ig", "interchange", "kl", steps=64)
    g = ad.graph
    change = _metric_at(ad, data, "interchange", "kl", g.allowed_mask().double()) - _metric_at(
        ad, data, "interchange", "kl", torch.zeros_like(g.allowed_mask()).double()
    )
    assert abs(change) > 1e-2
    assert float(ig.scores.sum()) == pytest.approx(change, rel=0.05)
    one = edge_scores(ad, data, "eap-ig", "zero", "answer", steps=1)
    eap = edge_scores(ad, data, "eap", "zero", "answer")
    torch.testing.assert_close(one.scores, eap.scores)


def test_cuts_rank_by_absolute_score_and_drop_dangling_edges():
    ad, data = _setup(True)
    s = edge_scores(ad, data, "eap", "zero")
    order = s.scores.abs().argsort(descending=True)
    top = [ad.graph.edges[i] for i in order[:10].tolist()]
    assert s.top_edges(10) == top
    assert set(s.top_k(10).edges) == prune_dangling(top)
    assert len(s.at_sparsity(1.0)) == 0
    assert set(s.at_sparsity(0.0).edges) == prune_dangling(ad.graph.edges)
    biggest = float(s.scores.abs().max())
    assert set(s.above(0.5, relative=True).edges) == prune_dangling(
        [e for e, v in zip(ad.graph.edges, s.scores.tolist()) if abs(v) > 0.5 * biggest]
    )
    ranked = s.ranked()
    assert [abs(v) for _, v in ranked] == sorted((abs(v) for _, v in ranked), reverse=True)


def test_bad_requests_are_refused_with_the_fix():
    ad, data = _setup(True)
    with pytest.raises(EdgePruneError, match="flat"):
        edge_scores(ad, data, "eap", "zero", "kl")
    with pytest.raises(EdgePruneError, match="unknown attribution method"):
        edge_scores(ad, data, "ig", "zero")
    with pytest.raises(EdgePruneError, match="interchange ablation needs corrupted"):
        edge_scores(ad, PruneData(ids=data.ids), "eap", "interchange")
    with pytest.raises(EdgePruneError, match="not in the graph"):
        circuit_mask(ad.graph, [("m1", "a0.h0.q")])
