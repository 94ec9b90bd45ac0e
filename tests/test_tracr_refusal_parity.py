"""Refusal parity with the installed Tracr on the edge cases of value-set inference and MLP tables.

Each probe is built by the same code once with Tracr's ``rasp`` and once with
``edgeprune.programs.rasp``: the two compilers must refuse the same probes, and
where both compile, the weights must be equal up to the residual order.
"""

from __future__ import annotations

import pytest

from tests.tracr_helpers import assert_same_outputs, assert_same_weights, compile_both

pytestmark = pytest.mark.tracr

VOCAB = {1, 2, 3}
MAX_SEQ_LEN = 3


def _mean(r, c):
    sel = r.Select(r.indices, r.indices, r.Comparison.LEQ)
    return r.numerical(r.Aggregate(sel, r.numerical(r.Map(lambda x: c, r.tokens)), default=0))


def _rotate(r, lib, f):
    src = r.SequenceMap(f, r.indices, lib.make_length())
    return r.Aggregate(r.Select(r.indices, src, r.Comparison.EQ), r.tokens)


# name -> (build(rasp, lib), compiles): Tracr's behaviour, which the own compiler must share
PROBES = {
    # numerical means: Tracr accepts any SOp whose values truncate to 0 or 1
    "mean_of_0": (lambda r, lib: _mean(r, 0), True),
    "mean_of_1": (lambda r, lib: _mean(r, 1), True),
    "mean_of_0.5": (lambda r, lib: _mean(r, 0.5), True),
    "mean_of_True": (lambda r, lib: _mean(r, True), True),
    "mean_of_2": (lambda r, lib: _mean(r, 2), False),
    # value sets: empty ones are refused
    "map_to_None": (lambda r, lib: r.Map(lambda x: None, r.tokens), False),
    "map_always_fails": (lambda r, lib: r.Map(lambda x: 1 / 0, r.tokens), False),
    # MLP tables over categorical operands: f runs on every value, arithmetic errors are not caught
    "categorical_map_fails_once": (lambda r, lib: r.Map(lambda x: 6 // (x - 1), r.tokens), False),
    "numerical_map_fails_once": (lambda r, lib: r.numerical(r.Map(lambda x: 6 / (x - 1), r.tokens)), False),
    "numerical_map_None_once": (lambda r, lib: r.numerical(r.Map(lambda x: None if x == 1 else x, r.tokens)), False),
    "sequence_map_fails_once": (lambda r, lib: r.SequenceMap(lambda x, i: x // i, r.tokens, r.indices), False),
    "same_operand_sequence_map_fails": (
        lambda r, lib: r.SequenceMap(lambda x, y: x // (y - 1), r.tokens, r.tokens),
        False,
    ),
    "rotate_by_modulo_of_length": (lambda r, lib: _rotate(r, lib, lambda i, n: (i + 1) % n), False),
    "rotate_guarded": (lambda r, lib: _rotate(r, lib, lambda i, n: (i + 1) % n if n else 0), True),
    # ... but a numerical operand's discretising MLP skips the failing values
    "numerical_operand_fails_once": (
        lambda r, lib: r.numerical(
            r.Map(lambda x: 1 / x, r.numerical(r.Map(lambda x: x - 1, r.tokens)), simplify=False)
        ),
        True,
    ),
    "categorical_map_None_once": (lambda r, lib: r.Map(lambda x: None if x == 1 else x, r.tokens), True),
    # constructs Tracr has no block for (test_cases.py's unsupported cases cover the encoding rules)
    "composite_selector": (
        lambda r, lib: r.Aggregate(
            r.Select(r.tokens, r.tokens, r.Comparison.EQ) & r.Select(r.indices, r.indices, r.Comparison.LEQ),
            r.tokens,
        ),
        False,
    ),
    "rasp_length": (lambda r, lib: r.SequenceMap(lambda x, n: x + n, r.tokens, r.length), False),
    "full": (lambda r, lib: r.SequenceMap(lambda x, y: x + y, r.tokens, r.Full(1)), False),
    "categorical_aggregate_default": (
        lambda r, lib: r.Aggregate(r.Select(r.indices, r.indices, r.Comparison.EQ), r.tokens, default=1),
        False,
    ),
    # predicates run on every key/query pair
    "predicate_fails_once": (
        lambda r, lib: r.SelectorWidth(r.Select(r.tokens, r.indices, lambda k, q: k // q > 0)),
        False,
    ),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_refusals_and_weights_agree_with_tracr(probe):
    import tracr.compiler.lib as tlib  # type: ignore
    from tracr.rasp import rasp as trasp  # type: ignore

    from edgeprune.programs import library as ours_lib
    from edgeprune.programs import rasp as ours

    build, compiles = PROBES[probe]
    t_prog, o_prog = build(trasp, tlib), build(ours, ours_lib)
    tr, own = compile_both(t_prog, o_prog, VOCAB, MAX_SEQ_LEN)
    assert (tr is not None) == compiles, f"{probe}: Tracr's behaviour changed (compiles: {tr is not None})"
    assert (own is not None) == compiles, f"{probe}: Tracr {'compiles' if compiles else 'refuses'}, own does not"
    if compiles:
        assert_same_weights(probe, tr, own, t_prog, o_prog)
        assert_same_outputs(probe, tr, VOCAB, MAX_SEQ_LEN)
