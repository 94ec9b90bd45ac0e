"""HAP (hybrid attribution and pruning): attribution patching keeps a subgraph, Edge Pruning runs inside it.

Why: attribution is one backward pass per batch while pruning trains a mask per
edge, so HAP spends the expensive optimisation only on edges that attribution
ranks high.  Edges outside the kept subgraph get no log-alpha at all
(``Pruner(edge_subset=...)``): their mask is 0 throughout and the final circuit
cannot contain them.  The sparsity that the Lagrangian pushes on is measured
over the kept edges (the pruner only sees those), so a run's target means
"how much of the subgraph to remove".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from edgeprune.core.circuit import Circuit, Edge
from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapter import ModelAdapter
from edgeprune.pruning.attribution import EdgeScores, MetricFn, edge_scores
from edgeprune.pruning.train import PruneConfig, PruneData, Pruner, PruneResult

DEFAULT_KEEP_FRACTION = 0.5


@dataclass
class HapResult:
    circuit: Circuit
    subset: list[Edge]  # the kept subgraph handed to pruning
    scores: EdgeScores
    prune: PruneResult
    attribution_seconds: float
    prune_seconds: float  # the training loop, as ``PruneResult.seconds``

    @property
    def seconds(self) -> float:
        return self.attribution_seconds + self.prune_seconds


def select_subgraph(
    scores: EdgeScores, keep_fraction: float | None = None, edge_budget: int | None = None
) -> list[Edge]:
    """The ``edge_budget`` (or ``ceil(keep_fraction * n_edges)``) highest-``|score|`` edges, dangling ones included:
    pruning may still route through an edge that looks dangling in the ranking alone."""
    if (keep_fraction is None) == (edge_budget is None):
        raise EdgePruneError("give HAP either a kept fraction or an edge budget, not both (nor neither)")
    n = scores.graph.n_edges
    if edge_budget is not None:
        if edge_budget < 1:
            raise EdgePruneError(f"HAP edge budget must be at least 1, got {edge_budget}")
        k = min(edge_budget, n)
    else:
        assert keep_fraction is not None
        if not 0.0 < keep_fraction <= 1.0:
            raise EdgePruneError(f"HAP kept fraction must lie in (0, 1], got {keep_fraction}")
        k = max(1, math.ceil(keep_fraction * n))
    return scores.top_edges(k)


def hap(
    adapter: ModelAdapter,
    data: PruneData,
    config: PruneConfig,
    keep_fraction: float | None = None,
    edge_budget: int | None = None,
    method: str = "eap",
    metric: str | MetricFn = "answer",
    ig_steps: int = 5,
    progress: bool = False,
) -> HapResult:
    """Score edges (``method`` eap or eap-ig, under ``config.ablation``), keep the top of them, prune inside."""
    if keep_fraction is None and edge_budget is None:
        keep_fraction = DEFAULT_KEEP_FRACTION
    t0 = time.perf_counter()
    scores = edge_scores(adapter, data, method, config.ablation, metric, steps=ig_steps)
    subset = select_subgraph(scores, keep_fraction, edge_budget)
    t_attr = time.perf_counter() - t0
    pruner = Pruner(adapter, data, config, edge_subset=subset)
    result = pruner.run(progress=progress)
    circuit = result.circuit
    circuit.meta.update(
        {
            "method": "hap",
            "attribution": method,
            "kept_edges": len(subset),
            "keep_fraction": keep_fraction,
            "edge_budget": edge_budget,
        }
    )
    return HapResult(circuit, subset, scores, result, t_attr, result.seconds)
