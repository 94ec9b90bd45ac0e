"""Prune and evaluate ``transformers`` language models on the paper's tasks (``edgeprune prune/evaluate``).

Why a module of its own: the CLI, the distributed launcher and tests share one path from
(model, task) to a circuit file and its metrics, so a circuit is always cut, stamped and
scored the same way.  Settings follow the paper's GPT-2 runs (method-facts section 5):
interchange ablation, lr 0.8 for masks and lambdas, sparsity target warmed up over 5/6 of
the steps, LR warm-up 200/3000 steps, no node Lagrangian.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgeprune.core.circuit import Circuit
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import is_mean
from edgeprune.pruning.adapter import ModelAdapter
from edgeprune.pruning.adapters.hf_loading import adapter_for, load_hf_model
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states, writer_means
from edgeprune.pruning.hard_concrete import MaskParameters
from edgeprune.pruning.metrics import METRICS, TASK_METRICS
from edgeprune.pruning.tasks import TASK_NAMES, TaskBatch, TaskDataset, build_task
from edgeprune.pruning.train import PruneConfig, PruneData, Pruner

CIRCUIT_FILE = "circuit.json"
METRICS_FILE = "metrics.json"

#: the paper's GPT-2 settings, scaled to ``steps`` (3000 in the paper)
LM_DEFAULTS: dict[str, Any] = {
    "steps": 3000,
    "batch_size": 32,
    "lr": 0.8,
    "lambda_lr": 0.8,
    "target_warmup": 2500 / 3000,
    "lr_warmup": 200 / 3000,
    "ablation": "interchange",
    "loss": "kl",
    "per_example_masks": False,
}
DEFAULT_TARGET_SPARSITY = 0.98


def task_key(task: str | Path) -> str:
    """The metric table's key of a task: its name, or "custom" for a JSONL file."""
    return str(task) if str(task) in TASK_NAMES else "custom"


@dataclass
class LoadedModel:
    """A model, its tokenizer and its adapter, with the name given on the command line."""

    source: str
    model: Any
    tokenizer: Any
    adapter: ModelAdapter  # an HF adapter, or its FSDP wrapper (pruning.distributed)


def load_model(
    source: str | Path, dtype: str = "float32", device: str = "cpu", gradient_checkpointing: bool = False
) -> LoadedModel:
    """``from_pretrained`` (hub id or directory) plus the architecture's adapter.

    With ``dtype="bfloat16"`` the weights and block arithmetic are bf16 while the mixed
    residual stream and the masks stay float32 (the adapter casts at block boundaries).
    """
    model, tok = load_hf_model(source, dtype=dtype, device=device)
    if tok is None:
        raise EdgePruneError(f"{source} has no tokenizer; save one next to the model (tokenizer.save_pretrained)")
    positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:  # tasks refuse longer examples by name (tasks.base)
        tok.model_max_length = min(positions, getattr(tok, "model_max_length", positions) or positions)
    adapter = adapter_for(model, gradient_checkpointing=gradient_checkpointing)
    return LoadedModel(str(source), model, tok, adapter)


def parse_sizes(text: str | None) -> int | tuple[int, int, int] | None:
    """``--examples``: "N" (each split) or "TRAIN,VAL,TEST"."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise EdgePruneError(f"--examples {text!r}: give N or TRAIN,VALIDATION,TEST as whole numbers") from None
    if len(values) not in (1, 3) or min(values) < 1:
        raise EdgePruneError(f"--examples {text!r}: give N or TRAIN,VALIDATION,TEST, each at least 1")
    return values[0] if len(values) == 1 else (values[0], values[1], values[2])


def load_task(task: str | Path, tokenizer: Any, sizes: int | Sequence[int] | None = None, seed: int = 0) -> TaskDataset:
    return build_task(task, tokenizer, n=sizes, seed=seed)


def prune_data(batch: TaskBatch, device: torch.device | str = "cpu") -> PruneData:
    """Training tensors of a task split; the loss reads only the positions predicting the answer.

    The loss mask goes to the model's device (the objective multiplies it with the model's
    outputs); ids stay on the CPU, the adapters move each batch.
    """
    key_mask = None if bool(batch.attention_mask.all()) else batch.attention_mask
    return PruneData(
        ids=batch.clean_ids, key_mask=key_mask, corrupted=batch.corrupted_ids, loss_mask=batch.loss_mask.to(device)
    )


def lm_config(
    target_sparsity: float = DEFAULT_TARGET_SPARSITY, edge_target: float | None = None, **overrides: Any
) -> PruneConfig:
    """``LM_DEFAULTS`` with the Lagrangian target (default: the requested sparsity) and overrides."""
    if not 0.0 <= target_sparsity <= 1.0:
        raise EdgePruneError(f"--target-sparsity {target_sparsity} is not in [0, 1]; e.g. 0.98 keeps 2% of the edges")
    merged = dict(LM_DEFAULTS)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    merged["edge_target"] = target_sparsity if edge_target is None else edge_target
    merged["edge_sparsity"] = target_sparsity
    return PruneConfig(**merged)


def cut_at_sparsity(masks: MaskParameters, sparsity: float, model: str = "", meta: dict | None = None) -> Circuit:
    """Exactly ``round((1 - sparsity) * n_edges)`` edges: the largest deterministic edge x node gates.

    Why not the threshold bisection: after few steps many gates are equal to within 1e-5
    (all near their init), so no threshold separates the requested count; a ranking does.
    Ties break by edge order, so the cut is deterministic.
    """
    edge_soft, node_soft = masks.deterministic()
    eff = (edge_soft * (node_soft > 0).to(edge_soft.dtype)[masks.edge_writer]).detach().double()
    n = eff.numel()
    keep = max(0, min(n, int(round((1.0 - sparsity) * n))))
    order = torch.argsort(-eff, stable=True)[:keep]
    chosen = order[eff[order] > 0]  # a gate at exactly 0 (or its writer off) is not in the circuit
    edges = [masks.graph.edges[i] for i in sorted(chosen.tolist())]
    return Circuit(edges=edges, model=model, meta=dict(meta or {}))


def circuit_edge_mask(adapter: ModelAdapter, circuit: Circuit, allow_other_model: bool = False) -> torch.Tensor:
    """Dense (W, R) 0/1 mask of ``circuit`` on ``adapter``'s graph; refuses circuits of another model."""
    g = adapter.graph
    total = circuit.meta.get("n_edges_total")
    if total is not None and int(total) != g.n_edges:
        raise EdgePruneError(
            f"the circuit was found on a graph of {total} edges (model {circuit.model or '?'}), but this model's "
            f"graph has {g.n_edges} ({g.n_layers} layers, {g.n_heads} heads): the circuit is from another model; "
            "evaluate it with the model it was pruned on"
        )
    fp = circuit.meta.get("model_id")
    # compare the weight/config hash only: the name part is however the path was spelled
    if fp is not None and not allow_other_model and str(fp).rsplit(":", 1)[-1] != adapter.model_id().rsplit(":", 1)[-1]:
        raise EdgePruneError(
            f"the circuit was pruned on model {fp}, not on this one ({adapter.model_id()}): its edges fit the "
            "graph but the weights differ. Evaluate it with the model it was pruned on, or pass "
            "--allow-other-model to score it on this one anyway"
        )
    mask = torch.zeros(len(g.writers), len(g.readers))
    for w, r in circuit.edges:
        g.check_edge((w, r))
        mask[g.writer_index[w], g.reader_index[r]] = 1.0
    return mask


def engine_forward(adapter: ModelAdapter) -> Any:
    """The masked forward of ``adapter``: its own when it has one (FSDP runs it inside the root unit)."""
    make = getattr(adapter, "engine_forward", None)
    return make() if make is not None else DisentangledForward(adapter)


@torch.no_grad()
def evaluate_circuit(
    adapter: ModelAdapter,
    batch: TaskBatch,
    circuit: Circuit | None,
    task: str,
    ablation: str = "interchange",
    batch_size: int = 32,
    allow_other_model: bool = False,
    means: torch.Tensor | None = None,
) -> dict[str, float]:
    """The paper's metrics of ``task`` for the circuit (None: the full model) against the full model.

    Mean ablation uses ``means`` (``writer_means`` over the reference set, e.g. the train split),
    else the writers' means over ``batch`` itself.

    Per-example values from minibatches are pooled before averaging (NaNs, e.g. a constant
    Kendall row, dropped), so the result does not depend on ``batch_size``.
    """
    names = TASK_METRICS[task]
    fwd = engine_forward(adapter)
    mask = None if circuit is None else circuit_edge_mask(adapter, circuit, allow_other_model)
    if mask is not None and is_mean(ablation) and means is None:
        means = writer_means(adapter, batch.clean_ids, batch.attention_mask, ablation, batch_size)
    values: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for mb in batch.minibatches(batch_size):
        km = mb.attention_mask
        full = adapter.full_output(mb.clean_ids, km)
        if mask is None:
            circ = full
        else:
            ablated = ablated_states(adapter, ablation, mb.clean_ids, mb.corrupted_ids, km, means)
            circ = fwd.output(mb.clean_ids, mask.to(full.device), None, ablated, km)
        mb = mb.to(full.device)
        for n in names:
            values[n].append(METRICS[n](full, circ, mb).detach().float().cpu())
    out = {}
    for n, parts in values.items():
        v = torch.cat(parts)
        v = v[~torch.isnan(v)]
        out[n] = float(v.mean()) if v.numel() else float("nan")
    return out


@dataclass
class LMPruneResult:
    circuit: Circuit
    metrics: dict
    out_dir: Path | None
    seconds: float
    config: PruneConfig
    extra: dict = field(default_factory=dict)


def circuit_metrics(
    loaded: LoadedModel,
    dataset: TaskDataset,
    circuit: Circuit,
    task: str | Path,
    ablation: str,
    eval_batch_size: int,
    split: str = "test",
    allow_other_model: bool = False,
) -> dict:
    """The metrics document: test-split metrics of the circuit and of the full model, edges, sparsity."""
    key = task_key(task)
    batch = dataset.batch(split)
    g = loaded.adapter.graph
    means = None
    if is_mean(ablation):  # the reference set pruning used: the train split
        train = dataset.batch("train")
        means = writer_means(loaded.adapter, train.clean_ids, train.attention_mask, ablation, eval_batch_size)
    return {
        "model": loaded.source,
        "task": str(task),
        "split": split,
        "examples": len(batch),
        "ablation": ablation,
        "edges": len(circuit),
        "edges_total": g.n_edges,
        "sparsity": 1.0 - len(circuit) / g.n_edges,
        "circuit": evaluate_circuit(
            loaded.adapter, batch, circuit, key, ablation, eval_batch_size, allow_other_model, means
        ),
        "full_model": evaluate_circuit(loaded.adapter, batch, None, key, ablation, eval_batch_size),
    }


def prune_language_model(
    loaded: LoadedModel,
    task: str | Path,
    config: PruneConfig,
    out_dir: str | Path | None = None,
    sizes: int | Sequence[int] | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    eval_batch_size: int | None = None,
    pruner_hook: Any = None,
) -> LMPruneResult:
    """Train masks on the task's train split, cut at ``config.edge_sparsity``, score on the test split.

    ``out_dir`` receives checkpoints and ``metrics.jsonl`` (the training log), then ``circuit.json``
    and ``metrics.json``.  ``pruner_hook(pruner)`` may adjust the pruner before training
    (the distributed launcher sets its batch slice and gradient all-reduce there).
    """
    t0 = time.perf_counter()
    dataset = load_task(task, loaded.tokenizer, sizes, seed)
    data = prune_data(dataset.batch("train"), getattr(loaded.adapter, "device", "cpu"))
    pruner = Pruner(loaded.adapter, data, config)
    if pruner_hook is not None:
        pruner_hook(pruner)
    rd = Path(out_dir) if out_dir is not None else None
    result = pruner.run(rd, resume=resume, progress=progress)
    meta = {
        "method": "edge-pruning",
        "ablation": config.ablation,
        "seed": config.seed,
        "steps": pruner.step,
        "loss": pruner.loss_kind,
        "n_edges_total": loaded.adapter.graph.n_edges,
        "task": str(task),
        "target_sparsity": config.edge_sparsity,
        "model_id": loaded.adapter.model_id(),
        "source": loaded.source,
    }
    if config.edge_sparsity is None:
        circuit = Circuit(edges=result.circuit.edges, model=loaded.adapter.graph.model, meta=meta)
    else:
        circuit = cut_at_sparsity(pruner.masks, config.edge_sparsity, model=loaded.adapter.graph.model, meta=meta)
    metrics = circuit_metrics(loaded, dataset, circuit, task, config.ablation, eval_batch_size or config.batch_size)
    metrics.update(
        {
            "target_sparsity": config.edge_sparsity,
            "steps": pruner.step,
            "seed": seed,
            "train_examples": len(data),
            "seconds": round(time.perf_counter() - t0, 3),
            "train_seconds": round(result.seconds, 3),
        }
    )
    if rd is not None:
        write_outputs(rd, circuit, metrics)
    return LMPruneResult(circuit, metrics, rd, time.perf_counter() - t0, config)


def write_outputs(out_dir: Path, circuit: Circuit, metrics: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    circuit.save(out_dir / CIRCUIT_FILE)
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
