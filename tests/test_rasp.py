"""The RASP evaluator on hand-worked examples, and the Tracr behaviours the compiler relies on."""

from __future__ import annotations

import itertools

import pytest

from edgeprune.programs import rasp


def test_primitives():
    assert rasp.evaluate(rasp.tokens, ["a", "b"]) == ["a", "b"]
    assert rasp.evaluate(rasp.indices, ["a", "b", "c"]) == [0, 1, 2]
    assert rasp.evaluate(rasp.length, ["a", "b", "c"]) == [3, 3, 3]
    assert rasp.evaluate(rasp.Full(7), [1, 2]) == [7, 7]
    assert rasp.tokens.label == "tokens" and rasp.indices.label == "indices"


def test_map_and_operators():
    xs = [1, 2, 3]
    assert rasp.evaluate(rasp.Map(lambda x: x * 10, rasp.tokens), xs) == [10, 20, 30]
    assert rasp.evaluate(rasp.tokens == 2, xs) == [False, True, False]
    assert rasp.evaluate(rasp.tokens < 2, xs) == [True, False, False]
    assert rasp.evaluate(rasp.tokens >= 2, xs) == [False, True, True]
    assert rasp.evaluate(rasp.tokens != 2, xs) == [True, False, True]
    assert rasp.evaluate(rasp.tokens + rasp.indices, xs) == [1, 3, 5]
    assert rasp.evaluate(rasp.tokens - 1, xs) == [0, 1, 2]
    assert rasp.evaluate(10 - rasp.tokens, xs) == [9, 8, 7]
    assert rasp.evaluate(rasp.tokens * rasp.tokens, xs) == [1, 4, 9]
    assert rasp.evaluate(6 / rasp.tokens, xs) == [6.0, 3.0, 2.0]
    assert rasp.evaluate(~(rasp.tokens == 1), xs) == [False, True, True]
    assert rasp.evaluate((rasp.tokens == 1) | (rasp.tokens == 3), xs) == [True, False, True]
    assert rasp.evaluate((rasp.tokens > 1) & (rasp.indices < 2), xs) == [False, True, False]
    assert isinstance(rasp.tokens + 1, rasp.Map) and isinstance(rasp.tokens + rasp.indices, rasp.SequenceMap)


def test_map_simplifies_nested_maps_unless_asked_not_to():
    inner = rasp.Map(lambda x: x + 1, rasp.tokens)
    outer = rasp.Map(lambda x: x * 2, inner)
    assert outer.inner is rasp.tokens
    assert rasp.evaluate(outer, [1, 2]) == [4, 6]
    kept = rasp.Map(lambda x: x * 2, inner, simplify=False)
    assert kept.inner is inner and rasp.evaluate(kept, [1, 2]) == [4, 6]


def test_sequence_map_and_linear_sequence_map():
    sm = rasp.SequenceMap(lambda x, y: f"{x}{y}", rasp.tokens, rasp.indices)
    assert rasp.evaluate(sm, ["a", "b"]) == ["a0", "b1"]
    lsm = rasp.LinearSequenceMap(rasp.tokens, rasp.indices, 2, -1)
    assert rasp.evaluate(lsm, [5, 5, 5]) == [10, 9, 8]


def test_select_matrix_is_query_by_key_and_predicate_takes_key_first():
    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)  # key < query
    assert rasp.evaluate(sel, [2, 1, 3]) == [
        [False, True, False],  # query 2: keys 1
        [False, False, False],  # query 1: none
        [True, True, False],  # query 3: keys 2, 1
    ]
    assert rasp.Comparison.LEQ(1, 2) is True and rasp.Comparison.GT(1, 2) is False
    assert rasp.Comparison.TRUE("a", 1) and not rasp.Comparison.FALSE("a", 1)
    with pytest.raises(ValueError):
        rasp.Comparison.EQ(None, 1)


def test_selector_width():
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    assert rasp.evaluate(rasp.SelectorWidth(same), list("abac")) == [2, 1, 2, 1]
    allsel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    assert rasp.evaluate(rasp.SelectorWidth(allsel), list("xyz")) == [3, 3, 3]


def test_aggregate_moves_a_single_value_and_defaults_on_empty_rows():
    flip = rasp.Select(rasp.indices, 2 - rasp.indices, rasp.Comparison.EQ)
    assert rasp.evaluate(rasp.Aggregate(flip, rasp.tokens), list("abc")) == ["c", "b", "a"]
    none = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.FALSE)
    assert rasp.evaluate(rasp.Aggregate(none, rasp.tokens), list("ab")) == [None, None]
    assert rasp.evaluate(rasp.Aggregate(none, rasp.tokens, default=0), list("ab")) == [0, 0]


def test_numerical_mean_aggregate_like_tracr():
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    frac = rasp.numerical(rasp.Aggregate(prevs, rasp.numerical(rasp.tokens == "x"), default=0))
    out = rasp.evaluate(frac, list("xyxx"))
    # A lone selected value is returned as is (Tracr 9ce2b8c): position 0 gives True, not 1.0.
    assert out[0] is True
    assert out[1:] == [pytest.approx(1 / 2), pytest.approx(2 / 3), pytest.approx(3 / 4)]
    with pytest.raises(ValueError):  # averaging strings is undefined
        rasp.evaluate(
            rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE), rasp.tokens), list("ab")
        )


def test_none_propagates_through_maps():
    none = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.FALSE)
    agg = rasp.Aggregate(none, rasp.tokens)
    assert rasp.evaluate(agg + 1, [1, 2]) == [None, None]
    assert rasp.evaluate(rasp.SequenceMap(lambda x, y: x, agg, rasp.tokens), [1, 2]) == [None, None]


def test_selector_combinators_fold_into_one_select():
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ)
    b = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.GEQ)
    both = a & b
    assert isinstance(both, rasp.Select)
    assert rasp.evaluate(both, [1, 2, 1]) == rasp.evaluate(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), [1, 2, 1]
    )
    either = a | b
    assert isinstance(either, rasp.Select) and all(all(r) for r in rasp.evaluate(either, [1, 2, 3]))
    neg = ~a
    assert isinstance(neg, rasp.Select)
    assert rasp.evaluate(neg, [1, 2]) == [[False, True], [False, False]]  # not (key <= query)
    c = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ)
    mixed = a & c  # different keys/queries: no folding
    assert isinstance(mixed, rasp.SelectorAnd)
    assert rasp.evaluate(mixed, [1, 1]) == [[True, False], [False, True]]
    assert isinstance(a | c, rasp.SelectorOr) and isinstance(~mixed, rasp.SelectorNot)
    assert rasp.evaluate(~mixed, [1, 1]) == [[False, True], [True, False]]


def test_full_in_a_select_folds_its_fill_into_the_predicate():
    a = rasp.Select(rasp.tokens, rasp.Full(2), rasp.Comparison.LEQ)  # key <= 2
    b = rasp.Select(rasp.tokens, rasp.indices, rasp.Comparison.GEQ)  # key >= query index
    both = a & b
    assert isinstance(both, rasp.Select) and both.queries is rasp.indices
    assert rasp.evaluate(both, [0, 2, 3]) == [[True, True, False], [False, True, False], [False, True, False]]


def test_labels_use_a_lazy_global_counter_like_tracr():
    rasp.RASPExpr._ids = itertools.count(1)
    m = rasp.Map(lambda x: x, rasp.tokens)
    s = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same")
    # ids are drawn on first use of the label, not at construction
    assert s.label == "same_1" and m.label == "map_2" and m.label == "map_2"
    assert rasp.SelectorWidth(s).label == "selector_width_3"
    assert rasp.Aggregate(s, rasp.tokens).named("agg").label == "agg_4"
    assert rasp.LinearSequenceMap(rasp.tokens, rasp.tokens, 1, 1).name == "linear_sequence_map"


def test_encodings_default_categorical():
    m = rasp.Map(lambda x: x, rasp.tokens)
    assert rasp.is_categorical(m) and not rasp.is_numerical(m)
    n = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    assert rasp.is_numerical(n) and rasp.get_encoding(n) is rasp.Encoding.NUMERICAL
    # naming keeps the encoding and vice versa; as in Tracr, annotating returns a copy and leaves n alone
    named = n.named("n")
    assert rasp.is_numerical(named) and named.name == "n" and n.name != "n" and named.label != n.label
    c = rasp.categorical(n)
    assert c is not n and rasp.is_categorical(c) and rasp.is_numerical(n)
    assert rasp.is_categorical(rasp.tokens) and rasp.is_numerical(rasp.numerical(rasp.tokens))
    assert rasp.DEFAULT_ANNOTATORS["encoding"](m) is rasp.Encoding.CATEGORICAL
    assert n.copy() is not n and n.copy().label != n.label and rasp.is_numerical(n.copy())


def test_constant_sop_and_selector():
    c = rasp.ConstantSOp([1, 2, 3])
    assert rasp.evaluate(c, "abc") == [1, 2, 3]
    with pytest.raises(ValueError):
        rasp.evaluate(c, "ab")
    cs = rasp.ConstantSelector([[True, False], [True, True]])
    assert rasp.evaluate(rasp.SelectorWidth(cs), "ab") == [1, 2]


def test_call_evaluates():
    assert (rasp.tokens + 1)([1, 2]) == [2, 3]


def test_malformed_expressions_are_rejected_at_construction():
    with pytest.raises(TypeError):
        rasp.Map(lambda x: x, "tokens")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rasp.Aggregate(rasp.tokens, rasp.tokens)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rasp.SelectorWidth(rasp.tokens)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens, default=[1])


def test_reverse_program_by_hand():
    length = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    opp = (length - rasp.indices) - 1
    rev = rasp.Aggregate(rasp.Select(rasp.indices, opp, rasp.Comparison.EQ), rasp.tokens)
    assert rasp.evaluate(rev, [1, 2, 3, 3]) == [3, 3, 2, 1]
    assert rasp.evaluate(rev, []) == []
