"""ACDC (Conmy et al. 2023) on the engine's graph: greedy edge removal in reverse topological order.

Start from every edge.  Readers are visited from ``out`` back to the first
layer (``reversed(graph.readers)``: a layer's MLP before its heads' v, k, q),
and a reader's incoming edges from the latest writer to the embeddings, as
ACDC does.  Each edge is tentatively ablated (mask 0: the reader sees the
writer's ablated output) and stays removed when the metric, KL from the full
model (the engine's faithfulness loss: ``kl``, or ``seq_kl`` for numerical
outputs), rises by at most ``threshold`` over its current value.  A reader
whose node no longer writes to anything loses its inputs without a test
(they cannot reach the output), as ACDC skips such nodes.  One forward over the
data per tested edge; compiled models make that cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edgeprune.core import names
from edgeprune.core.circuit import Circuit
from edgeprune.core.dangling import prune_dangling
from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapter import ModelAdapter
from edgeprune.pruning.scoring import CircuitScorer
from edgeprune.pruning.train import PruneData


@dataclass
class AcdcResult:
    circuit: Circuit
    metric: float  # KL of the final circuit (before dangling-edge removal)
    empty_metric: float  # KL of the empty circuit, the scale of the threshold
    threshold: float  # absolute, in the metric's units
    tested: int  # forwards spent on edge tests
    seconds: float
    log: list[dict] = field(default_factory=list)  # one entry per tested edge


#: ACDC's metric is the one circuit scorer (KL to the full model on the data); the old name stays importable
FaithfulnessEvaluator = CircuitScorer


def acdc(
    adapter: ModelAdapter,
    data: PruneData,
    ablation: str = "zero",
    threshold: float = 0.0,
    relative: bool = False,
    loss: str | None = None,
    evaluator: CircuitScorer | None = None,
) -> AcdcResult:
    """Greedy ACDC; ``threshold`` is tau in KL units, or a fraction of the empty circuit's KL when ``relative``.

    An edge stays removed when the KL rises by at most tau (so tau = 0 removes only edges whose
    removal changes nothing, and keeps every edge whose removal raises the KL).
    """
    if threshold < 0:
        raise EdgePruneError(f"ACDC threshold must be >= 0, got {threshold}")
    t0 = time.perf_counter()
    ev = evaluator or CircuitScorer(adapter, data, ablation, loss)
    g = adapter.graph
    empty = ev.empty()
    tau = threshold * empty if relative else threshold
    mask = g.allowed_mask()
    current = ev(mask)
    log: list[dict] = []
    for reader in reversed(g.readers):
        r = g.reader_index[reader]
        node = names.reader_node(reader)
        if node != names.OUT and not bool(mask[g.writer_index[node]].any()):
            mask[:, r] = 0.0  # the node feeds nothing any more: its inputs cannot matter
            continue
        for w in reversed(range(g.n_inputs(reader))):
            if mask[w, r] == 0:
                continue
            mask[w, r] = 0.0
            value = ev(mask)
            delta = value - current
            removed = delta <= tau
            log.append({"edge": [g.writers[w], reader], "delta": delta, "removed": removed})
            if removed:
                current = value
            else:
                mask[w, r] = 1.0
    kept = [(g.writers[w], g.readers[r]) for w, r in mask.nonzero().tolist()]
    circuit = Circuit(
        edges=sorted(prune_dangling(kept, g.embeddings, ablation)),
        model=g.model,
        meta={
            "method": "acdc",
            "ablation": ablation,
            "threshold": tau,
            "loss": ev.loss_kind,
            "n_edges_total": g.n_edges,
        },
    )
    return AcdcResult(circuit, current, empty, tau, len(log), time.perf_counter() - t0, log)
