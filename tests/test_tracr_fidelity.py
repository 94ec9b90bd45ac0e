"""Fidelity against the *installed* Tracr: its own test_cases.py programs, compiled by Tracr and by the own compiler.

Tracr's ``tracr/compiler/test_cases.py`` (and the ``lib.py`` it uses) is read from the
installed package at test time; a second copy is executed with only
``from tracr.rasp import rasp`` replaced by ``edgeprune.programs.rasp`` (nothing is
copied into the repository). For every case: (1) Tracr's final residual == the
converted model's on every input (a seeded sample when there are more than 2000);
(2) the own compiler's weights == Tracr's, up to the residual order; (3) the case's
expected output holds on both; (4) Tracr and the own compiler refuse the same cases.
Needs the ``tracr`` extra; CI installs it, so nothing here skips.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import types

import numpy as np
import pytest
import torch

from edgeprune.compiled.model import RESIDUAL_AXIS

pytestmark = [pytest.mark.tracr, pytest.mark.slow]  # ~49 Tracr compiles: minutes; CI runs -m slow

MAX_INPUTS = 2000
SAMPLE = 300
RESULTS: dict[str, list[str]] = {"compiled": [], "match": [], "refused_both": []}


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not installed: pip install -e '.[tracr]'"
    with open(spec.origin) as f:
        return f.read()


def _ours(module_name: str, source: str, extra: dict) -> types.ModuleType:
    assert "from tracr.rasp import rasp" in source
    source = source.replace("from tracr.rasp import rasp", "from edgeprune.programs import rasp")
    mod = types.ModuleType(module_name)
    mod.__dict__.update(extra)
    exec(compile(source, f"<{module_name} with edgeprune.programs.rasp>", "exec"), mod.__dict__)
    return mod


def _cases():
    import tracr.compiler.test_cases as ttc  # type: ignore

    lib_src = _source("tracr.compiler.lib")
    tc_src = _source("tracr.compiler.test_cases")
    our_lib = _ours("edgeprune_tracr_lib", lib_src, {})
    assert "from tracr.compiler import lib" in tc_src
    our_tc = _ours(
        "edgeprune_tracr_test_cases", tc_src.replace("from tracr.compiler import lib\n", ""), {"lib": our_lib}
    )
    out = []
    for group, causal in (("TEST_CASES", False), ("CAUSAL_TEST_CASES", True), ("UNSUPPORTED_TEST_CASES", False)):
        theirs, ours = getattr(ttc, group), getattr(our_tc, group)
        assert [c["testcase_name"] for c in theirs] == [c["testcase_name"] for c in ours]
        for t, o in zip(theirs, ours):
            out.append((f"{group}:{t['testcase_name']}", causal, t, o))
    return out


CASES = _cases()


def _inputs(vocab, max_seq_len, seed):
    vocab = sorted(vocab, key=str)
    total = sum(len(vocab) ** n for n in range(1, max_seq_len + 1))
    if total <= MAX_INPUTS:
        return [list(x) for n in range(1, max_seq_len + 1) for x in itertools.product(vocab, repeat=n)]
    rng = random.Random(seed)
    return [[rng.choice(vocab) for _ in range(rng.randint(1, max_seq_len))] for _ in range(SAMPLE)]


def _permuted(model, perm):
    return {k: getattr(model, k).detach().index_select(ax, torch.tensor(perm)) for k, ax in RESIDUAL_AXIS.items()}


def _holds(got, expected):
    from edgeprune.programs.registry import values_equal

    return len(got) == len(expected) and all(
        e is None or values_equal(g, e, tol=1e-5) for g, e in zip(got, expected)
    )  # float32 weights


def _name_map(theirs, ours, found: dict | None = None) -> dict:
    """Tracr node label -> own node label, walking the two programs (built by the same code) in step."""
    found = {} if found is None else found
    found[theirs.label] = ours.label
    for t_child, o_child in zip(theirs.children, ours.children):
        _name_map(t_child, o_child, found)
    return found


def _translate(label: str, names: dict) -> str:
    """Rename every node label inside a residual label: `x_12:3`, and also hidden spaces such as
    `x_12_selector_width_attn_output`, whose name embeds the node's label."""
    name, sep, value = label.partition(":")
    if name in names:
        return names[name] + sep + value
    for theirs in sorted(names, key=len, reverse=True):
        if name.startswith(theirs + "_"):
            return names[theirs] + name[len(theirs) :] + sep + value
    return label


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_tracr_and_own_compiler_agree(case):
    from edgeprune.compiled.compiler import compile_program
    from edgeprune.compiled.tracr_live import compile_with_tracr
    from edgeprune.core.errors import CompileError

    name, causal, t, o = case
    args = dict(vocab=t["vocab"], max_seq_len=t["max_seq_len"])
    try:
        tr = compile_with_tracr(t["program"], causal=causal, compiler_bos="compiler_bos", **args)
    except CompileError:
        tr = None
    try:
        own = compile_program(o["program"], causal=causal, compiler_bos="compiler_bos", **args)
    except CompileError:
        own = None
    # (4) refusals agree
    assert (tr is None) == (own is None), (
        f"{name}: Tracr {'refuses' if tr is None else 'compiles'}, own compiler does not"
    )
    if tr is None:
        RESULTS["refused_both"].append(name)
        return
    RESULTS["compiled"].append(name)
    # (2) weights equal up to the residual order; unnamed nodes carry a global id in their label,
    # which differs between the two module copies, so Tracr's labels are translated node for node
    names = _name_map(t["program"], o["program"])
    tr_labels = [_translate(label, names) for label in tr.metadata.residual_labels]
    assert sorted(own.metadata.residual_labels) == sorted(tr_labels)
    assert own.metadata.encoding_map == tr.metadata.encoding_map
    perm = [own.metadata.residual_labels.index(label) for label in tr_labels]
    ours_p = _permuted(own, perm)
    for k in RESIDUAL_AXIS:
        assert ours_p[k].shape == getattr(tr, k).shape, (name, k)
        assert torch.allclose(ours_p[k], getattr(tr, k).detach(), atol=1e-6), (name, k)
    # (1) Tracr's own forward == converted model, per input length, on every input (or a sample)
    import jax.numpy as jnp  # type: ignore

    inputs = _inputs(t["vocab"], t["max_seq_len"], seed=len(name))
    if causal:
        inputs = inputs[:200]
    by_len: dict[int, list] = {}
    for x in inputs:
        by_len.setdefault(len(x), []).append(x)
    for n, xs in by_len.items():
        ids = [tr.assembled.input_encoder.encode(["compiler_bos", *x]) for x in xs]
        ref = np.asarray(tr.assembled.forward(tr.assembled.params, jnp.array(ids)).transformer_output.output)
        got = tr(torch.tensor(ids)).detach().numpy()
        assert np.abs(got - ref).max() < 1e-4, (name, n)
    # (3) the case's expected output holds on both compilers (None: undefined, must decode to None if categorical)
    for model in (tr, own):
        got = model.run([t["test_input"]])[0]
        assert _holds(got, t["expected_output"]), (name, model.metadata.source, got, t["expected_output"])
        if model.is_categorical:
            assert all(g is None for g, e in zip(got, t["expected_output"]) if e is None), (name, got)
    RESULTS["match"].append(name)


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
