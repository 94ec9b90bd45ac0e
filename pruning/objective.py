"""The pruning objective: faithfulness (KL to the full model) plus a Lagrangian sparsity term.

Faithfulness losses (all "batchmean": summed over scored positions and classes, divided by B):

* ``kl`` (categorical outputs): KL(p_full || p_circuit) of the softmax over the
  output space at every scored position (the adapter decides which: for compiled
  programs, where the program defines an output).
* ``seq_kl`` (numerical outputs, the reference's xproportion loss): the single
  output value at every position, log-softmax across the sequence axis (BOS
  included), KL(full || circuit).  Kept as the default for numerical programs
  because it is what the reference used and it recovers the ground truth.
* ``mse`` (numerical outputs): squared error summed over scored positions; the
  regression alternative.  Unlike ``seq_kl`` it is not blind to a shift common
  to all positions, so it is offered for programs where that matters.

Sparsity: ``s = 1 - mean(sampled z)`` over allowed edges (as the reference:
from the *sampled* masks, not the closed-form L0), and the Lagrangian
``lambda1 (t - s) + lambda2 (t - s)^2`` whose lambdas are trained by gradient
ascent (``maximize=True`` in their optimizer group).
"""

from __future__ import annotations

import math

import torch

from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import check_loss


def default_loss(output_kind: str) -> str:
    return "kl" if output_kind == "categorical" else "seq_kl"


def faithfulness_loss(kind: str, full: torch.Tensor, circuit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``full``/``circuit``: logits (B, T, V) or values (B, T); ``mask`` (B, T) scored positions."""
    return faithfulness_per_example(kind, full, circuit, mask).sum() / full.shape[0]


def faithfulness_per_example(kind: str, full: torch.Tensor, circuit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) loss of each example (summed over its scored positions); their mean is the batch loss."""
    maskf = mask.to(circuit.dtype)
    if kind == "kl":
        if full.dim() != 3:
            raise EdgePruneError(
                "the 'kl' loss needs categorical outputs (B, T, V); use 'seq_kl' or 'mse' for numerical programs"
            )
        lp_full = torch.log_softmax(full, -1)
        lp_circ = torch.log_softmax(circuit, -1)
        kl = (lp_full.exp() * (lp_full - lp_circ)).sum(-1)
        return (kl * maskf).sum(-1)
    if kind == "seq_kl":
        if full.dim() != 2:
            raise EdgePruneError("the 'seq_kl' loss needs numerical outputs (B, T)")
        # the softmax runs over the scored positions (BOS and every real one; pads excluded)
        seq = mask
        neg = torch.finfo(circuit.dtype).min
        lp_full = torch.log_softmax(full.masked_fill(~seq, neg), -1)
        lp_circ = torch.log_softmax(circuit.masked_fill(~seq, neg), -1)
        kl = lp_full.exp() * (lp_full - lp_circ)
        return kl.masked_fill(~seq, 0.0).sum(-1)
    if kind == "mse":  # squared error at the scored positions
        diff = (full - circuit) if full.dim() == 2 else (full - circuit).pow(2).sum(-1).sqrt()
        return (diff.pow(2) * maskf).sum(-1)
    check_loss(kind)  # raises for an unknown name
    raise EdgePruneError(f"loss {kind!r} has no implementation here")


def sparsity(sampled: torch.Tensor) -> torch.Tensor:
    """Fraction of gates off, from the sampled gates (differentiable)."""
    return 1.0 - sampled.mean()


def lagrangian(target: float, s: torch.Tensor, lambda1: torch.Tensor, lambda2: torch.Tensor) -> torch.Tensor:
    gap = target - s
    return lambda1 * gap + lambda2 * gap * gap


def target_at(step: int, final: float, warmup_steps: int) -> float:
    """Linear warm-up of the sparsity target from 0 (may end above 1 to keep pushing)."""
    if warmup_steps <= 0:
        return final
    return final * min(1.0, step / warmup_steps)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then linear decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def check_finite(loss: torch.Tensor, step: int) -> None:
    if not math.isfinite(float(loss)):
        raise EdgePruneError(
            f"the pruning loss became {float(loss)} at step {step}; lower the learning rate, check the model's "
            "outputs for inf/NaN on the training inputs, or resume from an earlier checkpoint"
        )
