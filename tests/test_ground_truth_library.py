"""Every library program's compiled ground truth is sufficient and necessary on all its inputs.

Under the mean ablations (means over every input, the checker's inputs) the same holds for every program
the rule covers; the programs ``MEAN_UNDEFINED`` refuses are checked to fail exactly as recorded.
"""

from __future__ import annotations

import pytest

from edgeprune.compiled.ground_truth import MEAN_UNDEFINED, MeanGroundTruthUndefined, ground_truth, rule_circuit
from edgeprune.compiled.resolve import compile_registered
from edgeprune.programs.registry import list_programs
from edgeprune.verify.checker import check_ground_truth

# the exhaustive interchange check of these takes over a minute on 2 cores
SLOW = {"shuffle_dyck2", "sort_freq", "shuffle_dyck", "detect_pattern"}


def _params():
    for spec in list_programs():
        for ablation in ("zero", "interchange"):
            marks = [pytest.mark.slow] if spec.name in SLOW else []
            yield pytest.param(spec.name, ablation, marks=marks, id=f"{spec.name}-{ablation}")


@pytest.mark.parametrize("name,ablation", list(_params()))
def test_library_ground_truth(name, ablation):
    from edgeprune.programs.registry import get_program

    spec = get_program(name)
    model = compile_registered(name)
    report = check_ground_truth(model, ground_truth(model, ablation), ablation, inputs=spec.enumerate_inputs())
    assert report.sufficient, report.summary()
    # the only edges no valid input exercises are the ones a program names with its reason
    named = {tuple(e.split(" -> ")) for e in spec.unnecessary_edges}
    assert set(report.unnecessary) <= named, report.summary()


def _mean_params():
    for spec in list_programs():
        for ablation in ("mean", "mean-all"):
            marks = [pytest.mark.slow] if spec.name in SLOW else []
            yield pytest.param(spec.name, ablation, marks=marks, id=f"{spec.name}-{ablation}")


@pytest.mark.parametrize("name,ablation", list(_mean_params()))
def test_library_ground_truth_under_mean_ablation(name, ablation):
    from edgeprune.programs.registry import get_program

    spec = get_program(name)
    model = compile_registered(name)
    named = {tuple(e.split(" -> ")) for e in spec.unnecessary_edges}
    refused = MEAN_UNDEFINED.get((name, ablation))
    if refused is None:
        truth = ground_truth(model, ablation)
    else:  # refused with its reason; the rule's circuit fails the checker exactly as the reason says
        with pytest.raises(MeanGroundTruthUndefined, match="not minimal"):
            ground_truth(model, ablation)
        truth = rule_circuit(model, ablation)
    report = check_ground_truth(model, truth, ablation, inputs=spec.enumerate_inputs())
    assert report.sufficient, report.summary()
    if refused is None:
        assert set(report.unnecessary) <= named, report.summary()
    else:
        # the refusal is earned: the checker finds unnecessary edges beyond the program's named ones, as recorded
        assert set(report.unnecessary) - named == set(refused) - named != set(), report.summary()
