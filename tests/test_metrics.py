"""The paper's metrics on small hand-computed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning import metrics as M
from edgeprune.pruning.tasks.base import TaskBatch


def _batch(
    n: int,
    t: int,
    positions: list[list[int]],
    labels: list[list[int]] | None = None,
    targets: list[int] | None = None,
    distractors: list[int] | None = None,
    class_ids: list[int] | None = None,
    yy: list[int] | None = None,
) -> TaskBatch:
    loss = torch.zeros(n, t, dtype=torch.bool)
    lab = torch.full((n, t), -100, dtype=torch.long)
    for i, ps in enumerate(positions):
        for j, p in enumerate(ps):
            loss[i, p] = True
            if labels is not None:
                lab[i, p] = labels[i][j]
    fill = lambda v: torch.tensor(v if v is not None else [-1] * n, dtype=torch.long)  # noqa: E731
    return TaskBatch(
        clean_ids=torch.zeros(n, t, dtype=torch.long),
        corrupted_ids=torch.zeros(n, t, dtype=torch.long),
        attention_mask=torch.ones(n, t, dtype=torch.bool),
        loss_mask=loss,
        labels=lab,
        positions=torch.tensor([ps[0] for ps in positions]),
        target_ids=fill(targets),
        distractor_ids=fill(distractors),
        class_labels=fill(yy),
        class_ids=None if class_ids is None else torch.tensor(class_ids),
    )


def test_kl_zero_for_identical_and_hand_value() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    b = _batch(2, 3, [[1], [0, 2]])
    assert torch.allclose(M.kl_divergence(logits, logits.clone(), b), torch.zeros(2), atol=1e-6)
    # Two-token vocabulary: p_full = (0.5, 0.5), p_circ = (0.8, 0.2) at the one loss position.
    full = torch.zeros(1, 2, 2)
    circ = torch.zeros(1, 2, 2)
    circ[0, 1] = torch.log(torch.tensor([0.8, 0.2]))
    b1 = _batch(1, 2, [[1]])
    expected = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    assert M.kl_divergence(full, circ, b1).item() == pytest.approx(expected, rel=1e-5)
    # Differences outside the loss positions do not count; positions are averaged.
    b2 = _batch(1, 2, [[0, 1]])
    assert M.kl_divergence(full, circ, b2).item() == pytest.approx(expected / 2, rel=1e-5)
    circ.requires_grad_(True)
    M.kl_divergence(full, circ, b1).sum().backward()  # usable as a training loss
    assert circ.grad is not None and circ.grad.abs().sum() > 0


def test_logit_and_probability_difference() -> None:
    circ = torch.zeros(2, 2, 4)
    circ[0, 1] = torch.tensor([3.0, 1.0, 0.0, 0.0])  # target 0 beats distractor 1 by 2
    circ[1, 0] = torch.tensor([0.0, 0.0, 0.5, 2.0])  # target 2 loses to distractor 3 by 1.5
    b = _batch(2, 2, [[1], [0]], targets=[0, 2], distractors=[1, 3])
    ld = M.logit_difference(circ, circ, b)
    assert ld.tolist() == pytest.approx([2.0, -1.5])
    p0 = torch.softmax(circ[0, 1], -1)
    p1 = torch.softmax(circ[1, 0], -1)
    pd = M.probability_difference(circ, circ, b)
    assert pd.tolist() == pytest.approx([(p0[0] - p0[1]).item(), (p1[2] - p1[3]).item()], rel=1e-5)
    with pytest.raises(EdgePruneError, match="distractor"):
        M.logit_difference(circ, circ, _batch(2, 2, [[1], [0]]))


def _gt_batch(yy: int, k: int = 100) -> TaskBatch:
    # vocabulary of k + 3 tokens, the year classes are ids 3..k+2
    return _batch(1, 1, [[0]], class_ids=list(range(3, k + 3)), yy=[yy])


def test_gt_probability_differences() -> None:
    yy = 40
    logits = torch.full((1, 1, 103), -1e4)
    logits[0, 0, :3] = 50.0  # mass outside the classes is ignored (restricted softmax)
    probs = torch.zeros(100)
    probs[35], probs[40], probs[45], probs[60], probs[5] = 0.1, 0.2, 0.3, 0.3, 0.1
    logits[0, 0, 3:] = torch.log(probs.clamp_min(1e-30))
    b = _gt_batch(yy)
    assert M.probability_difference(logits, logits, b).item() == pytest.approx((0.3 + 0.3) - (0.1 + 0.1), abs=1e-5)
    assert M.probability_difference_10(logits, logits, b).item() == pytest.approx(0.3 - 0.1, abs=1e-5)
    # Near the edges the windows clip at 00 and 99.
    lo = _gt_batch(3)  # classes above 3 within 10: none with mass except 5 -> +0.1; below: none
    assert M.probability_difference_10(logits, logits, lo).item() == pytest.approx(0.1, abs=1e-5)
    hi = _gt_batch(95)  # everything with mass is below; window 85..94 holds nothing
    assert M.probability_difference_10(logits, logits, hi).item() == pytest.approx(0.0, abs=1e-5)
    assert M.probability_difference(logits, logits, hi).item() == pytest.approx(-1.0, abs=1e-5)
    # GT accuracy: the argmax year (45 or 60) exceeds YY
    assert M.accuracy(logits, logits, b).item() == 1.0
    assert M.accuracy(logits, logits, hi).item() == 0.0
    with pytest.raises(EdgePruneError, match="Greater-Than"):
        M.probability_difference_10(logits, logits, _batch(1, 1, [[0]]))


def test_exact_match_and_accuracy() -> None:
    full = torch.zeros(3, 3, 4)
    circ = torch.zeros(3, 3, 4)
    full[:, :, 1] = 1.0  # full model predicts token 1 everywhere
    circ[:, :, 1] = 1.0
    circ[1, 2, 3] = 5.0  # example 1 disagrees at position 2 (a loss position)
    circ[2, 0, 3] = 5.0  # example 2 disagrees at position 0 (not a loss position)
    b = _batch(3, 3, [[1, 2], [1, 2], [1]], labels=[[1, 1], [1, 1], [2]])
    assert M.exact_match(full, circ, b).tolist() == [1.0, 0.0, 1.0]
    assert M.accuracy(full, circ, b).tolist() == [1.0, 0.0, 0.0]  # example 2's label is 2, predicted 1
    assert M.accuracy(full, full, b).tolist() == [1.0, 1.0, 0.0]


def test_kendall_tau_extremes_and_scipy() -> None:
    x = torch.arange(100, dtype=torch.float64)[None]
    assert M.kendall_tau_b(x, x.clone()).item() == pytest.approx(1.0)
    assert M.kendall_tau_b(x, x.flip(-1)).item() == pytest.approx(-1.0)
    assert M.kendall_tau_b(x, 2 * x + 3).item() == pytest.approx(1.0)  # ranks, not values
    # Via the metric: identical / reversed probability rankings over the 100 classes.
    logits = torch.zeros(1, 1, 103)
    logits[0, 0, 3:] = torch.linspace(-3, 3, 100)
    rev = logits.clone()
    rev[0, 0, 3:] = torch.linspace(3, -3, 100)
    b = _gt_batch(50)
    assert M.kendall_tau(logits, logits, b).item() == pytest.approx(1.0)
    assert M.kendall_tau(logits, rev, b).item() == pytest.approx(-1.0)
    scipy_stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 5, (3, 30), generator=gen).double()  # many ties: checks the tau-b correction
    c = torch.randint(0, 5, (3, 30), generator=gen).double()
    ours = M.kendall_tau_b(a, c)
    for i in range(3):
        assert ours[i].item() == pytest.approx(scipy_stats.kendalltau(a[i].numpy(), c[i].numpy())[0], abs=1e-10)
    assert math.isnan(M.kendall_tau_b(torch.ones(1, 5), torch.arange(5.0)[None]).item())


def test_evaluate_and_shape_errors() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6)
    b = _batch(2, 3, [[2], [1]], labels=[[0], [1]], targets=[0, 1], distractors=[1, 0])
    out = M.evaluate(logits, logits, b, task="ioi")
    assert set(out) == {"kl", "logit_diff", "exact_match", "accuracy"}
    assert out["kl"] == pytest.approx(0.0, abs=1e-6) and out["exact_match"] == 1.0
    with pytest.raises(EdgePruneError, match="unknown metric"):
        M.evaluate(logits, logits, b, metrics=("bleu",))
    with pytest.raises(EdgePruneError, match="differ in shape"):
        M.kl_divergence(logits, logits[:, :2], b)
    with pytest.raises(EdgePruneError, match="do not match"):
        M.kl_divergence(logits[:1], logits[:1], b)
