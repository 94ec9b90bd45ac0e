"""Ground truth of imported Tracr models: the published circuits, sufficiency and necessity."""

from __future__ import annotations

import pytest

from edgeprune.compiled.ground_truth import ground_truth
from edgeprune.compiled.tracr_import import load_reference_dir
from edgeprune.verify.checker import check_ground_truth
from tests.conftest import REFERENCE_PROGRAMS

# DESIGN.md section 3: ACDC's canonical circuits (zero ablation), in this project's names
ACDC_REVERSE = {
    ("tok", "a0.h0.v"),
    ("a0.h0", "m0"),
    ("tok", "m0"),
    ("m0", "m1"),
    ("tok", "m1"),
    ("pos", "m1"),
    ("m1", "m2"),
    ("m2", "a3.h0.q"),
    ("pos", "a3.h0.k"),
    ("tok", "a3.h0.v"),
    ("a3.h0", "out"),
}
ACDC_XPROPORTION = {
    ("tok", "m0"),
    ("m0", "a1.h0.v"),
    ("tok", "a1.h0.q"),
    ("pos", "a1.h0.q"),
    ("tok", "a1.h0.k"),
    ("pos", "a1.h0.k"),
    ("a1.h0", "out"),
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
        ("tok", "m0"),
        ("m0", "a1.h0.v"),
        ("a1.h0", "out"),
    }


@pytest.mark.parametrize("ablation", ["zero", "interchange"])
@pytest.mark.parametrize("program", REFERENCE_PROGRAMS)
def test_ground_truth_sufficient_and_necessary(models, program, ablation):
    model = models[program]
    report = check_ground_truth(model, ground_truth(model, ablation), ablation)
    assert report.sufficient, report.summary()
    assert report.unnecessary == [], report.summary()


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
    from edgeprune.core.graph import ComputationalGraph

    for m in models.values():
        g = ComputationalGraph(m.config.n_layers, m.config.n_heads)
        for ablation in ("zero", "interchange"):
            gt = ground_truth(m, ablation)
            assert gt.edges == sorted(gt.edges, key=gt.edges.index)
            assert set(gt.edges) <= g.edge_set


def _prefix_mean_program(predicate, categorical_output: bool):
    """frac of 'a' over the keys the selector picks; optionally decoded to a category."""
    from edgeprune.programs import rasp

    sel = rasp.Select(rasp.indices, rasp.indices, predicate)
    frac = rasp.numerical(
        rasp.Aggregate(sel, rasp.numerical(rasp.Map(lambda t: 1 if t == "a" else 0, rasp.tokens)), default=0)
    )
    if categorical_output:
        return rasp.categorical(rasp.Map(lambda x: x > 0, frac))
    return frac


@pytest.mark.parametrize(
    "predicate_name,categorical,bos_edges",
    [
        ("LEQ", True, False),  # selects itself at every query: the fallback only acts at BOS, which is not read
        ("LEQ", False, True),  # numerical output: the BOS position is read
        ("LT", True, True),  # the first query selects nothing: the fallback defines its output
    ],
)
def test_numerical_mean_bos_fallback_rule(predicate_name, categorical, bos_edges):
    from edgeprune.compiled.compiler import compile_program
    from edgeprune.programs import rasp
    from edgeprune.verify.checker import enumerate_inputs

    program = _prefix_mean_program(getattr(rasp.Comparison, predicate_name), categorical)
    model = compile_program(program, {"a", "b"}, 4, name=f"mean_{predicate_name}")
    truth = ground_truth(model, "zero")
    head = next(iter(model.metadata.blocks.heads))
    assert (("tok", f"{head}.q") in truth.edges) == bos_edges
    assert (("tok", f"{head}.k") in truth.edges) == bos_edges
    report = check_ground_truth(model, truth, "zero", inputs=enumerate_inputs(["a", "b"], 4))
    assert report.ok, report.summary()
