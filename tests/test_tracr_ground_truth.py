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

from tests.test_tracr_fidelity import CASES, LIB_FUNCTIONS, LIB_SETTINGS, OUR_LIB, _build

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


def _lib_case(function):
    """A lib.py function as a test_cases-like case: (name, causal, Tracr's, ours)."""
    import tracr.compiler.lib as tlib  # type: ignore
    from tracr.rasp import rasp as trasp  # type: ignore

    from edgeprune.programs import rasp as ours

    vocab, max_seq_len = LIB_SETTINGS[function]
    settings = {"vocab": vocab, "max_seq_len": max_seq_len}
    t = {"program": _build(tlib, trasp, function, vocab, max_seq_len), **settings}
    o = {"program": _build(OUR_LIB, ours, function, vocab, max_seq_len), **settings}
    return (f"lib.{function}", False, t, o)


@pytest.mark.parametrize("compiler", ["tracr", "own"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_ground_truth_holds_on_tracr_programs(case, compiler):
    _check(case, compiler)


@pytest.mark.parametrize("compiler", ["tracr", "own"])
@pytest.mark.parametrize("function", LIB_FUNCTIONS)
def test_ground_truth_holds_on_tracr_lib_functions(function, compiler):
    _check(_lib_case(function), compiler)


def _check(case, compiler):
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
