"""The pruning loop: masks + Lagrangian trained with AdamW, checkpoints, resume, metrics log.

Why these choices: AdamW with weight decay 0.01 on masks and lambdas and global
gradient clipping at 1.0 are the reference's (HF Trainer) defaults, and they
shape the dynamics (decay is what first moves log-alphas off their saturated
init of 10).  Everything random (mask noise, batch order) comes from one
``torch.Generator`` whose state is checkpointed, so an interrupted run resumes
bit-for-bit and reaches the same circuit.  A checkpoint is one safetensors file whose
header holds the JSON state (step, config, fingerprints), written to a ``.tmp``, fsynced
and renamed, so a kill at any moment leaves the previous checkpoint or the new one, never
a mix; ``checkpoint.json`` is a readable copy of that state, never read back.  Ctrl-C is
deferred to the end of the running step, so an interrupted and resumed run is bitwise
the uninterrupted one (a second Ctrl-C stops at once, keeping the last checkpoint).
Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from edgeprune.core.circuit import Circuit
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import check_ablation, check_cut, check_loss
from edgeprune.pruning import objective as obj
from edgeprune.pruning.adapter import ModelAdapter
from edgeprune.pruning.disentangled import AblatedStates, DisentangledForward, ablated_states, data_means
from edgeprune.pruning.hard_concrete import MaskParameters, gate_score
from edgeprune.pruning.host_memory import steps_keep_memory
from edgeprune.pruning.support_forward import SupportForward, compiled_supports
from edgeprune.pruning.threshold import extract_circuit

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
METRICS = "metrics.jsonl"
#: full-model outputs of the whole data set are cached up to this size, else computed per batch
TARGET_CACHE_BYTES = 64 << 20
#: the minimal pass tries edges one by one up to this many, in halving blocks beyond (``Pruner._drop_blocks``)
MINIMAL_ONE_BY_ONE = 64
#: a bounded evaluation (``Pruner.binary_loss(bound=...)``) looks at this many examples first
BOUND_FIRST_CHUNK = 64
#: memory one evaluation pass (writer outputs and task outputs of a chunk of examples) may take
EVAL_CHUNK_BYTES = 512 << 20
CHECKPOINT_FORMAT = "edgeprune-prune-checkpoint/2"
#: with a run directory and ``checkpoint_every`` 0, a checkpoint is written after every this many
#: seconds of training (and at the end), so a killed long run loses at most this much work
CHECKPOINT_SECONDS = 300.0


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _DeferredInterrupt:
    """While active, the first SIGINT only sets ``requested`` (the loop stops at the step boundary);
    a second one raises KeyboardInterrupt at once.  Inactive outside the main thread."""

    def __init__(self) -> None:
        self.requested = False
        self.hard = False
        self._old: Any = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            self.hard = True
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@dataclass
class PruneConfig:
    """Defaults are the reference's algorithm (one mask sample per batch, raw KL, AdamW with weight
    decay 0.01, clipping 1.0); ``pruning.defaults.RECOVERY_DEFAULTS`` holds the settings tuned for
    compiled programs (per-example masks, normalised loss, batch 256)."""

    steps: int = 600
    batch_size: int = 32
    lr: float = 0.5  # log-alphas (edges and nodes)
    lambda_lr: float = 0.05  # Lagrange multipliers (gradient ascent)
    edge_target: float = 1.02  # final sparsity target; above 1 keeps pushing until the loss resists
    node_target: float | None = None  # None: no node Lagrangian (node masks still trained by the loss)
    target_warmup: float = 0.8  # fraction of steps over which the target rises linearly from 0
    lr_warmup: float = 0.1  # fraction of steps of linear LR warm-up (then linear decay to 0)
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    ablation: str = "zero"
    loss: str | None = None  # None: "kl" for categorical outputs, "seq_kl" for numerical ones
    loss_scale: float = 1.0  # multiplies the faithfulness loss (balances it against the Lagrangian)
    normalize_loss: bool = False  # divide the faithfulness loss by its value for the empty circuit
    per_example_masks: bool = False  # one mask sample per example instead of one per batch (less gradient noise)
    score_weight: float = 0.0  # weight of the score-function (REINFORCE) faithfulness gradient; needs per_example_masks
    seed: int = 0
    checkpoint_every: int = 0  # steps; 0 = only at the end when a run directory is given
    log_every: int = 10
    edge_sparsity: float | None = None  # final circuit: None = kept count = rounded sum of the mask values
    cut: str = "mean"  # "mean": the reference's kept count; "faithful": sparsest faithful prefix of the ranking;
    # "minimal": that prefix, then each kept edge (lowest-ranked first) dropped if the circuit stays faithful
    cut_tolerance: float = 1e-3  # "faithful" cut: loss allowed, as a fraction of the empty circuit's loss
    stop_window: int = 0  # steps; > 0: stop once the circuit the cut would return has been the same for this many
    # steps (cut "faithful"/"minimal": that cut, computed at each check; cut "mean": the deterministic circuit,
    # faithful within cut_tolerance, after the target warm-up); 0: always train to ``steps``
    stop_check_every: int = 10  # steps between those checks (each evaluates circuits on the data)

    def __post_init__(self) -> None:
        check_ablation(self.ablation)
        if self.loss is not None:
            check_loss(self.loss)
        check_cut(self.cut)
        if self.score_weight and not self.per_example_masks:
            raise EdgePruneError(
                "score_weight needs per_example_masks (the score term correlates each example's loss "
                "with its own mask sample); set per_example_masks=True or score_weight=0"
            )
        if self.steps < 1 or self.batch_size < 1:
            raise EdgePruneError("steps and batch_size must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PruneConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "adam_betas" in known:
            known["adam_betas"] = tuple(known["adam_betas"])
        return cls(**known)


@dataclass
class PruneData:
    """Clean inputs, their key masks (None when all sequences fill every position) and corruptions."""

    ids: torch.Tensor  # (N, T) long, BOS first
    key_mask: torch.Tensor | None = None  # (N, T) bool
    corrupted: torch.Tensor | None = None  # (N, T) long, same lengths as ``ids``
    loss_mask: torch.Tensor | None = None  # (N, T) bool, scored positions; None: the adapter's choice
    # mean ablation's reference set (writers' means over it); None: the clean inputs ``ids`` themselves
    reference: torch.Tensor | None = None  # (M, T') long, BOS first
    reference_key_mask: torch.Tensor | None = None  # (M, T') bool

    def __post_init__(self) -> None:
        if self.corrupted is not None and tuple(self.corrupted.shape) != tuple(self.ids.shape):
            raise EdgePruneError(
                f"corrupted inputs have shape {tuple(self.corrupted.shape)} but clean inputs {tuple(self.ids.shape)}: "
                "pair every clean input with a corruption of the same length"
            )
        if len(self.ids) == 0:
            raise EdgePruneError("no training inputs; the program's sampler returned nothing")
        if self.loss_mask is not None and tuple(self.loss_mask.shape) != tuple(self.ids.shape):
            raise EdgePruneError(
                f"loss mask has shape {tuple(self.loss_mask.shape)} but inputs {tuple(self.ids.shape)}: "
                "give one scored/unscored flag per input position"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for t in (self.ids, self.key_mask, self.corrupted):
            h.update(b"none" if t is None else t.cpu().contiguous().numpy().tobytes())
        if self.loss_mask is not None:  # only when given, so older fingerprints stay valid
            h.update(self.loss_mask.cpu().contiguous().numpy().tobytes())
        for t in (self.reference, self.reference_key_mask):
            if t is not None:
                h.update(t.cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass
class PruneResult:
    circuit: Circuit
    masks: MaskParameters
    steps: int
    seconds: float
    final_metrics: dict = field(default_factory=dict)


class Pruner:
    """Holds masks, lambdas, optimizer and RNG for one run; ``run`` trains and returns the circuit."""

    def __init__(self, adapter: ModelAdapter, data: PruneData, config: PruneConfig, edge_subset=None):
        """``edge_subset`` (edges or a bool (n_writers, n_readers) matrix): only these edges get masks (HAP)."""
        self.adapter, self.data, self.cfg = adapter, data, config
        if config.ablation == "interchange" and data.corrupted is None:
            raise EdgePruneError(
                "interchange ablation needs corrupted inputs in the data; give corruptions or use --ablation zero"
            )
        self.loss_kind = config.loss or obj.default_loss(adapter.output_kind)
        self.means = data_means(adapter, data, config.ablation)  # mean ablation: over the reference set, once
        self.gen = torch.Generator().manual_seed(config.seed)
        self.masks = MaskParameters(adapter.graph, generator=self.gen, edge_subset=edge_subset)
        self.edge_lambdas = torch.nn.Parameter(torch.zeros(2))
        self.node_lambdas = torch.nn.Parameter(torch.zeros(2))
        c = config
        groups = [
            {"params": [self.masks.edge_log_alpha, self.masks.node_log_alpha], "lr": c.lr, "maximize": False},
            {"params": [self.edge_lambdas], "lr": c.lambda_lr, "maximize": True},
        ]
        if c.node_target is not None:
            groups.append({"params": [self.node_lambdas], "lr": c.lambda_lr, "maximize": True})
        self.optimizer = torch.optim.AdamW(
            groups, weight_decay=c.weight_decay, betas=(c.adam_betas[0], c.adam_betas[1]), eps=1e-8
        )
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        live = None
        if edge_subset is not None:  # writers no kept edge reads are neither computed nor mixed
            live = torch.zeros(len(adapter.graph.writers), dtype=torch.bool)
            live[self.masks.edge_writer] = True
        supports = compiled_supports(adapter) if live is None else None
        # large per-step tensors on the host: steps reuse their pages instead of faulting them in anew
        self._keep_memory = supports is None and torch.device(getattr(adapter, "device", "cpu")).type == "cpu"
        # a compiled model's writers have known output directions: mix per direction (same values, far cheaper)
        self.forward: DisentangledForward | SupportForward = (
            SupportForward(adapter, supports) if supports is not None else DisentangledForward(adapter, live)
        )
        with torch.no_grad():
            scored = data.loss_mask.bool() if data.loss_mask is not None else adapter.loss_mask(data.ids, data.key_mask)
            # (N, K) scored slots when the readout can run at those positions only; else the (N, T) mask
            self.positions, self.loss_mask = self._scored_positions(scored)
            self.chunk, self.full_out = self._plan_targets()
        # interchange: the corrupted inputs' writer outputs are fixed, so computed once for the whole data set
        self.ablated_all = self._plan_ablated()
        self.loss_unit = self._empty_circuit_loss() if config.normalize_loss else 1.0
        self.step = 0
        self.elapsed = 0.0
        self._stable: tuple[torch.Tensor, int] | None = None  # (stop-rule circuit, step it was first seen)
        self._cut_at: tuple[int, torch.Tensor, float] | None = None  # (step, cut keep, relative loss) of the last check
        self._empty_loss: float | None = None
        # distributed hooks (pruning.distributed): this rank's rows of each global batch, and an
        # all-reduce of the mask/lambda gradients before clipping; None in a single process
        self.batch_slice: Callable[[int], slice] | None = None
        self.grad_sync: Callable[[list[torch.Tensor]], None] | None = None

    def _scored_positions(self, mask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Each example's scored positions (N, K) and which of the K slots are real (N, K), or (None, mask).

        Why: a language-model task scores a few positions (the answer), and a per-position KL over
        them does not need the vocabulary-wide readout anywhere else.  Reading out at those K
        positions only (``adapter.at_positions``) saves that share of every forward and backward,
        and the full model's targets shrink to (N, K, V), so they stay cached (no full run per
        step) for data sets that would not fit at every position.  The loss is the same sum over
        the same positions.  Only for adapters whose readout is per position, under ``kl``, and
        when at most half of the positions are scored.
        """
        if not (self.adapter.readout_per_position and self.loss_kind == "kl" and mask.dim() == 2):
            return None, mask
        counts = mask.sum(1)
        k = int(counts.max()) if len(counts) else 0
        if k == 0 or 2 * k > mask.shape[1]:
            return None, mask
        positions = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :k]  # scored first, in order
        slots = torch.arange(k, device=mask.device).unsqueeze(0) < counts.unsqueeze(1)
        return positions, slots

    def _pos(self, idx) -> torch.Tensor | None:
        """The scored positions of rows ``idx`` (None: the readout runs at every position)."""
        return None if self.positions is None else self.positions[idx]

    def _plan_targets(self) -> tuple[int, torch.Tensor | None]:
        """The evaluation chunk (examples per pass) and the cached full-model outputs, or None.

        Why: the full model's outputs over the whole data set (vocabulary-wide logits at every
        position for a language model) grow with the data; they are cached only while they fit
        in ``TARGET_CACHE_BYTES`` (compiled programs: always), otherwise each batch computes its
        own.  One example's writer outputs and task output size the chunk, so every pass
        (targets, evaluation) holds a bounded number of examples whatever the data size.
        """
        d = self.data
        km = None if d.key_mask is None else d.key_mask[:1]
        writers = self.adapter.writer_outputs(d.ids[:1], km)
        # the full output through the adapter's own path (an FSDP adapter reads out only inside its root unit)
        out_numel = self.adapter.full_output(d.ids[:1], km, self._pos(slice(0, 1))).numel()
        per_example = 4 * (2 * writers.numel() + 6 * out_numel)  # loss temporaries
        chunk = int(max(1, min(512, EVAL_CHUNK_BYTES // per_example)))
        out_bytes = 4 * out_numel * len(d)
        if out_bytes > TARGET_CACHE_BYTES:
            return chunk, None
        parts = [
            self.adapter.full_output(
                d.ids[a : a + chunk],
                None if d.key_mask is None else d.key_mask[a : a + chunk],
                self._pos(slice(a, a + chunk)),
            )
            for a in range(0, len(d), chunk)
        ]
        return chunk, parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.no_grad()
    def _plan_ablated(self) -> AblatedStates | None:
        """Interchange ablation's writer outputs on every corrupted input, when they fit ``TARGET_CACHE_BYTES``."""
        d = self.data
        if self.cfg.ablation != "interchange" or d.corrupted is None:
            return None
        km = None if d.key_mask is None else d.key_mask[:1]
        one = self.adapter.writer_outputs(d.ids[:1], km)
        if 4 * one.numel() * len(d) * 2 > TARGET_CACHE_BYTES:
            return None
        return ablated_states(self.adapter, "interchange", d.ids, d.corrupted, d.key_mask)

    def _ablated(self, idx, ids: torch.Tensor, corr: torch.Tensor | None, km: torch.Tensor | None):
        """Ablated states for rows ``idx`` (cached for interchange, else computed for these inputs)."""
        cached = self.ablated_all
        if cached is not None:
            return AblatedStates(cached.states[:, idx], {k: v[idx] for k, v in cached.prefix.items()})
        return ablated_states(self.adapter, self.cfg.ablation, ids, corr, km, self.means)

    @torch.no_grad()
    def _targets(self, idx, ids: torch.Tensor, km: torch.Tensor | None) -> torch.Tensor:
        """The full model's outputs for rows ``idx`` (cached, or computed for these inputs)."""
        if self.full_out is not None:
            return self.full_out[idx]
        return self.adapter.full_output(ids, km, self._pos(idx))

    @torch.no_grad()
    def _empty_circuit_loss(self, max_examples: int = 256) -> float:
        """Faithfulness loss of the empty circuit (every edge ablated) on the first examples.

        Why: the loss's natural scale differs by orders of magnitude between tasks
        (a one-hot Tracr output vs a numerical one under a softmax across positions);
        dividing by it makes ``loss_scale`` and the Lagrangian settings transfer between programs.
        """
        value = self.binary_loss(torch.zeros(self.masks.edge_log_alpha.numel(), dtype=torch.bool), limit=max_examples)
        return value if value > 1e-6 else 1.0

    # ----- one step -------------------------------------------------------
    def _batch(self) -> torch.Tensor:
        n = len(self.data)
        if self.cfg.batch_size >= n:
            return torch.arange(n)
        return torch.randperm(n, generator=self.gen)[: self.cfg.batch_size]

    def train_step(self) -> dict:
        """One step: batch, ablated run, mask sample, masked forward, loss, backward, clip, optimizer."""
        if self._keep_memory:
            with steps_keep_memory():
                return self._train_step()
        return self._train_step()

    def _train_step(self) -> dict:
        c = self.cfg
        idx = self._batch()
        n_global = len(idx)
        local = self.batch_slice(n_global) if self.batch_slice is not None else None
        if local is not None:
            idx = idx[local]
        ids = self.data.ids[idx]
        km = None if self.data.key_mask is None else self.data.key_mask[idx]
        corr = None if self.data.corrupted is None else self.data.corrupted[idx]
        ablated = self._ablated(idx, ids, corr, km)
        # noise for the whole global batch on every rank (same generator), so N processes draw the masks one would
        edge_z, node_z = self.masks.sample(self.gen, n_global if c.per_example_masks else None)
        sampled = (edge_z, node_z)  # the sparsity estimate uses every sample, identical on every rank
        if local is not None and c.per_example_masks:
            edge_z, node_z = edge_z[local], node_z[local]
        out = self.forward.output(ids, self.masks.dense(edge_z), node_z, ablated, km, self._pos(idx))
        per_example = obj.faithfulness_per_example(
            self.loss_kind, self._targets(idx, ids, km), out, self.loss_mask[idx]
        )
        faith = per_example.mean()
        warm = int(c.target_warmup * c.steps)
        t_edge = obj.target_at(self.step, c.edge_target, warm)
        s_edge = obj.sparsity(sampled[0])
        reg = obj.lagrangian(t_edge, s_edge, *self.edge_lambdas)
        s_node = obj.sparsity(sampled[1])
        if c.node_target is not None:
            reg = reg + obj.lagrangian(obj.target_at(self.step, c.node_target, warm), s_node, *self.node_lambdas)
        loss = c.loss_scale / self.loss_unit * faith + reg
        if c.score_weight:
            loss = loss + c.score_weight * c.loss_scale / self.loss_unit * self._score_surrogate(
                per_example, edge_z, node_z
            )
        obj.check_finite(loss.detach(), self.step)
        factor = obj.lr_factor(self.step, c.steps, int(c.lr_warmup * c.steps))
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * factor
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.grad_sync is not None:
            self.grad_sync(params)
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
        self.optimizer.step()
        self.step += 1
        return {
            "step": self.step,
            "loss": float(loss.detach()),
            "faithfulness": float(faith.detach()),
            "regularizer": float(reg.detach()),
            "edge_sparsity": float(s_edge.detach()),
            "edge_target": t_edge,
            "node_sparsity": float(s_node.detach()),
            "lambda1": float(self.edge_lambdas[0].detach()),
            "lambda2": float(self.edge_lambdas[1].detach()),
            "lr_factor": factor,
        }

    def converged(self) -> bool:
        """True once training is done: the circuit the cut would return has been the same for ``stop_window``
        steps.  Checked every ``stop_check_every`` steps.

        Why: on compiled programs the cut (sparsest faithful prefix of the ranking, then the minimal
        pass) settles long before the sparsity schedule ends, and every later step only moves
        edges the cut already drops.  With cut "faithful"/"minimal" the cut itself is computed at
        each check and reused as the final circuit when training stops there; with cut "mean"
        the deterministic circuit (edges whose deterministic gate and writer's node gate are on)
        must be faithful and unchanged, and the target warm-up over.  The window's state is
        checkpointed, so a resumed run stops where the uninterrupted one does.
        """
        c = self.cfg
        if not c.stop_window or self.step % max(1, c.stop_check_every):
            return False
        with torch.no_grad():
            if c.cut in ("faithful", "minimal") and c.edge_sparsity is None:
                keep, rel = self._faithful_keep(minimal=c.cut == "minimal")
                self._cut_at = (self.step, keep, rel)
            else:
                if self.step < int(c.target_warmup * c.steps):
                    return False
                edge_det, node_det = self.masks.deterministic()
                keep = (edge_det > 0) & (node_det > 0)[self.masks.edge_writer]
                if self._empty_loss is None:
                    self._empty_loss = self.binary_loss(torch.zeros_like(keep))
                limit = c.cut_tolerance * max(self._empty_loss, 1e-12)
                if self.binary_loss(keep, bound=limit) > limit:
                    self._stable = None
                    return False
        if self._stable is None or not torch.equal(self._stable[0], keep):
            self._stable = (keep, self.step)
            return False
        return self.step - self._stable[1] >= c.stop_window

    def _score_surrogate(self, per_example: torch.Tensor, edge_z: torch.Tensor, node_z: torch.Tensor) -> torch.Tensor:
        """A term whose gradient is the score-function estimate of d E[loss] / d log_alpha.

        Each example's loss (minus the batch mean, a baseline) weights the score of its own
        mask sample; edges that are always on or always off contribute ~0, so the estimate is
        sharp exactly for the undecided edges, where compiled blocks' step-like losses leave
        the pathwise gradient blind.  Its value is 0; only its gradient matters.
        """
        adv = (per_example - per_example.mean()).detach().unsqueeze(1)  # (B, 1)
        g_edge = (adv * gate_score(self.masks.edge_log_alpha, edge_z)).mean(0)
        g_node = (adv * gate_score(self.masks.node_log_alpha, node_z)).mean(0)
        la_e, la_n = self.masks.edge_log_alpha, self.masks.node_log_alpha
        return (
            (la_e * g_edge).sum()
            + (la_n * g_node).sum()
            - (la_e.detach() * g_edge).sum()
            - (la_n.detach() * g_node).sum()
        )

    # ----- circuit --------------------------------------------------------
    def circuit(self) -> Circuit:
        c = self.cfg
        meta = {
            "method": "edge-pruning",
            "ablation": c.ablation,
            "seed": c.seed,
            "steps": self.step,
            "loss": self.loss_kind,
            "n_edges_total": self.adapter.graph.n_edges,
        }
        if c.cut in ("faithful", "minimal") and c.edge_sparsity is None:
            if self._cut_at is not None and self._cut_at[0] == self.step:  # computed by the stop check at this step
                keep, rel = self._cut_at[1], self._cut_at[2]
            else:
                keep, rel = self._faithful_keep(minimal=c.cut == "minimal")
            meta["cut"] = {"rule": c.cut, "tolerance": c.cut_tolerance, "relative_loss": rel}
            edges = [e for e, k in zip(self.masks.graph.edges, keep.tolist()) if k]
            return Circuit(edges=edges, model=self.adapter.graph.model, meta=meta)
        return extract_circuit(
            self.masks, c.edge_sparsity, model=self.adapter.graph.model, meta=meta, ablation=c.ablation
        )

    @torch.no_grad()
    def binary_loss(
        self, keep: torch.Tensor, chunk: int | None = None, limit: int | None = None, bound: float | None = None
    ) -> float:
        """Faithfulness loss of the binary circuit ``keep`` (flat bool over the mask's edges) on the data
        (its first ``limit`` examples when given).

        With ``bound``, evaluation stops as soon as the examples seen already put the loss above it
        (every per-example loss is >= 0), and that partial value (> ``bound``) is returned: the cut only
        asks whether a circuit is within its tolerance, and a circuit missing a needed edge fails on
        the first examples.
        """
        dense = self.masks.dense(keep.to(self.masks.edge_log_alpha.dtype))
        n = len(self.data) if limit is None else min(len(self.data), limit)
        chunk = chunk or self.chunk
        starts = list(range(0, n, chunk))
        if bound is not None and n > BOUND_FIRST_CHUNK and chunk > BOUND_FIRST_CHUNK:
            starts = [0] + list(range(BOUND_FIRST_CHUNK, n, chunk))
        parts = []
        seen = 0.0
        for i, a in enumerate(starts):
            sl = slice(a, starts[i + 1] if i + 1 < len(starts) else n)
            ids = self.data.ids[sl]
            km = None if self.data.key_mask is None else self.data.key_mask[sl]
            corr = None if self.data.corrupted is None else self.data.corrupted[sl]
            ablated = self._ablated(sl, ids, corr, km)
            out = self.forward.output(ids, dense, None, ablated, km, self._pos(sl))
            parts.append(
                obj.faithfulness_per_example(self.loss_kind, self._targets(sl, ids, km), out, self.loss_mask[sl])
            )
            if bound is not None and sl.stop < n:
                seen += float(parts[-1].sum())
                if seen / n > bound:
                    return seen / n
        return float(torch.cat(parts).sum() / n)

    def _faithful_keep(self, minimal: bool = False) -> tuple[torch.Tensor, float]:
        """The smallest top-k of the learned ranking (log-alpha) whose binary circuit is faithful.

        Why: the reference keeps as many edges as the mean mask value says, which keeps
        edges that training had not yet pushed off; the ranking training learned is the
        information, and on compiled programs the cut where the binary circuit stops
        changing the outputs is the natural one.  Bisection on k assumes the loss falls
        as k grows (edges enter in rank order); writers whose node gate is 0 rank last.
        With ``minimal``, each kept edge is then tried out, lowest-ranked first, and left out
        when the circuit stays faithful without it: an edge ranked above a needed one is kept
        by the prefix even when nothing needs it.
        Returns the keep mask and its loss relative to the empty circuit's.
        """
        _, node_soft = self.masks.deterministic()
        score = self.masks.edge_log_alpha.detach().clone()
        score[~(node_soft.detach() > 0)[self.masks.edge_writer]] = float("-inf")
        order = torch.argsort(score, descending=True)
        n = len(order)

        def keep_top(k: int) -> torch.Tensor:
            keep = torch.zeros(n, dtype=torch.bool)
            keep[order[:k]] = True
            return keep

        if self._empty_loss is None:  # the data are fixed: the empty circuit's loss is computed once
            self._empty_loss = self.binary_loss(keep_top(0))
        empty = self._empty_loss
        limit = self.cfg.cut_tolerance * max(empty, 1e-12)
        lo, hi = 0, n  # loss(hi) assumed <= limit (the full model: loss 0); find the smallest such k
        while lo < hi:
            mid = (lo + hi) // 2
            if self.binary_loss(keep_top(mid), bound=limit) <= limit:
                hi = mid
            else:
                lo = mid + 1
        keep = keep_top(hi)
        if minimal:
            lowest_first = list(reversed(order[:hi].tolist()))
            if len(lowest_first) <= MINIMAL_ONE_BY_ONE:
                for i in lowest_first:
                    keep[i] = False
                    if self.binary_loss(keep, bound=limit) > limit:
                        keep[i] = True
            else:
                self._drop_blocks(keep, lowest_first, limit)
        return keep, self.binary_loss(keep) / max(empty, 1e-12)

    def _drop_blocks(self, keep: torch.Tensor, block: list[int], limit: float) -> None:
        """The minimal pass over a long prefix: drop ``block`` (edges lowest-ranked first) at once when the
        circuit stays faithful without it, else split it and try each half in turn.

        Why: early in training the faithful prefix is most of the graph (2000 edges on an 8-layer program),
        and one evaluation per edge took minutes per stop check; where leaving out a whole block keeps the
        circuit faithful, leaving out its edges one by one in the same order would too (a superset of a
        faithful circuit is faithful), so the pass removes what the one-by-one pass would, in about
        (needed edges x log) evaluations.
        """
        if not block:
            return
        keep[block] = False
        if self.binary_loss(keep, bound=limit) <= limit:
            return
        keep[block] = True
        if len(block) == 1:
            return
        mid = len(block) // 2
        self._drop_blocks(keep, block[:mid], limit)
        self._drop_blocks(keep, block[mid:], limit)

    # ----- checkpoints ----------------------------------------------------
    def save_checkpoint(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self._clean_stale(run_dir)
        tensors = {
            "edge_log_alpha": self.masks.edge_log_alpha.detach().clone(),
            "node_log_alpha": self.masks.node_log_alpha.detach().clone(),
            "edge_lambdas": self.edge_lambdas.detach().clone(),
            "node_lambdas": self.node_lambdas.detach().clone(),
            "rng_state": self.gen.get_state().clone(),
        }
        if self._stable is not None:  # the early stop's window: a resumed run stops where the uninterrupted one does
            tensors["stop_keep"] = self._stable[0].to(torch.uint8)
        state = self.optimizer.state_dict()
        opt_scalars = {}
        for pid, st in state["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v) and v.dim() > 0:
                    tensors[f"opt.{pid}.{k}"] = v.detach().clone()
                else:
                    opt_scalars[f"{pid}.{k}"] = float(v)
        doc = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "elapsed": self.elapsed,
            "config": self.cfg.to_dict(),
            "model": self.adapter.model_id(),
            "data": self.data.fingerprint(),
            "n_edges": self.adapter.graph.n_edges,
            "optimizer_scalars": opt_scalars,
            "stop_since": None if self._stable is None else self._stable[1],
        }
        text = json.dumps(doc, indent=1)
        # one file, state in its header: written aside, flushed to disk, then renamed over the old one
        tmp = run_dir / (CHECKPOINT_TENSORS + ".tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"edgeprune": text})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, run_dir / CHECKPOINT_TENSORS)
        _fsync_dir(run_dir)
        # readable copy for people and scripts; load_checkpoint never reads it
        tmp_json = run_dir / (CHECKPOINT_STATE + ".tmp")
        tmp_json.write_text(text)
        os.replace(tmp_json, run_dir / CHECKPOINT_STATE)

    @staticmethod
    def _clean_stale(run_dir: Path) -> None:
        for name in (CHECKPOINT_TENSORS, CHECKPOINT_STATE):
            stale = run_dir / (name + ".tmp")
            if stale.exists():
                stale.unlink()

    def load_checkpoint(self, run_dir: Path) -> None:
        tpath = run_dir / CHECKPOINT_TENSORS
        self._clean_stale(run_dir)  # a write killed before its rename: the previous checkpoint stands
        if not tpath.is_file():
            raise EdgePruneError(f"no checkpoint in {run_dir} (expected {CHECKPOINT_TENSORS}); run without --resume")
        fix = "delete it (or use --overwrite) and start the run again"
        try:
            with safe_open(str(tpath), framework="pt") as fh:
                meta = fh.metadata() or {}
            t = load_file(str(tpath))
        except Exception as exc:  # safetensors raises its own error types for truncated or corrupt files
            raise EdgePruneError(
                f"{tpath} is not a readable safetensors checkpoint (truncated or corrupt: {exc}); {fix}"
            ) from exc
        try:
            doc = json.loads(meta["edgeprune"])
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (KeyError, ValueError) as exc:
            raise EdgePruneError(
                f"{tpath} has no edgeprune state in its header (field 'edgeprune': {exc!r}); {fix}"
            ) from exc
        if doc.get("format") != CHECKPOINT_FORMAT:
            raise EdgePruneError(
                f"{tpath} is not an edgeprune pruning checkpoint of format {CHECKPOINT_FORMAT} "
                f"(field 'format' is {doc.get('format')!r}); {fix}"
            )
        missing = [
            k for k in ("edge_log_alpha", "node_log_alpha", "edge_lambdas", "node_lambdas", "rng_state") if k not in t
        ]
        step, elapsed = doc.get("step"), doc.get("elapsed", 0.0)
        if (
            missing
            or not isinstance(step, int)
            or isinstance(step, bool)
            or step < 0
            or not isinstance(doc.get("config"), dict)
            or not isinstance(elapsed, (int, float))
            or isinstance(elapsed, bool)
        ):
            raise EdgePruneError(f"{tpath} lacks {missing or 'a valid step/config/elapsed'}; {fix}")
        if doc.get("model") != self.adapter.model_id() or doc.get("n_edges") != self.adapter.graph.n_edges:
            raise EdgePruneError(
                f"checkpoint in {run_dir} was made for model {doc.get('model')!r}, not {self.adapter.model_id()!r}; "
                "resume with the same model or use a fresh run directory"
            )
        if doc.get("data") != self.data.fingerprint():
            raise EdgePruneError(
                f"checkpoint in {run_dir} was made with other training data; use the same program, seed and data"
            )
        try:
            saved = PruneConfig.from_dict(doc["config"])
        except (TypeError, ValueError, KeyError) as exc:
            raise EdgePruneError(
                f"{tpath}: field 'config' is not a valid pruning configuration ({exc}); {fix}"
            ) from exc
        if saved != self.cfg:
            diff = {k: (v, getattr(self.cfg, k)) for k, v in saved.to_dict().items() if getattr(self.cfg, k) != v}
            raise EdgePruneError(
                f"checkpoint in {run_dir} used other settings {diff} (saved, now); resume with the same settings"
            )
        if (
            t["edge_log_alpha"].shape != self.masks.edge_log_alpha.shape
            or t["node_log_alpha"].shape != self.masks.node_log_alpha.shape
        ):
            raise EdgePruneError(f"{tpath}: mask shapes differ from this model's graph; {fix}")
        try:  # a damaged checkpoint that passed the checks above: a message, never a torch/Python error
            new_state = self._restorable_state(t, doc)
            with torch.no_grad():
                self.masks.edge_log_alpha.copy_(t["edge_log_alpha"])
                self.masks.node_log_alpha.copy_(t["node_log_alpha"])
                self.edge_lambdas.copy_(t["edge_lambdas"])
                self.node_lambdas.copy_(t["node_lambdas"])
            self.gen.set_state(t["rng_state"])
            state = self.optimizer.state_dict()
            state["state"] = new_state
            self.optimizer.load_state_dict(state)
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EdgePruneError(
                f"{tpath} holds a damaged training state ({type(exc).__name__}: {exc}); {fix}"
            ) from exc
        self.step = int(doc["step"])
        self.elapsed = float(doc.get("elapsed", 0.0))
        self._stable, self._cut_at = None, None
        since = doc.get("stop_since")
        if since is not None or "stop_keep" in t:
            keep = t.get("stop_keep")
            if (
                keep is None
                or not isinstance(since, int)
                or isinstance(since, bool)
                or not 0 <= since <= self.step
                or tuple(keep.shape) != tuple(self.masks.edge_log_alpha.shape)
            ):
                raise EdgePruneError(f"{tpath} holds a damaged early-stop state (stop_keep/stop_since); {fix}")
            self._stable = (keep.bool(), since)

    def _restorable_state(self, t: dict[str, torch.Tensor], doc: dict) -> dict:
        """The optimizer state of a checkpoint, checked against this run's parameters.

        Why: a wrong shape, dtype or a missing AdamW moment would only fail at the next step,
        deep in the optimizer; a NaN would silently poison the rest of the run.
        """
        params = [q for g in self.optimizer.param_groups for q in g["params"]]
        for key, own in (
            ("edge_log_alpha", self.masks.edge_log_alpha),
            ("node_log_alpha", self.masks.node_log_alpha),
            ("edge_lambdas", self.edge_lambdas),
            ("node_lambdas", self.node_lambdas),
        ):
            if t[key].shape != own.shape or not t[key].is_floating_point() or not bool(torch.isfinite(t[key]).all()):
                raise ValueError(f"{key} has shape {tuple(t[key].shape)} and dtype {t[key].dtype} or non-finite values")
        if t["rng_state"].dtype != torch.uint8 or t["rng_state"].shape != self.gen.get_state().shape:
            raise ValueError(f"rng_state has dtype {t['rng_state'].dtype} and shape {tuple(t['rng_state'].shape)}")
        new_state: dict = {}
        for key, value in t.items():
            if key.startswith("opt."):
                _, pid, name = key.split(".", 2)
                new_state.setdefault(int(pid), {})[name] = value
        scalars = doc.get("optimizer_scalars", {})
        if not isinstance(scalars, dict):
            raise TypeError("optimizer_scalars is not a JSON object")
        for key, value in scalars.items():
            pid, name = key.split(".", 1)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"optimizer scalar {key} is {value!r}, not a number")
            new_state.setdefault(int(pid), {})[name] = torch.tensor(float(value))
        names = {"step", "exp_avg", "exp_avg_sq"} | (
            {"max_exp_avg_sq"} if self.optimizer.param_groups[0].get("amsgrad") else set()
        )
        for pid, entry in new_state.items():
            if not 0 <= pid < len(params):
                raise ValueError(f"optimizer state for parameter {pid}, but the run has {len(params)}")
            if set(entry) != names:
                raise KeyError(f"optimizer state of parameter {pid} has {sorted(entry)}, expected {sorted(names)}")
            for name, value in entry.items():
                shape = () if name == "step" else tuple(params[pid].shape)
                if (
                    tuple(value.shape) != shape
                    or not value.is_floating_point()
                    or not bool(torch.isfinite(value).all())
                ):
                    raise ValueError(f"optimizer {name} of parameter {pid}: shape {tuple(value.shape)}, {value.dtype}")
        return new_state

    # ----- loop -----------------------------------------------------------
    def run(
        self,
        run_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        stop_after: int | None = None,
        callback: Callable[[dict], None] | None = None,
    ) -> PruneResult:
        """Train to ``config.steps`` (or only ``stop_after`` steps, for tests of resuming)."""
        from tqdm import tqdm

        c = self.cfg
        rd = Path(run_dir) if run_dir is not None else None
        if resume:
            if rd is None:
                raise EdgePruneError("--resume needs a run directory (--run-dir) holding a checkpoint")
            self.load_checkpoint(rd)
        log = None
        if rd is not None:
            rd.mkdir(parents=True, exist_ok=True)
            mpath = rd / METRICS
            kept = []
            if resume and mpath.is_file():  # drop lines written after the checkpoint, and a line cut by a kill
                for ln in mpath.read_text(encoding="utf-8", errors="replace").splitlines():
                    try:
                        row = json.loads(ln)
                    except ValueError:
                        continue
                    if (
                        isinstance(row, dict)
                        and isinstance(row.get("step", 0), int)
                        and row.get("step", 0) <= self.step
                    ):
                        kept.append(ln)
            mpath.write_text("".join(ln + "\n" for ln in kept))
            log = mpath.open("a")
        end = c.steps if stop_after is None else min(c.steps, self.step + stop_after)
        bar = tqdm(total=c.steps, initial=self.step, disable=not progress, file=sys.stderr, desc="pruning", leave=False)
        metrics: dict = {}
        t0 = time.perf_counter()
        last_save = t0
        stop = _DeferredInterrupt().__enter__()
        try:
            while self.step < end and not stop.requested:
                metrics = self.train_step()
                bar.update(1)
                if log is not None and (self.step % c.log_every == 0 or self.step == end):
                    log.write(json.dumps(metrics) + "\n")
                if callback is not None:
                    callback(metrics)
                if self.step % max(1, c.log_every) == 0:
                    bar.set_postfix(loss=f"{metrics['loss']:.3g}", sparsity=f"{metrics['edge_sparsity']:.3f}")
                done = self.converged()  # before the checkpoint, which then holds this step's stop-rule state
                if (
                    rd is not None
                    and not done
                    and (
                        self.step % c.checkpoint_every == 0
                        if c.checkpoint_every
                        else time.perf_counter() - last_save >= CHECKPOINT_SECONDS
                    )
                ):
                    self.elapsed += time.perf_counter() - t0
                    t0 = last_save = time.perf_counter()
                    if log is not None:
                        log.flush()
                    self.save_checkpoint(rd)
                if done:
                    if log is not None and self.step % c.log_every:
                        log.write(json.dumps(metrics) + "\n")
                    break
            if stop.requested:  # Ctrl-C, honoured here at the step boundary
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            if rd is not None and stop.hard:
                print(
                    f"interrupted mid-step: the last checkpoint in {rd} stands; continue with --resume", file=sys.stderr
                )
            elif rd is not None:
                self.elapsed += time.perf_counter() - t0
                if log is not None:
                    log.flush()
                self.save_checkpoint(rd)
                print(
                    f"interrupted: checkpoint at step {self.step} saved in {rd}; continue with --resume",
                    file=sys.stderr,
                )
            raise
        finally:
            stop.__exit__()
            bar.close()
            if log is not None:
                log.close()
        self.elapsed += time.perf_counter() - t0
        if rd is not None:
            self.save_checkpoint(rd)
        circuit = self.circuit()
        if rd is not None:
            circuit.save(rd / "circuit.json")
        return PruneResult(circuit, self.masks, self.step, self.elapsed, metrics)


def prune(
    adapter: ModelAdapter,
    data: PruneData,
    config: PruneConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> PruneResult:
    """Library entry point: train masks on ``data`` and return the binarised circuit."""
    return Pruner(adapter, data, config or PruneConfig()).run(run_dir, resume=resume, progress=progress)
