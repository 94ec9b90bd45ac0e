"""Faithfulness curves at MIB's edge budgets, and their CPR and CMD (the MIB circuit track's two numbers).

Why: one circuit per method depends on where it was cut; MIB instead cuts every
method's ranking at the same budgets and integrates.  The definitions, as MIB's
evaluation code computes them:

* budgets: 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100 % of the graph's edges; at
  budget ``p`` the circuit is the top ``int(p * n_edges)`` edges of the ranking
  (ties in graph order), dangling edges then removed (EAP-IG's ``apply_topn`` with
  ``prune=True``);
* normalized faithfulness ``f(C) = (m(C) - m(empty)) / (m(full) - m(empty))``, with
  ``m`` the metric (the task's metric on language models; minus the KL to the full
  model on compiled programs, so ``f = 1 - KL(C) / KL(empty)``);
* CPR = the area under ``f`` and CMD = the area under ``|1 - f|``, trapezoid rule
  over the budget axis as a fraction of the edges (0.001 .. 1, linear: MIB's
  ``evaluate_area_under_curve`` with ``log_scale=False``; some copies of that script
  offer a log axis), so both lie in [0, ~1] when ``f`` does: CPR higher is better,
  CMD lower.  The edge count is this project's (tok and pos apart), so on the same
  model ``int(p * n)`` can differ by a few edges from EAP-IG's count with one input.

Two ways to ablate (auto-circuit reports both): ``complement``, the usual one, keeps
the circuit and ablates every other edge; ``circuit`` ablates the circuit's edges
and keeps the rest, so a faithful ranking drives ``f`` down quickly (there a lower
CPR is better).  No torch here: the caller passes how to score a set of edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from edgeprune.core import names
from edgeprune.core.dangling import prune_dangling
from edgeprune.core.errors import EdgePruneError

Edge = tuple[str, str]

#: MIB's edge budgets, in percent of the graph's edges
MIB_BUDGETS_PERCENT: tuple[float, ...] = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
MIB_BUDGETS: tuple[float, ...] = tuple(p / 100 for p in MIB_BUDGETS_PERCENT)
MODES = ("complement", "circuit")


def normalized(m: float, m_full: float, m_empty: float) -> float:
    """``(m - m(empty)) / (m(full) - m(empty))``; NaN when the full model and the empty circuit score the same."""
    span = m_full - m_empty
    return (m - m_empty) / span if span else math.nan


def trapezoid(xs: Sequence[float], ys: Sequence[float]) -> float:
    if len(xs) != len(ys):
        raise EdgePruneError(f"{len(xs)} budgets but {len(ys)} values")
    return sum((xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1]) / 2 for i in range(1, len(xs)))


def cpr_cmd(budgets: Sequence[float], f: Sequence[float]) -> tuple[float, float]:
    """(CPR, CMD): areas under ``f`` and under ``|1 - f|`` over ``budgets`` (fractions of the edges), trapezoids."""
    return trapezoid(budgets, f), trapezoid(budgets, [abs(1.0 - v) for v in f])


def ranking_order(scores: Mapping[Edge, float], universe: Iterable[Edge]) -> list[Edge]:
    """``universe`` by decreasing score (edges without one last), ties in the universe's order."""
    pool = list(universe)
    return sorted(pool, key=lambda e: -float(scores.get(e, -math.inf)))


@dataclass
class FaithfulnessCurve:
    mode: str
    budgets: list[float]  # fractions of the edges
    k: list[int]  # edges taken from the ranking at each budget
    edges: list[int]  # edges left after dangling ones are removed
    metric: list[float]  # m of each circuit
    f: list[float]  # normalized faithfulness
    cpr: float
    cmd: float

    def to_dict(self) -> dict:
        return asdict(self)


def faithfulness_curve(
    order: Sequence[Edge],
    metric: Callable[[list[Edge]], float],
    m_full: float,
    m_empty: float,
    mode: str = "complement",
    budgets: Sequence[float] = MIB_BUDGETS,
    embeddings: tuple[str, ...] = (names.TOK, names.POS),
    ablation: str | None = None,
) -> FaithfulnessCurve:
    """The curve of one ranking (``order``: every edge of the graph, best first); ``metric(edges)`` scores the
    circuit that keeps exactly ``edges`` (everything else ablated)."""
    if mode not in MODES:
        raise EdgePruneError(f"unknown faithfulness mode {mode!r}; use one of {', '.join(MODES)}")
    bad = [b for b in budgets if not 0.0 <= b <= 1.0]
    if bad:
        raise EdgePruneError(f"edge budgets are fractions in [0, 1]; got {bad}")
    n = len(order)
    ks, sizes, ms, fs = [], [], [], []
    for b in budgets:
        k = int(b * n)
        kept = prune_dangling(order[:k], embeddings, ablation)
        edges = sorted(kept) if mode == "complement" else [e for e in order if e not in kept]
        m = metric(edges)
        ks.append(k)
        sizes.append(len(kept))
        ms.append(m)
        fs.append(normalized(m, m_full, m_empty))
    cpr, cmd = cpr_cmd(list(budgets), fs)
    return FaithfulnessCurve(mode, list(budgets), ks, sizes, ms, fs, cpr, cmd)
