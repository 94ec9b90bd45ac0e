"""compare(): graph-exact comparison after removing dangling edges from both sides."""

from __future__ import annotations

from edgeprune.core.circuit import Circuit
from edgeprune.verify.compare import compare

TRUTH = Circuit([("tok", "m0"), ("m0", "a1.h0.v"), ("a1.h0", "out")])


def test_identical_circuits_are_exact():
    c = compare(Circuit(list(TRUTH.edges)), TRUTH)
    assert c.exact and not c.missing and not c.extra
    assert c.diff().startswith("exact match")


def test_dangling_edges_are_ignored_on_both_sides():
    # m1 feeds nothing, a0.h0 reads nothing: both edges dangle
    got = Circuit(list(TRUTH.edges) + [("tok", "m1"), ("a0.h0", "out")])
    truth = Circuit(list(TRUTH.edges) + [("pos", "a0.h0.q")])  # a0.h0 writes to nobody
    c = compare(got, truth)
    assert c.exact
    assert ("tok", "m1") in c.dangling_removed and ("a0.h0", "out") in c.dangling_removed
    assert "dangling" in c.diff()


def test_chains_of_dangling_edges_are_removed_to_a_fixed_point():
    got = Circuit(list(TRUTH.edges) + [("tok", "m0"), ("m0", "m1"), ("m1", "a2.h0.q")])  # a2.h0 writes nothing
    assert compare(got, TRUTH).exact


def test_missing_and_extra_are_reported():
    got = Circuit([("tok", "m0"), ("m0", "a1.h0.v"), ("a1.h0", "out"), ("pos", "a1.h0.k")])
    truth = Circuit([("tok", "m0"), ("m0", "a1.h0.v"), ("a1.h0", "out"), ("tok", "a1.h0.q")])
    c = compare(got, truth)
    assert not c.exact
    assert c.missing == [("tok", "a1.h0.q")] and c.extra == [("pos", "a1.h0.k")]
    text = c.diff()
    assert "- tok -> a1.h0.q" in text and "+ pos -> a1.h0.k" in text and "= a1.h0 -> out" in text
    assert c.to_dict() == {"exact": False, "missing": [["tok", "a1.h0.q"]], "extra": [["pos", "a1.h0.k"]]}


def test_q_k_v_readers_are_kept_apart():
    got = Circuit([("tok", "a0.h0.q"), ("a0.h0", "out")])
    truth = Circuit([("tok", "a0.h0.k"), ("a0.h0", "out")])
    assert not compare(got, truth).exact
