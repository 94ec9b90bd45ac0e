"""The paper's evaluation metrics, read at a batch's loss positions (method-facts §6).

Every metric takes ``(full_logits, circuit_logits, batch)`` with logits of shape (N, T, V) and
returns one value per example (a tensor of shape (N,)); :func:`evaluate` averages them.  Tasks
with ``batch.class_ids`` (Greater-Than) restrict predictions to those classes, because all GT
metrics in the paper are over {00..99}; other tasks use the full vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.tasks.base import TaskBatch

Metric = Callable[[torch.Tensor, torch.Tensor, TaskBatch], torch.Tensor]


def _check(full: torch.Tensor, circuit: torch.Tensor, batch: TaskBatch) -> None:
    if full.shape != circuit.shape:
        raise EdgePruneError(
            f"full-model logits {tuple(full.shape)} and circuit logits {tuple(circuit.shape)} differ in shape"
        )
    if full.dim() != 3 or full.shape[:2] != batch.clean_ids.shape:
        raise EdgePruneError(
            f"logits of shape {tuple(full.shape)} do not match the batch's (N, T) = {tuple(batch.clean_ids.shape)}; "
            "pass (N, T, V) logits of the batch's clean inputs"
        )


def _at_position(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """(N, V') logits at each example's first loss position, restricted to the task's classes."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    out = logits[rows, batch.positions.to(logits.device)]
    if batch.class_ids is not None:
        out = out.index_select(-1, batch.class_ids.to(logits.device))
    return out


def _restrict(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    return logits if batch.class_ids is None else logits.index_select(-1, batch.class_ids.to(logits.device))


def kl_divergence(full: torch.Tensor, circuit: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """KL(p_full || p_circuit) summed over the (restricted) vocabulary, averaged over each example's
    loss positions.  Differentiable in ``circuit``, so it doubles as the training loss."""
    _check(full, circuit, batch)
    logp_full = F.log_softmax(_restrict(full, batch).float(), dim=-1)
    logp_circ = F.log_softmax(_restrict(circuit, batch).float(), dim=-1)
    per_pos = (logp_full.exp() * (logp_full - logp_circ)).sum(-1)  # (N, T)
    mask = batch.loss_mask.to(per_pos.device).float()
    counts = mask.sum(-1).clamp_min(1.0)
    return (per_pos * mask).sum(-1) / counts


def _need_targets(batch: TaskBatch, what: str) -> None:
    if bool((batch.target_ids < 0).any()) or bool((batch.distractor_ids < 0).any()):
        raise EdgePruneError(
            f"{what} needs a target and a distractor token per example (IOI, GP, boolean); this batch lacks them"
        )


def logit_difference(full: torch.Tensor, circuit: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Circuit logit of the correct token minus that of the misleading one (= log-prob difference)."""
    _check(full, circuit, batch)
    _need_targets(batch, "logit difference")
    rows = torch.arange(circuit.shape[0], device=circuit.device)
    at = circuit[rows, batch.positions.to(circuit.device)].float()
    return at[rows, batch.target_ids.to(circuit.device)] - at[rows, batch.distractor_ids.to(circuit.device)]


def _year_probs(circuit: torch.Tensor, batch: TaskBatch, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if batch.class_ids is None or bool((batch.class_labels < 0).any()):
        raise EdgePruneError(f"{what} is a Greater-Than metric; this batch has no 00..99 classes and YY labels")
    probs = F.softmax(_at_position(circuit, batch).float(), dim=-1)  # (N, K)
    k = torch.arange(probs.shape[-1], device=probs.device)
    return probs, k


def probability_difference(full: torch.Tensor, circuit: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """GT: P(YY+1..99) - P(00..YY-1) over the 100 year classes.  Other tasks: P(target) - P(distractor)
    over the full vocabulary."""
    _check(full, circuit, batch)
    if batch.class_ids is None:
        _need_targets(batch, "probability difference")
        rows = torch.arange(circuit.shape[0], device=circuit.device)
        probs = F.softmax(circuit[rows, batch.positions.to(circuit.device)].float(), dim=-1)
        return probs[rows, batch.target_ids.to(circuit.device)] - probs[rows, batch.distractor_ids.to(circuit.device)]
    probs, k = _year_probs(circuit, batch, "probability difference")
    yy = batch.class_labels.to(probs.device)[:, None]
    return (probs * (k[None] > yy)).sum(-1) - (probs * (k[None] < yy)).sum(-1)


def probability_difference_10(full: torch.Tensor, circuit: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """GT: P(YY+1..min(99, YY+10)) - P(max(0, YY-10)..YY-1), as the reference's eval script."""
    _check(full, circuit, batch)
    probs, k = _year_probs(circuit, batch, "probability difference 10")
    yy = batch.class_labels.to(probs.device)[:, None]
    up = (k[None] > yy) & (k[None] <= yy + 10)
    down = (k[None] < yy) & (k[None] >= yy - 10)
    return (probs * up).sum(-1) - (probs * down).sum(-1)


def exact_match(full: torch.Tensor, circuit: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """1 where the circuit's argmax equals the full model's at every loss position, else 0."""
    _check(full, circuit, batch)
    same = _restrict(full, batch).argmax(-1) == _restrict(circuit, batch).argmax(-1)  # (N, T)
    mask = batch.loss_mask.to(same.device)
    return (same | ~mask).all(-1).float()


def accuracy(full: torch.Tensor, circuit: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """1 where the circuit's argmax is the answer token at every loss position.

    For Greater-Than, which has no single answer, "correct" means the predicted year exceeds YY.
    """
    _check(full, circuit, batch)
    if batch.class_ids is not None and bool((batch.class_labels >= 0).all()) and bool((batch.target_ids < 0).all()):
        pred = _at_position(circuit, batch).argmax(-1)
        return (pred > batch.class_labels.to(pred.device)).float()
    labels = batch.labels.to(circuit.device)
    mask = batch.loss_mask.to(circuit.device) & (labels >= 0)
    if not bool(mask.any(-1).all()):
        raise EdgePruneError("accuracy needs answer tokens at the loss positions; some examples have none")
    hit = circuit.argmax(-1) == labels
    return (hit | ~mask).all(-1).float()


def kendall_tau_b(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-b between rows of ``x`` and ``y`` (N, K), ties handled as scipy's default.

    tau_b = sum_{i<j} sgn(x_i-x_j) sgn(y_i-y_j) / sqrt(#pairs untied in x * #pairs untied in y);
    NaN where either row is constant (as scipy).
    """
    sx = torch.sign(x[:, :, None] - x[:, None, :])
    sy = torch.sign(y[:, :, None] - y[:, None, :])
    num = (sx * sy).sum((-1, -2))
    den = torch.sqrt(sx.abs().sum((-1, -2)) * sy.abs().sum((-1, -2)))
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.full_like(num, float("nan")))


def kendall_tau(full: torch.Tensor, circuit: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """GT: rank agreement of the circuit's and full model's probabilities over the 100 year classes."""
    _check(full, circuit, batch)
    if batch.class_ids is None:
        raise EdgePruneError("Kendall's tau is a Greater-Than metric; this batch has no 00..99 classes")
    p_full = F.softmax(_at_position(full, batch).double(), dim=-1)
    p_circ = F.softmax(_at_position(circuit, batch).double(), dim=-1)
    return kendall_tau_b(p_circ, p_full).float()


METRICS: dict[str, Metric] = {
    "kl": kl_divergence,
    "logit_diff": logit_difference,
    "prob_diff": probability_difference,
    "prob_diff_10": probability_difference_10,
    "exact_match": exact_match,
    "accuracy": accuracy,
    "kendall_tau": kendall_tau,
}

# Metrics the paper reports per task (§4.1 and Appendix C; method-facts §6).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "ioi": ("kl", "logit_diff", "exact_match", "accuracy"),
    "ioi-t1": ("kl", "logit_diff", "exact_match", "accuracy"),
    "gp": ("kl", "logit_diff", "exact_match", "accuracy"),
    "gt": ("kl", "prob_diff", "prob_diff_10", "kendall_tau"),
    "boolean-ip": ("kl", "exact_match", "accuracy"),
    "boolean-fs": ("kl", "exact_match", "accuracy"),
    "custom": ("kl", "exact_match", "accuracy"),
}


@torch.no_grad()
def evaluate(
    full: torch.Tensor,
    circuit: torch.Tensor,
    batch: TaskBatch,
    metrics: tuple[str, ...] | None = None,
    task: str | None = None,
) -> dict[str, float]:
    """Mean of each metric over the batch (NaNs, e.g. constant tau rows, ignored)."""
    names = metrics or TASK_METRICS.get(task or "", TASK_METRICS["custom"])
    out: dict[str, float] = {}
    for name in names:
        if name not in METRICS:
            raise EdgePruneError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        values = METRICS[name](full, circuit, batch)
        values = values[~torch.isnan(values)]
        out[name] = float(values.mean()) if values.numel() else float("nan")
    return out
