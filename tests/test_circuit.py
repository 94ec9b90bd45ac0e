"""Circuits: canonical JSON that round-trips, graph views, and the dangling-edge rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprune.core.circuit import Circuit
from edgeprune.core.dangling import prune_dangling
from edgeprune.core.graph import ComputationalGraph


@st.composite
def circuits(draw):
    layers = draw(st.integers(1, 4))
    heads = draw(st.integers(1, 3))
    g = ComputationalGraph(layers, heads)
    edges = draw(st.lists(st.sampled_from(g.edges), unique=True, max_size=25))
    return Circuit(edges, model=f"m{layers}x{heads}", meta={"seed": draw(st.integers(0, 9))})


@settings(max_examples=60, deadline=None)
@given(circuits())
def test_json_round_trip(c):
    again = Circuit.from_dict(__import__("json").loads(c.to_json()))
    assert again == c and again.to_json() == c.to_json() and again.meta == c.meta


@settings(max_examples=30, deadline=None)
@given(circuits())
def test_file_round_trip(tmp_path_factory, c):
    p = tmp_path_factory.mktemp("c") / "circuit.json"
    c.save(p)
    assert Circuit.load(p) == c


@settings(max_examples=60, deadline=None)
@given(circuits())
def test_order_does_not_matter(c):
    assert Circuit(list(reversed(c.edges))) == Circuit(c.edges)


@settings(max_examples=60, deadline=None)
@given(circuits())
def test_dangling_rule_is_idempotent_and_connected(c):
    kept = prune_dangling(c.edges)
    assert prune_dangling(kept) == kept and kept <= set(c.edges)
    g = Circuit(sorted(kept)).to_networkx()
    for node in g.nodes:
        if node != "out":
            assert __import__("networkx").has_path(g, node, "out")


def test_networkx_views():
    c = Circuit([("tok", "a0.h0.q"), ("tok", "a0.h0.k"), ("a0.h0", "out")])
    g = c.to_networkx()
    assert sorted(g["tok"]["a0.h0"]["roles"]) == ["k", "q"]
    assert c.to_reader_networkx().number_of_edges() == 3
    assert c.nodes == ["tok", "a0.h0", "out"]


def test_graph_edge_counts_match_the_reference():
    # method-facts: Tracr reverse 94, xproportion 32; GPT-2 small with tok and pos 32,936
    assert ComputationalGraph(4, 1).n_edges == 94
    assert ComputationalGraph(2, 1).n_edges == 32
    assert ComputationalGraph(12, 12).n_edges == 32936
