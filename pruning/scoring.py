"""One circuit scorer: the faithfulness loss (KL to the full model) of a circuit on fixed data.

A circuit is a dense edge mask (writers x readers, 1 = kept).  The data's ablated
states and the full model's outputs are computed once; each call is then one
masked forward per chunk.  ACDC tests edges with it, ``compare-methods`` scores
every method's circuit and picks ranked methods' cuts with it, on compiled
programs and language models alike.

Which positions count (``scored``):

* ``"adapter"``: every position the adapter marks (``adapter.loss_mask``), with
  the adapter's default loss (``kl``; ``seq_kl`` for numerical programs): the
  pruning loss of a compiled program.
* ``"task"``: the task's scored positions (``PruneData.loss_mask``: the answer
  tokens), ``kl``: the loss the pruner trains on for a language-model task.  Only
  the full model's log-probabilities at those positions are cached, not its
  logits everywhere (a vocabulary-wide tensor per token).

Both give the mean over examples of the per-example loss summed over scored positions.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning import objective as obj
from edgeprune.pruning.adapter import ModelAdapter
from edgeprune.pruning.attribution import batches, check_ablation, stream_dtype, take
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states, data_means
from edgeprune.pruning.train import PruneData

Scored = Literal["adapter", "task"]


def masked_forward(adapter: ModelAdapter) -> Any:
    """The masked forward of ``adapter``: its own when it has one (FSDP runs it inside the root unit)."""
    make = getattr(adapter, "engine_forward", None)
    return make() if make is not None else DisentangledForward(adapter)


class CircuitScorer:
    """Faithfulness loss of a circuit (dense edge mask) to the full model on fixed data; ablated states cached once."""

    def __init__(
        self,
        adapter: ModelAdapter,
        data: PruneData,
        ablation: str,
        loss: str | None = None,
        batch_size: int = 2048,
        scored: Scored = "adapter",
    ):
        if scored not in ("adapter", "task"):
            raise EdgePruneError(f"scored must be 'adapter' or 'task', got {scored!r}")
        check_ablation(ablation, data)
        self.adapter, self.data, self.ablation, self.scored = adapter, data, ablation, scored
        self.loss_kind = loss or ("kl" if scored == "task" else obj.default_loss(adapter.output_kind))
        if scored == "task" and self.loss_kind != "kl":
            raise EdgePruneError(f"scoring at the task's positions uses the 'kl' loss, got {self.loss_kind!r}")
        self.forward = masked_forward(adapter)
        # masks in the stream's dtype; at task positions in float32 (the forward casts, as the pruner's masks)
        self.dtype = stream_dtype(adapter, data) if scored == "adapter" else torch.float32
        self.n = len(data)
        self.chunks: list[tuple] = []  # (ids, key mask, ablated states, full-model target, scored positions)
        with torch.no_grad():
            means = data_means(adapter, data, ablation)  # mean ablation: over the reference set, once
            for idx in batches(len(data), batch_size):
                ids, km, corr = take(data, idx)
                full = adapter.full_output(ids, km)
                abl = ablated_states(adapter, ablation, ids, corr, km, means)
                if scored == "adapter":
                    self.chunks.append((ids, km, abl, full, adapter.loss_mask(ids, km)))
                else:
                    pos = data.loss_mask[idx.to(data.loss_mask.device)].bool().to(full.device)
                    self.chunks.append((ids, km, abl, torch.log_softmax(full.float(), -1)[pos], pos))

    @torch.no_grad()
    def outputs(self, mask: torch.Tensor) -> torch.Tensor:
        """The circuit's outputs on every example (B, T, V) or (B, T)."""
        mask = mask.to(self.dtype)
        return torch.cat([self._out(ids, mask, abl, km) for ids, km, abl, _, _ in self.chunks])

    def _out(self, ids: torch.Tensor, mask: torch.Tensor, abl: Any, km: torch.Tensor | None) -> torch.Tensor:
        if self.scored == "task":
            return self.forward.output(ids, mask.to(ids.device), None, abl, km)
        return self.forward.output(ids, mask, None, abl, km)

    @torch.no_grad()
    def __call__(self, mask: torch.Tensor) -> float:
        """Mean over examples of the faithfulness loss (summed over each example's scored positions)."""
        mask = mask.to(self.dtype)
        total = 0.0
        for ids, km, abl, target, pos in self.chunks:
            out = self._out(ids, mask, abl, km)
            if self.scored == "task":  # target: the full model's log-probabilities at the scored positions
                lp = torch.log_softmax(out.float(), -1)[pos]
                total += float((target.exp() * (target - lp)).sum())
            else:  # the loss is a batch mean: weighted by the chunk's size
                total += float(obj.faithfulness_loss(self.loss_kind, target, out, pos)) * len(ids)
        return total / self.n

    def empty(self) -> float:
        """The empty circuit's loss: the scale of relative tolerances (ACDC's tau, ranked methods' cut)."""
        g = self.adapter.graph
        return self(torch.zeros(len(g.writers), len(g.readers)))
