"""ACDC on the engine's graph: tau = 0 keeps every edge that matters; order and extremes."""

from __future__ import annotations

import pytest
import torch

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.acdc import FaithfulnessEvaluator, acdc
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.train import PruneData
from edgeprune.usecases.recovery import prepare
from tests.pruning_helpers import random_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reverse():
    model, _, data = prepare("reverse", "zero", 0)
    return CompiledAdapter(model), data


def _single_removal_changes(ad, data, ablation):
    """Edges whose removal alone (from the full model) changes some decoded output."""
    ev = FaithfulnessEvaluator(ad, data, ablation)
    g = ad.graph
    full = g.allowed_mask()
    ref = ev.outputs(full)
    changed = []
    for w, r in g.edges:
        m = full.clone()
        m[g.writer_index[w], g.reader_index[r]] = 0
        out = ev.outputs(m)
        if ad.output_kind == "categorical":
            scored = ad.loss_mask(data.ids, data.key_mask)
            differs = bool((out.argmax(-1) != ref.argmax(-1))[scored].any())
        else:
            differs = bool(((out - ref).abs() > 1e-3).any())
        if differs:
            changed.append((w, r))
    return changed


def test_threshold_zero_keeps_every_edge_that_matters_on_reverse(reverse):
    ad, data = reverse
    res = acdc(ad, data, "zero", 0.0)
    needed = _single_removal_changes(ad, data, "zero")
    assert len(needed) >= 5  # the test has teeth: reverse has a real circuit
    assert set(needed) <= set(res.circuit.edges)
    assert res.metric == pytest.approx(0.0, abs=1e-6)  # tau = 0 never lets the KL rise
    assert len(res.circuit) < ad.graph.n_edges // 4  # and it does remove the irrelevant edges


def test_threshold_zero_on_a_random_model_keeps_every_edge_that_matters():
    model = random_model(3, n_layers=2, n_heads=2, d_model=8)
    ad = CompiledAdapter(model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 3, (16, 4), generator=g)
    ids[:, 0] = 3
    data = PruneData(ids=ids)
    res = acdc(ad, data, "zero", 0.0)
    needed = _single_removal_changes(ad, data, "zero")
    assert needed
    assert set(needed) <= set(res.circuit.edges)


def test_order_is_reverse_topological_and_huge_tau_removes_everything(reverse):
    ad, data = reverse
    res = acdc(ad, data, "zero", 1e9)
    assert len(res.circuit) == 0
    first = [tuple(e["edge"]) for e in res.log[:3]]
    assert first == [("m3", "out"), ("a3.h0", "out"), ("m2", "out")]
    # every tested reader comes no earlier in the reversed reader order than the one before it
    order = {r: i for i, r in enumerate(reversed(ad.graph.readers))}
    seen = [order[e["edge"][1]] for e in res.log]
    assert seen == sorted(seen)


def test_relative_threshold_recovers_the_reverse_ground_truth(reverse):
    from edgeprune.compiled.ground_truth import ground_truth
    from edgeprune.verify.compare import compare

    ad, data = reverse
    res = acdc(ad, data, "zero", 1e-4, relative=True)
    assert res.threshold == pytest.approx(1e-4 * res.empty_metric)
    assert compare(res.circuit, ground_truth(ad.model, "zero")).exact


def test_negative_threshold_is_refused(reverse):
    ad, data = reverse
    with pytest.raises(EdgePruneError, match=">= 0"):
        acdc(ad, data, "zero", -1.0)
