"""The ground truth holds on Tracr's own programs, under both compilers and both ablations.

Every case of the installed Tracr's ``test_cases.py`` and every public function of its
``lib.py`` that Tracr compiles (the programs of ``tests/test_tracr_fidelity.py``, built
at the same settings) is compiled by real Tracr and converted, and by
the own compiler; the ground truth the suite uses (``checked_ground_truth``: the
static rule where the checker accepts it, otherwise the circuit derived from the
model, marked ``rule: derived``) must be sufficient with every edge necessary on the
checker's inputs. The counts (static rule / derived) are printed for the README.
"""

from __future__ import annotations

import pytest

from tests.test_tracr_fidelity import CASES, LIB_FUNCTIONS, lib_programs
from tests.tracr_helpers import compile_both

pytestmark = [pytest.mark.tracr, pytest.mark.slow]

MAX_INPUTS = 600  # a seeded sample beyond this: enough to find a wrong edge, affordable for ~100 models
COUNTS: dict[str, list[str]] = {"static": [], "derived": [], "refused": []}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_ground_truth_holds_on_tracr_programs(case):
    name, causal, t, o = case
    _check(name, compile_both(t["program"], o["program"], t["vocab"], t["max_seq_len"], causal))


@pytest.mark.parametrize("function", LIB_FUNCTIONS)
def test_ground_truth_holds_on_tracr_lib_functions(function):
    _check(f"lib.{function}", compile_both(*lib_programs(function)))


def _check(name, models):
    from edgeprune.verify.checker import Oracle, check_ground_truth, model_inputs
    from edgeprune.verify.verdict import checked_ground_truth

    for compiler, model in zip(("tracr", "own"), models):
        if model is None:  # refusal parity is asserted by the fidelity test
            COUNTS["refused"].append(f"{name}/{compiler}")
            continue
        inputs = model_inputs(model, limit=MAX_INPUTS)
        for ablation in ("zero", "interchange"):
            oracle = Oracle(model, ablation, inputs)
            truth = checked_ground_truth(model, ablation, oracle=oracle)
            report = check_ground_truth(model, truth, ablation, oracle=oracle)
            assert report.ok, f"{name} ({compiler}, {ablation}): {report.summary()}"
            COUNTS[truth.meta.get("rule", "static")].append(f"{name}/{compiler}/{ablation}")


@pytest.mark.counts
def test_zz_ground_truth_counts_printed():
    """Runs last in the module: the counts the README quotes."""
    checked = len(COUNTS["static"]) + len(COUNTS["derived"])
    assert checked > 0
    print(
        f"\nTracr test_cases and lib.py ground truths: {checked} (program, compiler, ablation) pass the checker; "
        f"{len(COUNTS['static'])} by the static rule, {len(COUNTS['derived'])} derived from the model; "
        f"{len(COUNTS['refused'])} (program, compiler) refused by both compilers"
    )
    print("derived:", ", ".join(COUNTS["derived"]) or "none")
