"""MIB's faithfulness curve, CPR and CMD: a hand-computed trapezoid on a fixed curve, the budgets and both
ablation modes on a metric we can add up by hand, and a run on a tiny random GPT-2 task."""

from __future__ import annotations

import math

import pytest

from edgeprune.core.errors import EdgePruneError
from edgeprune.usecases.faithfulness import (
    MIB_BUDGETS,
    MIB_BUDGETS_PERCENT,
    cpr_cmd,
    faithfulness_curve,
    normalized,
    ranking_order,
)


def test_budgets_are_mibs():
    assert MIB_BUDGETS_PERCENT == (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
    assert MIB_BUDGETS == pytest.approx((0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0))


def test_cpr_and_cmd_against_a_hand_computed_trapezoid():
    xs = [0.0, 0.1, 0.5, 1.0]
    f = [0.0, 0.5, 1.2, 1.0]
    # CPR: 0.1 * (0 + 0.5) / 2 + 0.4 * (0.5 + 1.2) / 2 + 0.5 * (1.2 + 1.0) / 2 = 0.025 + 0.34 + 0.55 = 0.915
    # CMD over |1 - f| = [1, 0.5, 0.2, 0]: 0.1 * 1.5 / 2 + 0.4 * 0.7 / 2 + 0.5 * 0.2 / 2 = 0.075 + 0.14 + 0.05 = 0.265
    cpr, cmd = cpr_cmd(xs, f)
    assert cpr == pytest.approx(0.915) and cmd == pytest.approx(0.265)
    # at MIB's budgets, a ranking that is perfect from the first budget on has CPR = 0.999 (the axis starts at 0.001)
    assert cpr_cmd(MIB_BUDGETS, [1.0] * 10) == pytest.approx((0.999, 0.0))
    with pytest.raises(EdgePruneError, match="10 budgets but 2 values"):
        cpr_cmd(MIB_BUDGETS, [1.0, 1.0])


def test_normalized():
    assert normalized(3.0, m_full=5.0, m_empty=1.0) == 0.5
    assert normalized(-0.2, m_full=0.0, m_empty=-0.4) == pytest.approx(0.5)  # m = -KL
    assert math.isnan(normalized(1.0, 2.0, 2.0))


def test_curve_takes_int_budget_times_edges_and_ablates_either_side():
    order = [("tok", "out")] + [(f"m{i}", "out") for i in range(999)]  # 1000 edges, best first
    weight = {e: 1.0 if e == ("tok", "out") else 0.0 for e in order}  # only the first edge matters

    def metric(edges):
        return sum(weight[e] for e in edges)

    kept = faithfulness_curve(order, metric, m_full=1.0, m_empty=0.0)
    assert kept.k == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]  # int(p * 1000) at MIB's budgets
    assert kept.edges == [1] * 10  # m{i} -> out edges dangle: m{i} has no input
    assert kept.f == [1.0] * 10 and kept.cpr == pytest.approx(0.999) and kept.cmd == pytest.approx(0.0)
    ablated = faithfulness_curve(order, metric, 1.0, 0.0, mode="circuit")
    assert ablated.f == [0.0] * 10 and ablated.cpr == 0.0 and ablated.cmd == pytest.approx(0.999)
    with pytest.raises(EdgePruneError, match="unknown faithfulness mode"):
        faithfulness_curve(order, metric, 1.0, 0.0, mode="both")


def test_ranking_order_puts_unscored_edges_last_and_keeps_ties_in_order():
    universe = [("tok", "m0"), ("pos", "m0"), ("tok", "out"), ("pos", "out")]
    scores = {("pos", "m0"): 1.0, ("tok", "out"): 1.0, ("tok", "m0"): 2.0}
    assert ranking_order(scores, universe) == [("tok", "m0"), ("pos", "m0"), ("tok", "out"), ("pos", "out")]


def test_tiny_gpt2_task(tmp_path):
    """CPR and CMD from the library call on a tiny random GPT-2 (ioi), both modes; the curve ends at the full model."""
    pytest.importorskip("transformers")
    import edgeprune as ep
    from tests.hf_helpers import save_model, task_tokenizer, tiny_gpt2

    tok = task_tokenizer()
    model_dir = save_model(tiny_gpt2(len(tok)), tok, tmp_path / "gpt2")
    curves = ep.faithfulness(model=str(model_dir), task="ioi", method="eap", examples=(8, 4, 4), batch_size=8)
    assert set(curves) == {"complement", "circuit"}
    kept, ablated = curves["complement"], curves["circuit"]
    assert kept.budgets == list(MIB_BUDGETS) and len(kept.f) == 10
    assert kept.k[-1] == 137  # 2 layers, 4 heads: every edge at the 100% budget
    assert kept.f[-1] == pytest.approx(1.0, abs=1e-4)  # the whole graph is the full model
    assert ablated.f[-1] == pytest.approx(0.0, abs=1e-4)  # ablating everything is the empty circuit
    for c in (kept, ablated):
        assert (c.cpr, c.cmd) == pytest.approx(cpr_cmd(c.budgets, c.f))
        assert all(math.isfinite(v) for v in c.f)


def test_library_call_on_a_compiled_program():
    """ep.faithfulness on a compiled program: m = -KL, so the full graph gives f = 1 and the empty circuit f = 0."""
    import edgeprune as ep

    curves = ep.faithfulness("length", method="acdc")
    kept, ablated = curves["complement"], curves["circuit"]
    assert kept.f[-1] == pytest.approx(1.0) and ablated.f[-1] == pytest.approx(0.0)
    assert kept.k[0] == 0 and kept.f[0] == pytest.approx(0.0)  # 0.1% of 13 edges is no edge: the empty circuit
    assert all(-1e-6 <= v <= 1 + 1e-6 for v in kept.f)
    assert 0.0 < kept.cpr < 1.0 and kept.cmd == pytest.approx(cpr_cmd(kept.budgets, kept.f)[1])
    with pytest.raises(EdgePruneError, match="unknown method"):
        ep.faithfulness("length", method="magic")
    with pytest.raises(EdgePruneError, match="give a compiled program"):
        ep.faithfulness("length", model="gpt2", task="ioi")
