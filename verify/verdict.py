"""Verdicts on a recovered circuit, and the ground truth checked (and if need be derived) on the model.

Verdicts, judged by ``verify.checker`` on the model's inputs (every input for
small programs):

* ``exact``: the circuit equals the ground truth (dangling edges ignored);
* ``alternative``: it differs, but it is sufficient and every edge is necessary
  on the inputs: another minimal circuit of the same model;
* ``not-minimal``: sufficient, but some edge can go without changing any output;
* ``unfaithful``: not sufficient (some output changes).

The ground truth itself is the static rule of ``compiled.ground_truth``,
checked here; where the checker rejects it (a class of programs the static rule
does not cover) :func:`checked_ground_truth` derives it from the compiled
model: it adds the weight-supported edges sufficiency needs, then drops edges
the checker proves unneeded (added ones first, then the rule's own), one at a
time, until every edge is necessary.  The circuit's ``meta`` records
``"rule": "static"`` or ``"rule": "derived"`` with the edges added and dropped.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeprune.compiled.ground_truth import ground_truth, reader_supports, writer_supports
from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.circuit import Circuit, Edge, sort_edges
from edgeprune.core.dangling import prune_dangling
from edgeprune.core.graph import ComputationalGraph
from edgeprune.verify.checker import Oracle
from edgeprune.verify.compare import Comparison, compare

VERDICTS = ("exact", "alternative", "not-minimal", "unfaithful")


@dataclass
class Verdict:
    verdict: str  # one of VERDICTS
    sufficient: bool
    unnecessary: list[Edge] = field(default_factory=list)  # edges whose removal keeps every output
    counterexamples: list[dict] = field(default_factory=list)  # inputs where the circuit's output differs
    known_alternative: bool = False  # the circuit is one the program's spec lists

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "sufficient": self.sufficient,
            "unnecessary": [list(e) for e in self.unnecessary],
            "counterexamples": self.counterexamples[:3],
            "known_alternative": self.known_alternative,
        }


def weight_supported_edges(model: CompiledTransformer) -> set[Edge]:
    """Every graph edge whose writer writes a direction the reader's weights read (nothing else can matter)."""
    graph = ComputationalGraph(model.config.n_layers, model.config.n_heads)
    writes, reads = writer_supports(model), reader_supports(model)
    return {(w, r) for w, r in graph.edges if writes[w] & reads[r]}


def minimise(oracle: Oracle, edges: Iterable[Edge], order: Sequence[Edge] | None = None) -> set[Edge]:
    """Drop edges one at a time (in ``order``, default sorted) while the circuit stays sufficient; repeat to a
    fixed point, so every remaining edge is necessary.  ``edges`` must be sufficient."""
    kept = set(edges)
    changed = True
    while changed:
        changed = False
        for e in list(order) if order is not None else sorted(kept):
            if e in kept and oracle.sufficient(kept - {e}):
                kept.discard(e)
                changed = True
    return set(prune_dangling(kept, ablation=oracle.ablation))


def checked_ground_truth(
    model: CompiledTransformer,
    ablation: str = "zero",
    inputs: Sequence[list[Any]] | None = None,
    oracle: Oracle | None = None,
) -> Circuit:
    """The static ground truth when the checker accepts it, else the circuit derived from the model (see module)."""
    oracle = oracle or Oracle(model, ablation, inputs)
    static = ground_truth(model, ablation)
    edges = set(static.edges)
    sufficient = oracle.sufficient(edges)
    unneeded = oracle.unnecessary(edges) if sufficient else []
    meta = dict(static.meta)
    if sufficient and not unneeded:
        meta["rule"] = "static"
        return Circuit(static.edges, model=static.model, meta=meta)
    added: set[Edge] = set()
    if not sufficient:
        added = weight_supported_edges(model) - edges
        edges |= added
        if not oracle.sufficient(edges):  # nothing more to add: report the static rule, the checker will say why
            meta.update(rule="static", derivation_failed="the model's weight-supported edges are not sufficient")
            return Circuit(static.edges, model=static.model, meta=meta)
    order = sort_edges(added) + sort_edges(set(static.edges))
    final = minimise(oracle, edges, order)
    meta.update(
        rule="derived",
        derived_from="static rule, then edges the checker needs added and edges it proves unneeded dropped",
        added=[list(e) for e in sort_edges(final - set(static.edges))],
        dropped=[list(e) for e in sort_edges(set(static.edges) - final)],
    )
    return Circuit(sort_edges(final), model=static.model, meta=meta)


def judge(
    model: CompiledTransformer,
    circuit: Circuit,
    truth: Circuit,
    ablation: str = "zero",
    inputs: Sequence[list[Any]] | None = None,
    oracle: Oracle | None = None,
    comparison: Comparison | None = None,
    alternatives: Iterable[Iterable[Sequence[str]]] = (),
) -> Verdict:
    """The verdict on ``circuit`` (recovered) against ``truth`` on ``model`` (see module)."""
    comparison = comparison or compare(circuit, truth)
    if comparison.exact:
        return Verdict("exact", sufficient=True)
    oracle = oracle or Oracle(model, ablation, inputs)
    edges = set(comparison.recovered)
    known = any(set(prune_dangling({(a[0], a[1]) for a in alt})) == edges for alt in alternatives)
    fails = oracle.failing(edges)
    if fails:
        return Verdict("unfaithful", sufficient=False, counterexamples=fails, known_alternative=known)
    unneeded = oracle.unnecessary(edges)
    return Verdict(
        "not-minimal" if unneeded else "alternative", sufficient=True, unnecessary=unneeded, known_alternative=known
    )


def search_alternatives(
    model: CompiledTransformer,
    ablation: str = "zero",
    orders: int = 8,
    seed: int = 0,
    inputs: Sequence[list[Any]] | None = None,
    oracle: Oracle | None = None,
    start: Iterable[Edge] | None = None,
) -> list[list[Edge]]:
    """Minimal circuits found by greedy removal from ``start`` (default: every weight-supported edge) in
    ``orders`` seeded random orders; distinct results, sorted by size then edges."""
    oracle = oracle or Oracle(model, ablation, inputs)
    full = set(start) if start is not None else weight_supported_edges(model)
    if not oracle.sufficient(full):
        return []
    rng = random.Random(seed)
    found: set[tuple[Edge, ...]] = set()
    for _ in range(orders):
        order = sorted(full)
        rng.shuffle(order)
        found.add(tuple(sort_edges(minimise(oracle, full, order))))
    return [list(c) for c in sorted(found, key=lambda c: (len(c), c))]
