"""The one circuit scorer: KL of a circuit to the full model on fixed data, at the adapter's or the task's positions."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning import acdc
from edgeprune.pruning import objective as obj
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.scoring import CircuitScorer
from edgeprune.usecases.recovery import prepare

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reverse():
    model, _, data = prepare("reverse", "zero", 0)
    return CompiledAdapter(model), data


def _half_mask(g):
    m = g.allowed_mask().clone()
    m.view(-1)[::2] = 0.0  # every other edge dropped: a circuit with a clearly non-zero KL
    return m


def test_acdc_scores_with_the_one_scorer():
    assert acdc.FaithfulnessEvaluator is CircuitScorer


def test_full_circuit_scores_zero_and_empty_scores_the_most(reverse):
    ad, data = reverse
    sc = CircuitScorer(ad, data, "zero")
    g = ad.graph
    assert sc(g.allowed_mask()) == pytest.approx(0.0, abs=1e-6)
    assert sc.empty() > 1e-4
    assert 1e-4 < sc(_half_mask(g)) <= sc.empty() + 1e-9  # step-like compiled blocks: half may be as bad


def test_score_is_the_pruning_loss_and_does_not_depend_on_chunking(reverse):
    ad, data = reverse
    g = ad.graph
    mask = _half_mask(g)
    whole = CircuitScorer(ad, data, "zero")
    chunked = CircuitScorer(ad, data, "zero", batch_size=3)
    out = whole.outputs(mask)
    full = ad.full_output(data.ids, data.key_mask)
    expected = float(obj.faithfulness_loss("kl", full, out, ad.loss_mask(data.ids, data.key_mask)))
    assert whole(mask) == pytest.approx(expected, rel=1e-5)
    assert chunked(mask) == pytest.approx(expected, rel=1e-5)


def test_task_positions_agree_with_adapter_positions_when_they_are_the_same(reverse):
    """The language-model mode (cache log-probabilities at the task's positions only) is the same loss."""
    ad, data = reverse
    task = dataclasses.replace(data, loss_mask=ad.loss_mask(data.ids, data.key_mask))
    mask = _half_mask(ad.graph)
    a = CircuitScorer(ad, data, "zero")
    t = CircuitScorer(ad, task, "zero", scored="task", batch_size=5)
    assert t(mask) == pytest.approx(a(mask), rel=1e-5)
    assert t.empty() == pytest.approx(a.empty(), rel=1e-5)
    fewer = task.loss_mask.clone()
    fewer[:, 1:] = False  # fewer scored positions: less KL counted
    assert CircuitScorer(ad, dataclasses.replace(data, loss_mask=fewer), "zero", scored="task")(mask) < t(mask)


def test_bad_modes_are_refused(reverse):
    ad, data = reverse
    with pytest.raises(EdgePruneError, match="scored must be"):
        CircuitScorer(ad, data, "zero", scored="everywhere")  # type: ignore[arg-type]
    with pytest.raises(EdgePruneError, match="unknown ablation"):
        CircuitScorer(ad, data, "resample")
