"""Hard-concrete (Louizos et al. 2018) gates: the relaxed binary masks of Edge Pruning.

Why this shape: masks exist only for edges the graph allows (a flat vector of
``graph.n_edges`` log-alphas) and for writers (node masks), so no parameter is
spent on impossible edges (the reference over-allocates a dense matrix whose
unused entries drift under weight decay and distort the deterministic mask).
Constants follow the reference implementation (``method-facts.md`` section 3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from edgeprune.core.errors import EdgePruneError
from edgeprune.core.graph import ComputationalGraph


@dataclass(frozen=True)
class HardConcreteConfig:
    beta: float = 2.0 / 3.0  # temperature
    left: float = -0.1  # stretch interval [left, right]
    right: float = 1.1
    eps: float = 1e-6  # u ~ U(eps, 1 - eps)
    init_mean: float = 10.0  # log_alpha ~ N(init_mean, init_std^2)
    init_std: float = 0.01
    eval_factor: float = 0.8  # deterministic soft mask = sigmoid(log_alpha / beta * eval_factor)


DEFAULT = HardConcreteConfig()


def sample_gates(
    log_alpha: torch.Tensor, cfg: HardConcreteConfig = DEFAULT, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One reparameterised sample z in [0, 1] per entry (gradients flow to ``log_alpha``)."""
    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype, device=log_alpha.device)
    u = u * (1 - 2 * cfg.eps) + cfg.eps
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / cfg.beta)
    return (s * (cfg.right - cfg.left) + cfg.left).clamp(0.0, 1.0)


def gate_score(log_alpha: torch.Tensor, z: torch.Tensor, cfg: HardConcreteConfig = DEFAULT) -> torch.Tensor:
    """d log q(z; log_alpha) / d log_alpha for sampled gates ``z`` (the score-function term).

    Why: a compiled block is a step function of its input scale, so the loss is
    flat in z except at a cliff and the pathwise (reparameterised) gradient rarely
    sees what cutting an edge costs; the score function does, from which samples
    had the gate off.  Three cases of the clamped, stretched concrete: z = 0 has
    probability Q0 = sigmoid(c0 - a) (score -(1 - Q0)), z = 1 has probability
    sigmoid(a - c1) (score sigmoid(c1 - a)), and in between the underlying
    logistic noise u gives score 2u - 1; c0, c1 = beta * logit of the stretch
    points of 0 and 1.
    """
    a = log_alpha.detach()
    z = z.detach()
    span = cfg.right - cfg.left
    c0 = cfg.beta * math.log(-cfg.left / cfg.right)
    c1 = cfg.beta * math.log((1 - cfg.left) / (cfg.right - 1))
    s = ((z - cfg.left) / span).clamp(1e-6, 1 - 1e-6)
    u = torch.sigmoid(cfg.beta * torch.logit(s) - a)
    middle = 2 * u - 1
    return torch.where(z <= 0, -torch.sigmoid(a - c0), torch.where(z >= 1, torch.sigmoid(c1 - a), middle))


def prob_nonzero(log_alpha: torch.Tensor, cfg: HardConcreteConfig = DEFAULT) -> torch.Tensor:
    """P(z > 0) in closed form: 1 - Q(0) with Q the stretched concrete CDF."""
    return torch.sigmoid(log_alpha - cfg.beta * math.log(-cfg.left / cfg.right))


def expected_l0(log_alpha: torch.Tensor, cfg: HardConcreteConfig = DEFAULT) -> torch.Tensor:
    """Expected number of non-zero gates (the closed-form L0 norm)."""
    return prob_nonzero(log_alpha, cfg).sum()


def soft_mask(log_alpha: torch.Tensor, cfg: HardConcreteConfig = DEFAULT) -> torch.Tensor:
    """The reference's deterministic soft value of each gate (before zeroing)."""
    return torch.sigmoid(log_alpha / cfg.beta * cfg.eval_factor)


def deterministic_gates(log_alpha: torch.Tensor, cfg: HardConcreteConfig = DEFAULT) -> torch.Tensor:
    """Evaluation mask: the round(sum Q(0)) smallest soft values are set to 0, the rest kept soft."""
    soft = soft_mask(log_alpha, cfg)
    n_zero = int(round(float((1 - prob_nonzero(log_alpha.detach(), cfg)).sum())))
    if n_zero > 0:
        idx = torch.argsort(soft)[:n_zero]
        soft = soft.clone()
        soft[idx] = 0.0
    return soft


@dataclass(frozen=True)
class SubsetGraph(ComputationalGraph):
    """A graph whose allowed edges are a fixed subset of another's (HAP's kept subgraph).

    Writers, readers and their order are the parent's; only ``edges`` (and what derives from it)
    shrink, so masks parametrise and circuits list just the kept edges.
    """

    subset: frozenset = frozenset()

    @cached_property
    def edges(self) -> list[tuple[str, str]]:
        return [e for e in ComputationalGraph.edges.func(self) if e in self.subset]  # type: ignore[attr-defined]

    def allowed_mask(self) -> torch.Tensor:
        m = torch.zeros(len(self.writers), len(self.readers))
        for w, r in self.edges:
            m[self.writer_index[w], self.reader_index[r]] = 1
        return m


def restrict_graph(graph: ComputationalGraph, edge_subset: Iterable[tuple[str, str]] | torch.Tensor) -> SubsetGraph:
    """``graph`` limited to ``edge_subset``: edges, or a bool (n_writers, n_readers) matrix."""
    if torch.is_tensor(edge_subset):
        shape = (len(graph.writers), len(graph.readers))
        if tuple(edge_subset.shape) != shape:
            raise EdgePruneError(
                f"edge_subset matrix has shape {tuple(edge_subset.shape)}, the graph needs {shape} "
                "(n_writers, n_readers)"
            )
        sel = edge_subset.bool()
        if bool((sel & (graph.allowed_mask() == 0)).any()):
            raise EdgePruneError(
                "edge_subset marks entries that are not edges of the graph (a writer after its reader); "
                "mark only allowed edges (graph.allowed_mask())"
            )
        edges = {(graph.writers[w], graph.readers[r]) for w, r in sel.nonzero().tolist()}
    else:
        edges = {(str(w), str(r)) for w, r in edge_subset}
        for e in edges:
            graph.check_edge(e)
    if not edges:
        raise EdgePruneError("edge_subset is empty; keep at least one edge for pruning to choose from")
    base = {f: getattr(graph, f) for f in ("n_layers", "n_heads", "embeddings", "n_kv_heads", "model", "meta")}
    return SubsetGraph(**base, subset=frozenset(edges))


class MaskParameters(nn.Module):
    """Edge log-alphas (one per allowed edge, ordered as ``graph.edges``) and node log-alphas (one per writer).

    With ``edge_subset`` only those edges get a log-alpha (``self.graph`` becomes the restricted
    graph); every other edge has mask 0 in ``dense`` and never enters the optimisation.
    """

    edge_writer: torch.Tensor  # (n_edges,) writer index of each edge (a buffer)
    edge_reader: torch.Tensor  # (n_edges,) reader index of each edge (a buffer)

    def __init__(
        self,
        graph: ComputationalGraph,
        cfg: HardConcreteConfig = DEFAULT,
        generator: torch.Generator | None = None,
        edge_subset: Iterable[tuple[str, str]] | torch.Tensor | None = None,
    ):
        super().__init__()
        self.full_graph = graph
        if edge_subset is not None:
            graph = restrict_graph(graph, edge_subset)
        self.graph = graph
        self.cfg = cfg
        self.edge_log_alpha = nn.Parameter(torch.empty(graph.n_edges))
        self.node_log_alpha = nn.Parameter(torch.empty(len(graph.writers)))
        self.reset(generator)
        # (writer index, reader index) of every flat edge entry, for scattering into a dense matrix
        w_idx = [graph.writer_index[w] for w, _ in graph.edges]
        r_idx = [graph.reader_index[r] for _, r in graph.edges]
        self.register_buffer("edge_writer", torch.tensor(w_idx, dtype=torch.long), persistent=False)
        self.register_buffer("edge_reader", torch.tensor(r_idx, dtype=torch.long), persistent=False)

    @torch.no_grad()
    def reset(self, generator: torch.Generator | None = None) -> None:
        for p in (self.edge_log_alpha, self.node_log_alpha):
            p.copy_(torch.randn(p.shape, generator=generator) * self.cfg.init_std + self.cfg.init_mean)

    def sample(
        self, generator: torch.Generator | None = None, n: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled (edge z, node z): shapes (n_edges,), (n_writers,) for one sample shared by a whole
        batch (the reference), or (n, n_edges), (n, n_writers) for ``n`` independent samples."""
        if n is None:
            return sample_gates(self.edge_log_alpha, self.cfg, generator), sample_gates(
                self.node_log_alpha, self.cfg, generator
            )
        e = self.edge_log_alpha.unsqueeze(0).expand(n, -1)
        v = self.node_log_alpha.unsqueeze(0).expand(n, -1)
        return sample_gates(e, self.cfg, generator), sample_gates(v, self.cfg, generator)

    def deterministic(self) -> tuple[torch.Tensor, torch.Tensor]:
        return deterministic_gates(self.edge_log_alpha, self.cfg), deterministic_gates(self.node_log_alpha, self.cfg)

    def dense(self, edge_z: torch.Tensor) -> torch.Tensor:
        """Scatter flat edge values (n_edges,) or (n, n_edges) into (n_writers, n_readers) or
        (n, n_writers, n_readers); disallowed entries stay 0."""
        W, R = len(self.graph.writers), len(self.graph.readers)
        if edge_z.dim() == 1:
            return edge_z.new_zeros(W, R).index_put((self.edge_writer, self.edge_reader), edge_z)
        out = edge_z.new_zeros(W, R, edge_z.shape[0]).index_put((self.edge_writer, self.edge_reader), edge_z.T)
        return out.permute(2, 0, 1)
