"""Attribution patching on the engine's graph: EAP and EAP-IG edge scores, and cutting them into circuits.

Why the dense edge mask: the disentangled forward gives a reader the input
``x_r = sum_w y~_w + sum_w m_wr (y_w - y~_w)``, so ``d metric / d m_wr`` at
``m = 1`` is exactly EAP's ``(y_w - y~_w) . d metric / d x_r`` summed over
examples, positions and features.  Making the (n_writers, n_readers) mask a
leaf tensor gives every edge's score from ONE backward pass per batch.

EAP-IG averages that mask gradient over ``m = alpha`` for ``alpha = k/steps``,
``k = 1..steps`` (a right Riemann sum of the integrated gradient along the
straight path from the ablated model, ``m = 0``, to the full one); every
reader input then lies on the line between its ablated and its clean value.

Which metric.  The faithfulness loss of pruning (KL from the full model) is 0
with a zero gradient at ``m = 1``, so EAP cannot use it.  As EAP does (logit
difference towards the clean answer), the default ``"answer"`` metric is
linear-ish at the full model and points from the ablated output to the clean one:

* categorical outputs: the log-probability of the full model's own prediction
  (its argmax) at every scored position;
* numerical outputs: the output projected on ``full - ablated`` (the empty
  circuit's output) at every scored position.

``"kl"`` (the engine's faithfulness loss, ``kl`` or ``seq_kl``) is offered for
EAP-IG, whose path avoids the flat point.  Ranking uses ``|score|``, as EAP-IG.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from edgeprune.core import options
from edgeprune.core.circuit import Circuit, Edge
from edgeprune.core.dangling import prune_dangling
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.graph import ComputationalGraph
from edgeprune.pruning import objective as obj
from edgeprune.pruning.adapter import ModelAdapter
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states, data_means
from edgeprune.pruning.train import PruneData

METHODS = options.RANKED_METHODS  # the attribution methods, named in edgeprune.core.options
METRICS = ("answer", "kl")

#: a custom metric: (circuit output of the batch, example indices of the batch) -> scalar summed over the batch
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----- shared helpers ------------------------------------------------------------
def edge_index(graph: ComputationalGraph) -> tuple[torch.Tensor, torch.Tensor]:
    """(writer index, reader index) of every allowed edge, in ``graph.edges`` order."""
    w = torch.tensor([graph.writer_index[e[0]] for e in graph.edges], dtype=torch.long)
    r = torch.tensor([graph.reader_index[e[1]] for e in graph.edges], dtype=torch.long)
    return w, r


def circuit_mask(graph: ComputationalGraph, edges, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Dense (n_writers, n_readers) 0/1 mask of ``edges`` (each checked against the graph)."""
    m = torch.zeros(len(graph.writers), len(graph.readers), dtype=dtype)
    for e in edges:
        graph.check_edge(tuple(e))
        m[graph.writer_index[e[0]], graph.reader_index[e[1]]] = 1.0
    return m


def batches(n: int, size: int):
    for start in range(0, n, size):
        yield torch.arange(start, min(n, start + size))


def take(data: PruneData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    ids = data.ids[idx]
    km = None if data.key_mask is None else data.key_mask[idx]
    corr = None if data.corrupted is None else data.corrupted[idx]
    return ids, km, corr


def stream_dtype(adapter: ModelAdapter, data: PruneData) -> torch.dtype:
    """The dtype the adapter's residual stream runs in (masks must match it)."""
    with torch.no_grad():
        return adapter.embed(data.ids[:1])[0].dtype


def check_ablation(ablation: str, data: PruneData) -> None:
    options.check_ablation(ablation)
    if ablation == "interchange" and data.corrupted is None:
        raise EdgePruneError(
            "interchange ablation needs corrupted inputs in the data; give corruptions or use zero ablation"
        )


@torch.no_grad()
def circuit_outputs(
    adapter: ModelAdapter, data: PruneData, ablation: str, mask: torch.Tensor, batch_size: int = 512
) -> torch.Tensor:
    """The task output of the circuit given by a dense edge mask, on every example."""
    fwd = DisentangledForward(adapter)
    means = data_means(adapter, data, ablation)
    outs = []
    for idx in batches(len(data), batch_size):
        ids, km, corr = take(data, idx)
        outs.append(fwd.output(ids, mask, None, ablated_states(adapter, ablation, ids, corr, km, means), km))
    return torch.cat(outs)


# ----- metrics -------------------------------------------------------------------
def _answer_metric(kind: str, full: torch.Tensor, ablated_out: torch.Tensor | None, mask: torch.Tensor) -> MetricFn:
    if kind == "categorical":
        answer = full.argmax(-1)  # (N, T)

        def metric(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            lp = torch.log_softmax(out, -1).gather(-1, answer[idx].unsqueeze(-1)).squeeze(-1)
            return (lp * mask[idx].to(lp.dtype)).sum()

        return metric
    assert ablated_out is not None
    direction = (full - ablated_out) * mask.to(full.dtype)

    def projected(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return (out * direction[idx].to(out.dtype)).sum()

    return projected


def _kl_metric(loss_kind: str, full: torch.Tensor, mask: torch.Tensor) -> MetricFn:
    def metric(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        # faithfulness_loss divides by the batch size; undo it so batches add up
        return obj.faithfulness_loss(loss_kind, full[idx].to(out.dtype), out, mask[idx]) * len(idx)

    return metric


def make_metric(
    metric: str | MetricFn, adapter: ModelAdapter, data: PruneData, ablation: str, batch_size: int = 512
) -> MetricFn:
    """Turn a metric name into a function of (circuit output, example indices)."""
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise EdgePruneError(
            f"unknown attribution metric {metric!r}; use one of {', '.join(METRICS)} or pass a function"
        )
    with torch.no_grad():
        full = adapter.full_output(data.ids, data.key_mask)
        mask = adapter.loss_mask(data.ids, data.key_mask)
    if metric == "kl":
        return _kl_metric(obj.default_loss(adapter.output_kind), full, mask)
    ablated_out = None
    if adapter.output_kind != "categorical":
        zeros = torch.zeros(len(adapter.graph.writers), len(adapter.graph.readers), dtype=stream_dtype(adapter, data))
        ablated_out = circuit_outputs(adapter, data, ablation, zeros, batch_size)
    return _answer_metric(adapter.output_kind, full, ablated_out, mask)


# ----- scores ----------------------------------------------------------------------
@dataclass
class EdgeScores:
    """One score per allowed edge (``graph.edges`` order); larger ``|score|`` = more important."""

    graph: ComputationalGraph
    scores: torch.Tensor  # (n_edges,)
    method: str
    metric: str
    ablation: str
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    def order(self) -> torch.Tensor:
        """Edge indices by decreasing ``|score|``; ties keep graph order (stable)."""
        return torch.sort(self.scores.abs(), descending=True, stable=True).indices

    def ranked(self) -> list[tuple[Edge, float]]:
        edges = self.graph.edges
        return [(edges[i], float(self.scores[i])) for i in self.order().tolist()]

    def top_edges(self, k: int) -> list[Edge]:
        """The ``k`` highest-``|score|`` edges, before dangling edges are removed."""
        if k < 0:
            raise EdgePruneError(f"cannot keep {k} edges; give k >= 0")
        edges = self.graph.edges
        return [edges[i] for i in self.order()[: min(k, len(edges))].tolist()]

    def top_k(self, k: int) -> Circuit:
        """Circuit of the top ``k`` edges minus dangling ones (so it may hold fewer than ``k``, as EAP-IG's ``prune``)."""
        return self._circuit(self.top_edges(k), {"cut": "top_k", "k": k})

    def at_sparsity(self, sparsity: float) -> Circuit:
        """Top ``round((1 - sparsity) * n_edges)`` edges, dangling ones removed."""
        if not 0.0 <= sparsity <= 1.0:
            raise EdgePruneError(f"sparsity must lie in [0, 1], got {sparsity}")
        k = int(round((1.0 - sparsity) * self.graph.n_edges))
        return self._circuit(self.top_edges(k), {"cut": "sparsity", "sparsity": sparsity, "k": k})

    def above(self, threshold: float, relative: bool = False) -> Circuit:
        """Edges with ``|score| > threshold`` (times the largest ``|score|`` when ``relative``)."""
        a = self.scores.abs()
        t = threshold * float(a.max()) if relative and a.numel() else threshold
        edges = [e for e, keep in zip(self.graph.edges, (a > t).tolist()) if keep]
        return self._circuit(edges, {"cut": "threshold", "threshold": threshold, "relative": relative})

    def _circuit(self, edges: list[Edge], cut: dict) -> Circuit:
        kept = prune_dangling(edges, self.graph.embeddings, self.ablation)
        meta = {
            "method": self.method,
            "metric": self.metric,
            "ablation": self.ablation,
            **cut,
            "n_edges_total": self.graph.n_edges,
            **self.meta,
        }
        return Circuit(edges=sorted(kept), model=self.graph.model, meta=meta)


def edge_scores(
    adapter: ModelAdapter,
    data: PruneData,
    method: str = "eap",
    ablation: str = "zero",
    metric: str | MetricFn = "answer",
    steps: int = 5,
    batch_size: int = 256,
) -> EdgeScores:
    """EAP (``method="eap"``) or EAP-IG (``"eap-ig"``, ``steps`` points alpha = 1/steps .. 1) scores of every edge,
    averaged over the examples of ``data``."""
    if method not in METHODS:
        raise EdgePruneError(f"unknown attribution method {method!r}; use one of {', '.join(METHODS)}")
    if method == "eap-ig" and steps < 1:
        raise EdgePruneError(f"EAP-IG needs at least 1 step, got {steps}")
    if method == "eap" and metric == "kl":
        raise EdgePruneError(
            "EAP with the KL metric gives all-zero scores (KL to the full model is flat at the full model); "
            "use metric 'answer' or EAP-IG"
        )
    check_ablation(ablation, data)
    t0 = time.perf_counter()
    g = adapter.graph
    fn = make_metric(metric, adapter, data, ablation, batch_size)
    fwd = DisentangledForward(adapter)
    allowed = g.allowed_mask().to(stream_dtype(adapter, data))
    alphas = [1.0] if method == "eap" else [k / steps for k in range(1, steps + 1)]
    total = torch.zeros_like(allowed, dtype=torch.float64)
    means = data_means(adapter, data, ablation)  # mean ablation: over the reference set, once
    for idx in batches(len(data), batch_size):
        ids, km, corr = take(data, idx)
        ablated = ablated_states(adapter, ablation, ids, corr, km, means)
        for a in alphas:
            mask = (allowed * a).requires_grad_(True)
            value = fn(fwd.output(ids, mask, None, ablated, km), idx)
            (grad,) = torch.autograd.grad(value, mask)
            total += grad.detach().to(torch.float64)
    w, r = edge_index(g)
    scores = total[w, r] / (len(data) * len(alphas))  # float64: sums of many small products
    meta = {"steps": steps} if method == "eap-ig" else {}
    return EdgeScores(
        g,
        scores,
        method,
        metric if isinstance(metric, str) else getattr(metric, "__name__", "custom"),
        ablation,
        time.perf_counter() - t0,
        meta,
    )
