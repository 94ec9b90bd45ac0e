"""Hard-concrete gates: range, closed-form L0 vs Monte Carlo, deterministic mask, dense scatter."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprune.core.graph import ComputationalGraph
from edgeprune.pruning.hard_concrete import (
    DEFAULT,
    MaskParameters,
    deterministic_gates,
    expected_l0,
    prob_nonzero,
    sample_gates,
    soft_mask,
)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=1, max_size=6), st.integers(0, 10_000))
def test_expected_l0_matches_monte_carlo(log_alphas, seed):
    la = torch.tensor(log_alphas, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    n = 20_000
    z = sample_gates(la.unsqueeze(0).expand(n, -1), generator=g)
    mc = (z > 0).double().mean(0)
    p = prob_nonzero(la)
    # 5 sigma of a Bernoulli mean over n draws
    assert torch.all((mc - p).abs() <= 5 * torch.sqrt(p * (1 - p) / n) + 1e-3)
    assert math.isclose(float(expected_l0(la)), float(p.sum()), rel_tol=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=1, max_size=10), st.integers(0, 1000))
def test_samples_lie_in_unit_interval_with_mass_at_ends(log_alphas, seed):
    la = torch.tensor(log_alphas)
    z = sample_gates(la, generator=torch.Generator().manual_seed(seed))
    assert z.shape == la.shape
    assert torch.all((z >= 0) & (z <= 1))


def test_constants_follow_the_reference():
    assert DEFAULT.beta == 2 / 3 and DEFAULT.left == -0.1 and DEFAULT.right == 1.1 and DEFAULT.eps == 1e-6
    # P(z > 0) = sigmoid(log_alpha - beta * log(-l / r))
    assert math.isclose(
        float(prob_nonzero(torch.tensor(0.0))), 1 / (1 + math.exp(-(2 / 3) * math.log(11))), rel_tol=1e-6
    )


def test_gradients_flow_through_samples():
    la = torch.zeros(50, requires_grad=True)
    sample_gates(la, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert la.grad is not None and la.grad.abs().sum() > 0


def test_init_is_normal_10_001_and_only_real_edges():
    graph = ComputationalGraph(4, 1)
    masks = MaskParameters(graph, generator=torch.Generator().manual_seed(0))
    assert masks.edge_log_alpha.numel() == graph.n_edges == 94
    assert masks.node_log_alpha.numel() == len(graph.writers) == 10
    la = masks.edge_log_alpha.detach()
    assert abs(float(la.mean()) - 10) < 0.01
    assert float(la.std()) < 0.05
    dense = masks.dense(torch.ones(graph.n_edges))
    assert torch.equal(dense, graph.allowed_mask())
    per = masks.dense(torch.ones(3, graph.n_edges))
    assert per.shape == (3, 10, len(graph.readers)) and torch.equal(per[1], graph.allowed_mask())


def test_deterministic_mask_zeroes_expected_number():
    la = torch.tensor([-10.0, -10.0, 10.0, 10.0, 10.0])
    det = deterministic_gates(la)
    assert int((det == 0).sum()) == 2
    assert torch.allclose(det[2:], soft_mask(la[2:]))


@settings(max_examples=6, deadline=None)
@given(st.floats(-3.0, 4.0), st.floats(0.2, 0.9))
def test_score_function_matches_the_derivative_of_the_expectation(log_alpha, cliff):
    """E[L(z) * score(z)] = d E[L(z)] / d log_alpha, also for a step function L (a compiled block's cliff)."""
    from edgeprune.pruning.hard_concrete import gate_score

    def loss(z):
        return (z > cliff).float() + 0.5 * z

    def expectation(a, seed):
        z = sample_gates(torch.full((400_000,), a), generator=torch.Generator().manual_seed(seed))
        return float(loss(z).mean())

    h = 0.05
    finite_difference = (expectation(log_alpha + h, 1) - expectation(log_alpha - h, 1)) / (2 * h)
    z = sample_gates(torch.full((400_000,), log_alpha), generator=torch.Generator().manual_seed(2))
    estimate = float((loss(z) * gate_score(torch.full_like(z, log_alpha), z)).mean())
    assert abs(estimate - finite_difference) < 0.02 + 0.05 * abs(finite_difference)
    # the pathwise gradient cannot see the step: it only sees the 0.5 * z slope
    la = torch.full((400_000,), log_alpha, requires_grad=True)
    loss(sample_gates(la, generator=torch.Generator().manual_seed(2))).mean().backward()
    if finite_difference > 0.1:
        assert float(la.grad.sum()) < finite_difference - 0.05
