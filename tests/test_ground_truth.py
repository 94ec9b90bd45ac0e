"""Ground truth of imported Tracr models: the published circuits, sufficiency and necessity."""

from __future__ import annotations

import pytest

from compiled.ground_truth import ground_truth
from compiled.tracr_import import load_reference_dir
from tests.conftest import REFERENCE_PROGRAMS
from verify.checker import check_ground_truth

# DESIGN.md section 3: ACDC's canonical circuits (zero ablation), in this project's names
ACDC_REVERSE = {
    ("tok", "a0.h0.v"), ("a0.h0", "m0"), ("tok", "m0"), ("m0", "m1"), ("tok", "m1"), ("pos", "m1"),
    ("m1", "m2"), ("m2", "a3.h0.q"), ("pos", "a3.h0.k"), ("tok", "a3.h0.v"), ("a3.h0", "out"),
}
ACDC_XPROPORTION = {
    ("tok", "m0"), ("m0", "a1.h0.v"), ("tok", "a1.h0.q"), ("pos", "a1.h0.q"),
    ("tok", "a1.h0.k"), ("pos", "a1.h0.k"), ("a1.h0", "out"),
}

# Edges of the definition that no valid input exercises, with the reason.
KNOWN_UNNECESSARY = {
    ("xproportion", "zero"): {
        ("tok", "a1.h0.q"): "BOS fallback ('one' in the query) of a numerical mean: Select(indices, indices, LEQ) never selects nothing",
        ("tok", "a1.h0.k"): "BOS fallback ('tokens:BOS' in the key) of the same numerical mean, likewise never used",
    },
    ("pair_balance", "zero"): {
        (w, f"a1.h{h}.{r}"): "BOS fallback of a numerical frac_prevs mean whose LEQ selector always selects position 0"
        for w in ("tok",) for h in (0, 1) for r in ("q", "k")
    },
}


@pytest.fixture(scope="module")
def models(reference_dir):
    return {p: load_reference_dir(reference_dir / p)[0] for p in REFERENCE_PROGRAMS}


def test_reverse_zero_equals_acdc(models):
    assert set(ground_truth(models["reverse"], "zero").edges) == ACDC_REVERSE


def test_xproportion_zero_equals_acdc(models):
    assert set(ground_truth(models["xproportion"], "zero").edges) == ACDC_XPROPORTION


def test_reverse_interchange_is_two_edges(models):
    assert set(ground_truth(models["reverse"], "interchange").edges) == {("tok", "a3.h0.v"), ("a3.h0", "out")}


def test_xproportion_interchange_is_three_edges(models):
    assert set(ground_truth(models["xproportion"], "interchange").edges) == {
        ("tok", "m0"), ("m0", "a1.h0.v"), ("a1.h0", "out")}


@pytest.mark.parametrize("ablation", ["zero", "interchange"])
@pytest.mark.parametrize("program", REFERENCE_PROGRAMS)
def test_ground_truth_sufficient_and_necessary(models, program, ablation):
    model = models[program]
    report = check_ground_truth(model, ground_truth(model, ablation), ablation)
    assert report.sufficient, report.summary()
    expected = KNOWN_UNNECESSARY.get((program, ablation), {})
    assert set(report.unnecessary) == set(expected), report.summary()


def test_checker_catches_an_insufficient_circuit(models):
    model = models["reverse"]
    truth = ground_truth(model, "zero")
    broken = type(truth)([e for e in truth.edges if e != ("m2", "a3.h0.q")])
    report = check_ground_truth(model, broken, "zero", necessity=False)
    assert not report.sufficient and report.counterexamples


def test_checker_flags_an_extra_edge_as_unnecessary(models):
    model = models["reverse"]
    truth = ground_truth(model, "zero")
    padded = type(truth)(list(truth.edges) + [("pos", "m2")])
    report = check_ground_truth(model, padded, "zero")
    assert report.sufficient and ("pos", "m2") in report.unnecessary


def test_ground_truth_is_sorted_and_allowed(models):
    from pruning.graph import ComputationalGraph

    for m in models.values():
        g = ComputationalGraph(m.config.n_layers, m.config.n_heads)
        for ablation in ("zero", "interchange"):
            gt = ground_truth(m, ablation)
            assert gt.edges == sorted(gt.edges, key=gt.edges.index)
            assert set(gt.edges) <= g.edge_set
