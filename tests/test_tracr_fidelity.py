"""Fidelity against the *installed* Tracr: its test_cases.py programs and every public lib.py function,
compiled by Tracr and by the own compiler.

Tracr's ``tracr/compiler/test_cases.py`` (and the ``lib.py`` it uses) is read from the
installed package at test time; a second copy is executed with only
``from tracr.rasp import rasp`` replaced by ``edgeprune.programs.rasp`` (nothing is
copied into the repository). For every case: (1) Tracr's final residual == the
converted model's on every input (a seeded sample when there are more than 2000);
(2) the own compiler's weights == Tracr's, up to the residual order; (3) the case's
expected output holds on both; (4) Tracr and the own compiler refuse the same cases.
Every public function of ``lib.py`` is built the same way (arguments chosen by parameter name,
vocab and length per function) and checked for (1), (2) and (4).
Needs the ``tracr`` extra; CI installs it, so nothing here skips.
"""

from __future__ import annotations

import importlib.util
import inspect

import pytest

from tests.tracr_helpers import (
    all_inputs,
    assert_same_outputs,
    assert_same_weights,
    compile_both,
    exec_with_our_rasp,
)

pytestmark = [pytest.mark.tracr, pytest.mark.slow]  # ~70 Tracr compiles: minutes; CI runs -m slow

RESULTS: dict[str, list[str]] = {"compiled": [], "match": [], "refused_both": []}
LIB_RESULTS: dict[str, list[str]] = {"compiled": [], "match": [], "refused_both": []}


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not installed: pip install -e '.[tracr]'"
    with open(spec.origin) as f:
        return f.read()


OUR_LIB = exec_with_our_rasp("edgeprune_tracr_lib", _source("tracr.compiler.lib"), {})


def _cases():
    import tracr.compiler.test_cases as ttc  # type: ignore

    tc_src = _source("tracr.compiler.test_cases")
    assert "from tracr.compiler import lib" in tc_src
    our_tc = exec_with_our_rasp(
        "edgeprune_tracr_test_cases", tc_src.replace("from tracr.compiler import lib\n", ""), {"lib": OUR_LIB}
    )
    out = []
    for group, causal in (("TEST_CASES", False), ("CAUSAL_TEST_CASES", True), ("UNSUPPORTED_TEST_CASES", False)):
        theirs, ours = getattr(ttc, group), getattr(our_tc, group)
        assert [c["testcase_name"] for c in theirs] == [c["testcase_name"] for c in ours]
        for t, o in zip(theirs, ours):
            out.append((f"{group}:{t['testcase_name']}", causal, t, o))
    return out


CASES = _cases()


def _holds(got, expected):
    from edgeprune.programs.registry import values_equal

    return len(got) == len(expected) and all(
        e is None or values_equal(g, e, tol=1e-5) for g, e in zip(got, expected)
    )  # float32 weights


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_tracr_and_own_compiler_agree(case):
    name, causal, t, o = case
    vocab, max_seq_len = t["vocab"], t["max_seq_len"]
    tr, own = compile_both(t["program"], o["program"], vocab, max_seq_len, causal)
    # (4) refusals agree
    assert (tr is None) == (own is None), (
        f"{name}: Tracr {'refuses' if tr is None else 'compiles'}, own compiler does not"
    )
    if tr is None:
        RESULTS["refused_both"].append(name)
        return
    RESULTS["compiled"].append(name)
    # (2) weights equal up to the residual order; (1) Tracr's forward == converted model on every input
    assert_same_weights(name, tr, own, t["program"], o["program"])
    assert_same_outputs(name, tr, vocab, max_seq_len, causal)
    # (3) the case's expected output holds on both compilers (None: undefined, must decode to None if categorical)
    for model in (tr, own):
        got = model.run([t["test_input"]])[0]
        assert _holds(got, t["expected_output"]), (name, model.metadata.source, got, t["expected_output"])
        if model.is_categorical:
            assert all(g is None for g, e in zip(got, t["expected_output"]) if e is None), (name, got)
    RESULTS["match"].append(name)


# ----------------------------------------------------------------------------- every public function of lib.py

_TEXT = ({"a", "b", "c"}, 4)
_BRACKETS = ({"(", ")", "{", "}"}, 4)
_NUMBERS = ({1, 2, 3}, 4)
LIB_SETTINGS = {  # function -> (vocab, max_seq_len) at which the arguments chosen below make sense
    "make_length": _TEXT,
    "make_reverse": _TEXT,
    "make_hist": _TEXT,
    "make_frac_prevs": _TEXT,
    "shift_by": _TEXT,
    "detect_pattern": _TEXT,
    "make_count_less_freq": _TEXT,
    "make_count": _TEXT,
    "make_pair_balance": _BRACKETS,
    "make_shuffle_dyck": _BRACKETS,
    "make_shuffle_dyck2": _BRACKETS,
    "make_sort_unique": _NUMBERS,
    "make_sort": _NUMBERS,
    "make_sort_freq": _NUMBERS,
    "make_nary_sequencemap": ({1, 2, 3}, 3),
}


def _lib_functions() -> list[str]:
    import tracr.compiler.lib as tlib  # type: ignore

    return sorted(
        n
        for n, f in inspect.getmembers(tlib, inspect.isfunction)
        if f.__module__ == tlib.__name__ and not n.startswith("_")
    )


LIB_FUNCTIONS = _lib_functions()


def _argument(param: str, r, vocab, max_seq_len: int):
    """The argument for a lib.py parameter, by its name, built with the rasp module ``r``."""
    first = sorted(vocab, key=str)[0]
    if param in ("sop", "vals", "keys"):
        return r.tokens
    if param == "bools":
        return r.tokens == first
    if param == "sops":  # make_nary_sequencemap(f, *sops): a repeated operand, then another
        return [r.tokens, r.tokens, r.indices]
    choices = {
        "open_token": "(",
        "close_token": ")",
        "pairs": ["()"],
        "max_seq_len": max_seq_len,
        "min_key": 1,
        "offset": 1,
        "pattern": sorted(vocab, key=str)[:2],
        "n": 2,
        "token": first,
        "f": lambda x, y, i: x * y + i,
    }
    assert param in choices, f"no argument choice for the lib.py parameter {param!r}: add one to _argument"
    return choices[param]


def _build(lib, r, name: str, vocab, max_seq_len: int):
    fn = getattr(lib, name)
    args, kwargs = [], {}
    for p in inspect.signature(fn).parameters.values():
        value = _argument(p.name, r, vocab, max_seq_len)
        if p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return fn(*args, **kwargs)


def test_every_lib_function_has_settings():
    """A lib.py function without settings would be dropped silently: fail instead."""
    assert set(LIB_FUNCTIONS) == set(LIB_SETTINGS), sorted(set(LIB_FUNCTIONS) ^ set(LIB_SETTINGS))
    assert all(n in LIB_FUNCTIONS for n in ("make_length", "make_sort_freq", "make_shuffle_dyck2"))


def lib_programs(function: str):
    """(Tracr's program, the own rasp's program, vocab, max_seq_len) of a lib.py function at its settings."""
    import tracr.compiler.lib as tlib  # type: ignore
    from tracr.rasp import rasp as trasp  # type: ignore

    from edgeprune.programs import rasp as ours

    vocab, max_seq_len = LIB_SETTINGS[function]
    t_prog = _build(tlib, trasp, function, vocab, max_seq_len)
    o_prog = _build(OUR_LIB, ours, function, vocab, max_seq_len)
    return t_prog, o_prog, vocab, max_seq_len


@pytest.mark.parametrize("function", LIB_FUNCTIONS)
def test_tracr_and_own_compiler_agree_on_lib(function):
    t_prog, o_prog, vocab, max_seq_len = lib_programs(function)
    name = f"lib.{function}"
    tr, own = compile_both(t_prog, o_prog, vocab, max_seq_len)
    assert (tr is None) == (own is None), f"{name}: Tracr {'refuses' if tr is None else 'compiles'}, own does not"
    if tr is None:
        LIB_RESULTS["refused_both"].append(name)
        return
    LIB_RESULTS["compiled"].append(name)
    assert_same_weights(name, tr, own, t_prog, o_prog)
    n = assert_same_outputs(name, tr, vocab, max_seq_len)
    # decoded outputs agree too (None where RASP is undefined, on both)
    inputs = all_inputs(vocab, max_seq_len, seed=1)[:200]
    for x, a, b in zip(inputs, tr.run(inputs), own.run(inputs)):
        assert _holds(a, b) and _holds(b, a), (name, x, a, b)
    assert n > 0
    LIB_RESULTS["match"].append(name)


@pytest.mark.counts
def test_zz_counts_printed():
    """Runs last in this module: every case is accounted for, and Tracr compiled most of them."""
    total = len(CASES)
    done = len(RESULTS["compiled"]) + len(RESULTS["refused_both"])
    print(
        f"\nTracr fidelity: {len(RESULTS['compiled'])} of {total} test_cases.py cases compiled by Tracr, "
        f"{len(RESULTS['match'])} match the converted and own-compiled models; "
        f"{len(RESULTS['refused_both'])} refused by both"
    )
    if done == total:
        assert len(RESULTS["match"]) == len(RESULTS["compiled"]) >= 40
    lib_total = len(LIB_FUNCTIONS)
    lib_done = len(LIB_RESULTS["compiled"]) + len(LIB_RESULTS["refused_both"])
    print(
        f"Tracr fidelity: {len(LIB_RESULTS['compiled'])} of {lib_total} public lib.py functions compiled by Tracr, "
        f"{len(LIB_RESULTS['match'])} match the converted and own-compiled models; "
        f"{len(LIB_RESULTS['refused_both'])} refused by both"
    )
    if lib_done == lib_total:  # the whole module ran: nothing dropped, and every compiled one matched
        assert len(LIB_RESULTS["match"]) == len(LIB_RESULTS["compiled"]) >= 10
