"""ROC curve and AUC of an edge ranking against the ground-truth edges (how InterpBench and auto-circuit score methods).

Why a curve and not one circuit: a method's circuit depends on where it cuts; the
ranking it cuts from says how well it separates the circuit's edges from the rest
at every cut.  Ties are one step: edges with equal scores enter together, so the
curve moves diagonally through them and the AUC counts a tied (truth, non-truth)
pair as half (the Mann-Whitney statistic).  Edges of the universe without a
score rank last, tied with each other.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

from edgeprune.core.errors import EdgePruneError

E = TypeVar("E", bound=Hashable)


def roc_curve(
    scores: Mapping[E, float], truth: Iterable[E], universe: Iterable[E]
) -> tuple[list[float], list[float], float]:
    """(false-positive rates, true-positive rates, area under the curve) of ranking ``universe`` by ``scores``
    (larger = more likely in the circuit) against ``truth``.

    The curve starts at (0, 0) and has one point per distinct score, in decreasing order; the area
    is the trapezoid rule over it.  With no truth edge, or no other edge, the AUC is NaN.
    """
    pool = list(dict.fromkeys(universe))
    inside = set(pool)
    positives = set(truth)
    outside = positives - inside
    if outside:
        raise EdgePruneError(
            f"{len(outside)} ground-truth edge(s) are not in the ranked universe, e.g. {min(map(str, outside))}"
        )
    n_pos, n_neg = len(positives), len(pool) - len(positives)
    groups: dict[float, list[int]] = {}
    for e in pool:
        s = float(scores.get(e, -math.inf))
        if math.isnan(s):
            raise EdgePruneError(f"edge {e} has a NaN score; a ranking needs comparable scores")
        g = groups.setdefault(s, [0, 0])
        g[0 if e in positives else 1] += 1
    fpr, tpr = [0.0], [0.0]
    tp = fp = 0
    for s in sorted(groups, reverse=True):
        tp += groups[s][0]
        fp += groups[s][1]
        fpr.append(fp / n_neg if n_neg else math.nan)
        tpr.append(tp / n_pos if n_pos else math.nan)
    if not n_pos or not n_neg:
        return fpr, tpr, math.nan
    auc = sum((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2 for i in range(1, len(fpr)))
    return fpr, tpr, auc


def lexicographic_scores(*keys: Mapping[E, float], universe: Iterable[E]) -> dict[E, float]:
    """One score per edge that orders as the tuple of ``keys`` (missing entries lowest): dense ranks, ties kept.

    Why: a two-phase method (HAP: attribution keeps a subgraph, pruning ranks inside it) ranks
    by "kept first, then the learned gate, then the attribution"."""
    pool = list(dict.fromkeys(universe))

    def key(e: E) -> tuple[float, ...]:
        return tuple(float(k.get(e, -math.inf)) for k in keys)

    ranks = {k: i for i, k in enumerate(sorted({key(e) for e in pool}))}
    return {e: float(ranks[key(e)]) for e in pool}
