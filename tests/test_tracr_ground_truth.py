"""The ground truth holds on Tracr's own programs, under both compilers and both ablations.

Every case of the installed Tracr's ``test_cases.py`` that Tracr compiles (the cases
of ``tests/test_tracr_fidelity.py``) is compiled by real Tracr and converted, and by
the own compiler; the ground truth the suite uses (``checked_ground_truth``: the
static rule where the checker accepts it, otherwise the circuit derived from the
model, marked ``rule: derived``) must be sufficient with every edge necessary on the
checker's inputs. The counts (static rule / derived) are printed for the README.
"""

from __future__ import annotations

import pytest

from tests.test_tracr_fidelity import CASES

pytestmark = [pytest.mark.tracr, pytest.mark.slow]

MAX_INPUTS = 600  # a seeded sample beyond this: enough to find a wrong edge, affordable for ~100 models
COUNTS: dict[str, list[str]] = {"static": [], "derived": [], "refused": []}


def _compile(case, compiler):
    from edgeprune.compiled.compiler import compile_program
    from edgeprune.compiled.tracr_live import compile_with_tracr
    from edgeprune.core.errors import CompileError

    name, causal, t, o = case
    args = dict(vocab=t["vocab"], max_seq_len=t["max_seq_len"], causal=causal, compiler_bos="compiler_bos")
    try:
        if compiler == "tracr":
            return compile_with_tracr(t["program"], **args)
        return compile_program(o["program"], **args)
    except CompileError:
        return None


@pytest.mark.parametrize("compiler", ["tracr", "own"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_ground_truth_holds_on_tracr_programs(case, compiler):
    from edgeprune.verify.checker import Oracle, check_ground_truth, model_inputs
    from edgeprune.verify.verdict import checked_ground_truth

    model = _compile(case, compiler)
    if model is None:  # refusal parity is asserted by the fidelity test
        COUNTS["refused"].append(f"{case[0]}/{compiler}")
        return
    inputs = model_inputs(model, limit=MAX_INPUTS)
    for ablation in ("zero", "interchange"):
        oracle = Oracle(model, ablation, inputs)
        truth = checked_ground_truth(model, ablation, oracle=oracle)
        report = check_ground_truth(model, truth, ablation, oracle=oracle)
        assert report.ok, f"{case[0]} ({compiler}, {ablation}): {report.summary()}"
        COUNTS[truth.meta.get("rule", "static")].append(f"{case[0]}/{compiler}/{ablation}")


def test_zz_ground_truth_counts_printed():
    """Runs last in the module: the counts the README quotes."""
    checked = len(COUNTS["static"]) + len(COUNTS["derived"])
    assert checked > 0
    print(
        f"\nTracr test_cases ground truths: {checked} (program, compiler, ablation) pass the checker; "
        f"{len(COUNTS['static'])} by the static rule, {len(COUNTS['derived'])} derived from the model; "
        f"{len(COUNTS['refused'])} (program, compiler) refused by both compilers"
    )
    print("derived:", ", ".join(COUNTS["derived"]) or "none")
