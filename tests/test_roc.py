"""roc_curve: a hand-computed example with ties, the corner cases, and agreement with the pairwise (Mann-Whitney) count."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprune.core.errors import EdgePruneError
from edgeprune.verify.roc import lexicographic_scores, roc_curve


def test_hand_computed_example_with_ties():
    # truth {a, b, c}; a ties with the non-truth d at 3, c ties with e at 1.
    # Groups in decreasing score: {a, d} -> (1/3, 1/3); {b} -> (1/3, 2/3); {c, e} -> (2/3, 1); {f} -> (1, 1).
    # Trapezoids: 1/3 * (0 + 1/3) / 2 = 1/18, 0, 1/3 * (2/3 + 1) / 2 = 5/18, 1/3 * 1 = 6/18: AUC 12/18 = 2/3.
    scores = {"a": 3.0, "d": 3.0, "b": 2.0, "c": 1.0, "e": 1.0, "f": 0.0}
    fpr, tpr, auc = roc_curve(scores, {"a", "b", "c"}, "abcdef")
    assert fpr == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert tpr == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    assert auc == pytest.approx(2 / 3)


def test_corner_cases():
    assert roc_curve({"a": 2, "b": 1}, {"a"}, "ab")[2] == 1.0
    assert roc_curve({"a": 1, "b": 2}, {"a"}, "ab")[2] == 0.0
    assert roc_curve({}, {"a"}, "abc")[2] == 0.5  # no scores: everything tied, the diagonal
    fpr, tpr, auc = roc_curve({"b": 1.0}, {"a"}, "abc")  # unscored edges rank last, together
    assert auc == pytest.approx(0.25) and fpr == [0, 0.5, 1] and tpr == [0, 0, 1]
    assert math.isnan(roc_curve({"a": 1}, {"a"}, "a")[2])  # no negatives: undefined
    assert math.isnan(roc_curve({"a": 1}, set(), "ab")[2])
    with pytest.raises(EdgePruneError, match="not in the ranked universe"):
        roc_curve({}, {"z"}, "ab")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=30))
def test_auc_is_the_pairwise_probability(items):
    scores = {i: float(s) for i, (s, _) in enumerate(items)}
    truth = {i for i, (_, t) in enumerate(items) if t}
    pos = [scores[i] for i in truth]
    neg = [scores[i] for i in scores if i not in truth]
    _, _, auc = roc_curve(scores, truth, scores)
    if not pos or not neg:
        assert math.isnan(auc)
        return
    pairs = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert auc == pytest.approx(pairs / (len(pos) * len(neg)))


def test_lexicographic_scores_order_by_the_first_key_then_the_next():
    first = {"a": 1.0, "b": 1.0}  # the kept subgraph
    second = {"a": -5.0, "b": 2.0, "c": 100.0, "d": 3.0}
    s = lexicographic_scores(first, second, universe="abcd")
    assert sorted("abcd", key=lambda e: -s[e]) == ["b", "a", "c", "d"]
