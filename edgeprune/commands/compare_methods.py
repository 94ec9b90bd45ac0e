"""``edgeprune compare-methods``: Edge Pruning, HAP, EAP, EAP-IG and ACDC on one graph, one table, one plot.

Every method runs on the engine's graph with the same ablation and data, and
every circuit is scored the same way.

Compiled programs (a program name, a model directory, ``--all`` or ``--programs``):
dangling edges dropped (``prune_dangling``), then KL to the full model (the
pruning loss: ``kl``, ``seq_kl`` for numerical programs), agreement with the
full model's decoded output (argmax at every scored position, or within 0.05
for numerical outputs), and graph-exact comparison with the ground truth.
How each method picks its circuit without looking at the ground truth:

* ``ep``: the recovery settings (``pruning.defaults.recovery_config``);
* ``hap``: attribution (``--hap-method``) keeps ``--hap-keep`` of the edges, then
  the same pruning runs inside them for ``--hap-steps`` (defaults: ``HAP_DEFAULTS``);
* ``eap``, ``eap-ig``: the smallest top-k whose circuit has KL at most
  ``--kl-tol`` times the empty circuit's KL (a faithfulness target, as one
  would pick k for a real model; cutting at the ground truth's size would use
  the answer);
* ``acdc``: threshold tau = ``--acdc-tau`` times the empty circuit's KL.

``--all`` appends every program's rows to ``OUT/rows.jsonl`` as it finishes, so
``--resume`` can continue a run (only the (program, method) pairs without a row
run again) and ``--jobs N`` can run programs in N worker processes.

Language models (``--model M --task T``): no ground truth, so a row reports KL
to the full model and the task's metrics on held-out data (the test split, or
the validation split when there is none) with ``pruning.language_models``'s
``evaluate_circuit``, as ``edgeprune evaluate`` does.  Every method cuts at
``--target-sparsity`` (ACDC excepted: its tau decides); circuits are scored as
cut (a dangling edge still carries its writer's output on a real model).

``--sparsities`` adds rows at requested sparsities: ranked methods cut there,
``ep``/``hap`` train with that target.  The plot shows KL against sparsity per
method (EAP and EAP-IG as whole curves), like the paper's Figures 2 and 3.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeprune.program_options import PROGRAM_HELP, add_program_arguments, program_options
from edgeprune.selection import add_selection_arguments, selected_programs
from edgeprune.core.errors import EdgePruneError

ALL_METHODS = ("ep", "hap", "eap", "eap-ig", "acdc")
RANKED = ("eap", "eap-ig")
CURVE_POINTS = 40  # sparsities at which ranked methods are drawn (compiled programs)
LM_CURVE_POINTS = 20  # fewer on language models: each point is an evaluation of the held-out split
LM_STEPS = 400  # a comparison on small models; `edgeprune prune` uses the paper's 3000
LM_BATCH_SIZE = 32
ROWS_FILE = "rows.jsonl"
OPTIONS_FILE = "options.json"
COLUMNS = ("program", "method", "setting", "edges", "sparsity", "kl", "agreement", "exact", "truth_edges", "seconds",
           "cpu_seconds", "metric", "metric_name")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare-methods",
        help="run Edge Pruning, HAP, EAP, EAP-IG and ACDC on one program or language-model task; table + plot",
        description="Compare circuit-discovery methods on the same graph, data and ablation: edges, sparsity, KL to "
                    "the full model, agreement with its outputs, exact recovery of the ground truth (compiled "
                    "programs) or the task's metric (--model/--task), and wall and CPU time. Writes table.md, "
                    "table.csv, rows.json and kl_vs_sparsity.png to --out; --all also writes rows.jsonl as it goes.",
    )
    p.add_argument("target", nargs="?", help=PROGRAM_HELP)
    add_selection_arguments(p, "every registered program; one combined table", "compare the methods on")
    add_program_arguments(p)  # --vocab/--max-seq-len/--causal/--compiler for one program (edgeprune.program_options)
    p.add_argument("--resume", action="store_true",
                   help="with --all/--programs: keep the rows in OUT/rows.jsonl and run only the (program, method) "
                        "pairs that have none (a program whose row is an error is run again)")
    lm = p.add_argument_group("language models (instead of a program)")
    lm.add_argument("--model", default=None, help="hub id or a directory saved with save_pretrained (GPT-2, Llama)")
    lm.add_argument("--task", default=None, help="ioi, ioi-t1, gt, gp, boolean-ip, boolean-fs, or a JSONL file")
    lm.add_argument("--examples", default=None, metavar="N|TRAIN,VAL,TEST",
                    help="examples per split of a generated task (default: the paper's sizes)")
    lm.add_argument("--dtype", default=None, help="float32 (default) or bfloat16 weights")
    lm.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1, ...")
    lm.add_argument("--target-sparsity", type=float, default=None,
                    help="fraction of edges every method removes (default 0.98, as edgeprune prune)")
    lm.add_argument("--batch-size", type=int, default=None,
                    help=f"training and evaluation batch (default {LM_BATCH_SIZE})")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated subset of {','.join(ALL_METHODS)}")
    p.add_argument("--sparsities", default="", help="comma-separated edge sparsities for extra rows, e.g. 0.8,0.9,0.95")
    p.add_argument("--ablation", choices=("zero", "interchange"), default=None,
                   help="default: zero for programs, interchange for --model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None,
                   help=f"Edge Pruning steps (default: the recovery setting for programs; {LM_STEPS} for --model, "
                        "fewer than edgeprune prune's 3000 since this compares methods on small models)")
    p.add_argument("--hap-keep", type=float, default=None,
                   help="fraction of edges HAP's attribution keeps (default: 0.6 for programs, 0.5 for --model)")
    p.add_argument("--hap-method", choices=RANKED, default=None,
                   help="HAP's attribution method (default: eap-ig for programs, whose saturated blocks give EAP's "
                        "gradients nothing to see; eap for --model)")
    p.add_argument("--hap-steps", type=int, default=None,
                   help="HAP pruning steps (default: half of Edge Pruning's for programs, as Edge Pruning for --model)")
    p.add_argument("--ig-steps", type=int, default=5, help="EAP-IG integration steps (default 5)")
    p.add_argument("--kl-tol", type=float, default=1e-3,
                   help="programs, ranked methods: smallest top-k with KL <= this times the empty circuit's KL "
                        "(default 1e-3)")
    p.add_argument("--acdc-tau", type=float, default=1e-4, help="ACDC threshold, times the empty circuit's KL (default 1e-4)")
    p.add_argument("--out", default=None,
                   help="output directory (default results/compare-methods/<target, all, or model-task>-<ablation>)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the Markdown table")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


# ----- rows ------------------------------------------------------------------------
@dataclass
class Row:
    """One circuit of one method; ``asdict`` of it is a line of rows.jsonl (new fields need defaults)."""

    program: str
    method: str
    setting: str
    edges: int | None = None
    sparsity: float | None = None
    kl: float | None = None
    agreement: float | None = None
    exact: bool | None = None
    truth_edges: int | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    error: str = ""
    extra: dict = field(default_factory=dict)
    metric: float | None = None  # language models: the task's metric (named by metric_name)
    metric_name: str = ""


@dataclass
class Options:
    methods: tuple[str, ...] = ALL_METHODS
    sparsities: tuple[float, ...] = ()
    ablation: str = "zero"
    seed: int = 0
    steps: int | None = None
    hap_keep: float = 0.5
    hap_method: str = "eap"
    hap_steps: int | None = None
    ig_steps: int = 5
    kl_tol: float = 1e-3
    acdc_tau: float = 1e-4
    target_sparsity: float | None = None  # language models only
    batch_size: int | None = None  # language models only

    @classmethod
    def from_dict(cls, d: dict) -> "Options":
        """Back from ``asdict`` (a worker's job): tuples came as lists."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def parse_methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad or not methods:
        raise EdgePruneError(f"unknown method(s) {bad or text!r}; choose from {', '.join(ALL_METHODS)} (comma-separated)")
    return methods


def parse_sparsities(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise EdgePruneError(f"--sparsities must be comma-separated numbers in [0, 1], got {text!r}") from exc
    bad = [s for s in values if not 0.0 <= s <= 1.0]
    if bad:
        raise EdgePruneError(f"sparsities must lie in [0, 1]; got {bad}")
    return values


class _Clock:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def _hap_subtarget(sparsity: float, keep_fraction: float, n_edges: int) -> float:
    """The pruner's sparsity counts kept edges only: the global target translated to the kept subgraph."""
    kept = max(1, math.ceil(keep_fraction * n_edges))
    return min(1.0, max(0.0, 1.0 - (1.0 - sparsity) * n_edges / kept))


class _Bench:
    """The method loop shared by compiled programs and language models; subclasses score and run methods."""

    name: str
    opts: Options

    def run_ep(self, sparsity: float | None = None) -> Row:
        raise NotImplementedError

    def run_hap(self, sparsity: float | None = None) -> Row:
        raise NotImplementedError

    def run_ranked(self, method: str) -> list[Row]:
        raise NotImplementedError

    def run_acdc(self) -> Row:
        raise NotImplementedError

    def run_all(self) -> list[Row]:
        rows: list[Row] = []
        for m in self.opts.methods:
            try:
                if m == "ep":
                    rows.append(self.run_ep())
                    rows += [self.run_ep(s) for s in self.opts.sparsities]
                elif m == "hap":
                    rows.append(self.run_hap())
                    rows += [self.run_hap(s) for s in self.opts.sparsities]
                elif m in RANKED:
                    rows += self.run_ranked(m)
                elif m == "acdc":
                    rows.append(self.run_acdc())
            except EdgePruneError as exc:
                rows.append(Row(self.name, m, "", error=str(exc)))
        return rows

    def notes(self) -> list[str]:
        return []


class CompiledBench(_Bench):
    """One compiled program: data, ground truth and the shared circuit scorer."""

    def __init__(self, target: str, opts: Options, program: dict | None = None):
        from edgeprune.compiled.ground_truth import ground_truth
        from edgeprune.pruning.acdc import FaithfulnessEvaluator
        from edgeprune.pruning.adapters.compiled import CompiledAdapter
        from edgeprune.usecases.recovery import prepare

        self.opts = opts
        self.model, self.spec, self.data = prepare(target, opts.ablation, opts.seed, **(program or {}))
        self.name = self.spec.name if self.spec is not None else self.model.metadata.name
        self.adapter = CompiledAdapter(self.model)
        self.graph = self.adapter.graph
        self.truth = ground_truth(self.model, opts.ablation)
        self.ev = FaithfulnessEvaluator(self.adapter, self.data, opts.ablation)
        self.empty_kl = self.ev.empty()
        self.full_out = self.ev.outputs(self.graph.allowed_mask())
        self.scored = self.adapter.loss_mask(self.data.ids, self.data.key_mask)
        self.curves: dict[str, list[tuple[float, float]]] = {}
        self.circuits: dict = {}  # file stem -> Circuit as scored (dangling edges dropped)

    # ----- scoring a circuit -------------------------------------------------------
    def kl_of(self, edges) -> float:
        from edgeprune.pruning.attribution import circuit_mask

        return self.ev(circuit_mask(self.graph, edges))

    def row(self, method: str, setting: str, circuit, clock: _Clock, key: str | None = None, **extra) -> Row:
        from edgeprune.pruning.attribution import circuit_mask
        from edgeprune.core.circuit import Circuit
        from edgeprune.verify.compare import compare
        from edgeprune.core.dangling import prune_dangling

        edges = sorted(prune_dangling(circuit.edges, self.graph.embeddings))
        out = self.ev.outputs(circuit_mask(self.graph, edges))
        if self.adapter.output_kind == "categorical":
            same = (out.argmax(-1) == self.full_out.argmax(-1)) | ~self.scored
        else:
            same = ((out - self.full_out).abs() <= 0.05) | ~self.scored
        agreement = float(same.all(-1).float().mean())
        kl = self.kl_of(edges)
        cmp = compare(circuit, self.truth)
        n = self.graph.n_edges
        self.circuits[key or method] = Circuit(edges=list(edges), model=self.graph.model,
                                               meta={**circuit.meta, "method": method, "ablation": self.opts.ablation,
                                                     "n_edges_total": n})
        return Row(self.name, method, setting, len(edges), 1 - len(edges) / n, kl, agreement, cmp.exact,
                   len(cmp.truth), clock.wall, clock.cpu, extra=extra)

    # ----- methods -------------------------------------------------------------------
    def ep_config(self, steps: int | None, sparsity: float | None = None):
        from edgeprune.pruning.defaults import recovery_config

        over = {}
        if sparsity is not None:
            over = {"edge_target": sparsity, "edge_sparsity": sparsity}
        return recovery_config(self.name, getattr(self.spec, "pruning", None), ablation=self.opts.ablation,
                               seed=self.opts.seed, steps=steps, **over)

    def run_ep(self, sparsity: float | None = None) -> Row:
        from edgeprune.pruning.train import Pruner

        cfg = self.ep_config(self.opts.steps, sparsity)
        with _Clock() as clk:
            res = Pruner(self.adapter, self.data, cfg).run(progress=False)
        setting = f"{cfg.steps} steps" + (f", sparsity {sparsity:g}" if sparsity is not None else "")
        key = None if sparsity is None else f"ep-sparsity-{sparsity:g}"
        return self.row("ep", setting, res.circuit, clk, key, steps=cfg.steps)

    def run_hap(self, sparsity: float | None = None) -> Row:
        from edgeprune.pruning.hap import hap

        o = self.opts
        sub = None if sparsity is None else _hap_subtarget(sparsity, o.hap_keep, self.graph.n_edges)
        steps = o.hap_steps or max(1, self.ep_config(o.steps).steps // 2)  # half of Edge Pruning's by default
        cfg = self.ep_config(steps, sub)
        with _Clock() as clk:
            res = hap(self.adapter, self.data, cfg, keep_fraction=o.hap_keep, method=o.hap_method, ig_steps=o.ig_steps)
        outside = set(res.circuit.edges) - set(res.subset)
        if outside:  # the contract of HAP; a failure here is a bug, not a user error
            raise RuntimeError(f"HAP returned edges outside its kept subgraph: {sorted(outside)}")
        setting = f"{o.hap_method} keep {o.hap_keep:g}, {cfg.steps} steps" + (f", sparsity {sparsity:g}" if sparsity is not None else "")
        key = None if sparsity is None else f"hap-sparsity-{sparsity:g}"
        return self.row("hap", setting, res.circuit, clk, key, steps=cfg.steps,
                        attribution_seconds=res.attribution_seconds, prune_seconds=res.prune_seconds,
                        kept=len(res.subset))

    def run_ranked(self, method: str) -> list[Row]:
        from edgeprune.pruning.attribution import edge_scores

        o = self.opts
        with _Clock() as clk:
            scores = edge_scores(self.adapter, self.data, method, o.ablation, "answer", steps=o.ig_steps)
            tol = o.kl_tol * self.empty_kl
            chosen = None
            for k in range(0, self.graph.n_edges + 1):
                c = scores.top_k(k)
                if self.kl_of(c.edges) <= tol:
                    chosen = (k, c)
                    break
        k, circuit = chosen if chosen is not None else (self.graph.n_edges, scores.top_k(self.graph.n_edges))
        n = self.graph.n_edges
        curve = []
        for i in range(CURVE_POINTS + 1):
            c = scores.top_k(int(round(n * i / CURVE_POINTS)))
            curve.append((1 - len(c) / n, self.kl_of(c.edges)))
        self.curves[method] = curve
        rows = [self.row(method, f"smallest k with KL <= {o.kl_tol:g} x empty (k={k})", circuit, clk, k=k,
                         curve=[list(p) for p in curve])]
        for s in o.sparsities:
            with _Clock() as c2:
                circ = scores.at_sparsity(s)
            rows.append(self.row(method, f"top-k at sparsity {s:g}", circ, c2, f"{method}-sparsity-{s:g}"))
        return rows

    def run_acdc(self) -> Row:
        from edgeprune.pruning.acdc import acdc

        with _Clock() as clk:
            res = acdc(self.adapter, self.data, self.opts.ablation, self.opts.acdc_tau, relative=True, evaluator=self.ev)
        return self.row("acdc", f"tau {self.opts.acdc_tau:g} x empty KL", res.circuit, clk, tested=res.tested)

    def run_all(self) -> list[Row]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny models: intra-op threads only add overhead (as recover does)
        try:
            return super().run_all()
        finally:
            torch.set_num_threads(threads)


# ----- language models --------------------------------------------------------------
def task_answer_metric(adapter, data, batch_size: int):
    """EAP's metric on a task: log-probability of the full model's prediction at the task's scored positions.

    Why not the engine's "answer" metric: that scores every position the adapter marks (all
    real tokens of a language model), while the task, and the pruning loss, read only the
    answer positions (``PruneData.loss_mask``).
    """
    import torch

    from edgeprune.pruning.attribution import batches, take

    answers = []
    with torch.no_grad():
        for idx in batches(len(data), batch_size):
            ids, km, _ = take(data, idx)
            answers.append(adapter.full_output(ids, km).argmax(-1).cpu())
    answer = torch.cat(answers)
    scored = data.loss_mask.bool().cpu()

    def task_answer(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        lp = torch.log_softmax(out.float(), -1).gather(-1, answer[idx].to(out.device).unsqueeze(-1)).squeeze(-1)
        return (lp * scored[idx].to(out.device, lp.dtype)).sum()

    return task_answer


class TaskKL:
    """ACDC's metric on a task: KL to the full model summed over the task's scored positions, mean over examples.

    The same loss the pruner trains on (``kl`` at ``PruneData.loss_mask``); ``pruning.acdc``'s own
    evaluator scores every position the adapter marks.  Only the full model's log-probabilities at
    scored positions are cached, not its logits everywhere.
    """

    loss_kind = "kl"

    def __init__(self, adapter, data, ablation: str, batch_size: int):
        import torch

        from edgeprune.pruning.attribution import batches, take
        from edgeprune.pruning.disentangled import ablated_states
        from edgeprune.pruning.language_models import engine_forward

        self.adapter, self.n = adapter, len(data)
        self.forward = engine_forward(adapter)
        self.chunks = []
        with torch.no_grad():
            for idx in batches(len(data), batch_size):
                ids, km, corr = take(data, idx)
                full = adapter.full_output(ids, km)
                pos = data.loss_mask[idx.to(data.loss_mask.device)].bool().to(full.device)
                lp_full = torch.log_softmax(full.float(), -1)[pos]  # (scored positions, V)
                self.chunks.append((ids, km, ablated_states(adapter, ablation, ids, corr, km), pos, lp_full))

    def __call__(self, mask) -> float:
        import torch

        total = 0.0
        with torch.no_grad():
            for ids, km, abl, pos, lp_full in self.chunks:
                out = self.forward.output(ids, mask.to(pos.device, torch.float32), None, abl, km)
                lp = torch.log_softmax(out.float(), -1)[pos]
                total += float((lp_full.exp() * (lp_full - lp)).sum())
        return total / self.n

    def empty(self) -> float:
        import torch

        g = self.adapter.graph
        return self(torch.zeros(len(g.writers), len(g.readers)))


class LMBench(_Bench):
    """A ``transformers`` language model on a task: no ground truth, so rows carry KL and the task's metrics.

    Every method trains or scores on the train split; circuits are scored on the test split (the
    validation split when a task has no test examples) with ``evaluate_circuit``, as
    ``edgeprune evaluate`` does, so a row's numbers match ``evaluate`` of its circuit file.
    """

    def __init__(self, model: str, task: str, opts: Options, sizes=None, dtype: str = "float32", device: str = "cpu"):
        from edgeprune.pruning.language_models import DEFAULT_TARGET_SPARSITY, load_model, load_task, prune_data, task_key
        from edgeprune.pruning.metrics import TASK_METRICS

        self.opts = opts
        self.loaded = load_model(model, dtype, device)
        self.adapter = self.loaded.adapter
        self.graph = self.adapter.graph
        self.task, self.key = str(task), task_key(task)
        label = Path(self.task).stem if self.key == "custom" else self.task
        self.name = f"{Path(str(model)).name or model}:{label}"
        self.dataset = load_task(task, self.loaded.tokenizer, sizes, opts.seed)
        self.data = prune_data(self.dataset.batch("train"), getattr(self.adapter, "device", "cpu"))
        self.split = next((s for s in ("test", "validation") if self.dataset.splits.get(s)), None)
        if self.split is None:
            raise EdgePruneError(f"task {self.task} has no test or validation examples to score circuits on; "
                                 "give some (--examples TRAIN,VAL,TEST, or \"split\" entries in the JSONL file)")
        self.eval_batch = self.dataset.batch(self.split)
        names = TASK_METRICS[self.key]
        self.metric_name = next((n for n in names if n not in ("kl", "exact_match")), names[-1])
        self.target = DEFAULT_TARGET_SPARSITY if opts.target_sparsity is None else opts.target_sparsity
        self.batch_size = opts.batch_size or LM_BATCH_SIZE
        self.model_id = self.adapter.model_id()
        self.answer = task_answer_metric(self.adapter, self.data, self.batch_size)
        self.curves: dict[str, list[tuple[float, float]]] = {}
        self.circuits: dict = {}  # file stem -> Circuit as scored
        self.subsets: dict = {}  # HAP rows: file stem -> the kept subgraph
        self.full_metrics = self.metrics(None)
        self.empty_metrics = self.metrics(self.circuit([], "empty"))

    # ----- scoring a circuit -------------------------------------------------------
    def circuit(self, edges, method: str):
        from edgeprune.core.circuit import Circuit

        meta = {"method": method, "ablation": self.opts.ablation, "n_edges_total": self.graph.n_edges,
                "task": self.task, "source": self.loaded.source}  # model_id: stamped on the saved circuits only
        return Circuit(edges=list(edges), model=self.graph.model, meta=meta)

    def metrics(self, circuit) -> dict[str, float]:
        from edgeprune.pruning.language_models import evaluate_circuit

        return evaluate_circuit(self.adapter, self.eval_batch, circuit, self.key, self.opts.ablation, self.batch_size)

    def row(self, method: str, setting: str, circuit, clock: _Clock, key: str | None = None, **extra) -> Row:
        m = self.metrics(circuit)
        n = self.graph.n_edges
        circuit.meta["model_id"] = self.model_id  # after scoring: evaluate_circuit would hash the weights again
        self.circuits[key or method] = circuit
        return Row(self.name, method, setting, len(circuit), 1 - len(circuit) / n, m["kl"], m.get("exact_match"),
                   None, None, clock.wall, clock.cpu, extra={**extra, "metrics": m}, metric=m[self.metric_name],
                   metric_name=self.metric_name)

    def notes(self) -> list[str]:
        f, e = self.full_metrics, self.empty_metrics
        name = self.metric_name
        return [f"{self.name}: circuits scored on the {self.split} split ({len(self.eval_batch)} examples), "
                f"{self.opts.ablation} ablation, {self.graph.n_edges} edges; full model {name} {f[name]:.4g}; "
                f"empty circuit KL {e['kl']:.4g}, {name} {e[name]:.4g}"]

    # ----- methods -------------------------------------------------------------------
    def config(self, steps: int | None, sparsity: float):
        from edgeprune.pruning.language_models import lm_config

        return lm_config(sparsity, steps=steps or LM_STEPS, batch_size=self.batch_size, ablation=self.opts.ablation,
                         seed=self.opts.seed)

    def run_ep(self, sparsity: float | None = None) -> Row:
        from edgeprune.pruning.language_models import cut_at_sparsity
        from edgeprune.pruning.train import Pruner

        s = self.target if sparsity is None else sparsity
        cfg = self.config(self.opts.steps, s)
        with _Clock() as clk:
            res = Pruner(self.adapter, self.data, cfg).run(progress=False)
            cut = cut_at_sparsity(res.masks, s)
        key = None if sparsity is None else f"ep-sparsity-{s:g}"
        return self.row("ep", f"{cfg.steps} steps, sparsity {s:g}", self.circuit(cut.edges, "ep"), clk, key,
                        steps=cfg.steps)

    def run_hap(self, sparsity: float | None = None) -> Row:
        from edgeprune.pruning.hap import hap
        from edgeprune.pruning.language_models import cut_at_sparsity

        o = self.opts
        s = self.target if sparsity is None else sparsity
        sub = _hap_subtarget(s, o.hap_keep, self.graph.n_edges)
        cfg = self.config(o.hap_steps or o.steps, sub)
        with _Clock() as clk:
            res = hap(self.adapter, self.data, cfg, keep_fraction=o.hap_keep, method=o.hap_method, metric=self.answer,
                      ig_steps=o.ig_steps)
            cut = cut_at_sparsity(res.prune.masks, sub)  # the masks cover the kept edges only
        outside = set(cut.edges) - set(res.subset)
        if outside:  # the contract of HAP; a failure here is a bug, not a user error
            raise RuntimeError(f"HAP returned edges outside its kept subgraph: {sorted(outside)}")
        key = None if sparsity is None else f"hap-sparsity-{s:g}"
        self.subsets[key or "hap"] = list(res.subset)
        setting = f"{o.hap_method} keep {o.hap_keep:g}, {cfg.steps} steps, sparsity {s:g}"
        return self.row("hap", setting, self.circuit(cut.edges, "hap"), clk, key, steps=cfg.steps,
                        attribution_seconds=res.attribution_seconds, prune_seconds=res.prune_seconds,
                        kept=len(res.subset))

    def run_ranked(self, method: str) -> list[Row]:
        from edgeprune.pruning.attribution import edge_scores

        o, n = self.opts, self.graph.n_edges

        def top(s: float) -> tuple[int, list]:
            k = int(round((1.0 - s) * n))  # exactly k edges, as Edge Pruning's cut (dangling ones kept)
            return k, scores.top_edges(k)

        with _Clock() as clk:
            scores = edge_scores(self.adapter, self.data, method, o.ablation, self.answer, steps=o.ig_steps,
                                 batch_size=self.batch_size)
            k, edges = top(self.target)
        curve = []
        for i in range(LM_CURVE_POINTS + 1):
            kk = int(round(n * i / LM_CURVE_POINTS))
            curve.append((1 - kk / n, self.metrics(self.circuit(scores.top_edges(kk), method))["kl"]))
        self.curves[method] = curve
        rows = [self.row(method, f"top-k at sparsity {self.target:g} (k={k})", self.circuit(edges, method), clk, k=k,
                         curve=[list(p) for p in curve])]
        for s in o.sparsities:
            with _Clock() as c2:
                k, edges = top(s)
            rows.append(self.row(method, f"top-k at sparsity {s:g} (k={k})", self.circuit(edges, method), c2,
                                 f"{method}-sparsity-{s:g}", k=k))
        return rows

    def run_acdc(self) -> Row:
        from edgeprune.pruning.acdc import acdc

        o = self.opts
        with _Clock() as clk:  # the evaluator is ACDC's own cost here: no other method uses it
            ev = TaskKL(self.adapter, self.data, o.ablation, self.batch_size)
            res = acdc(self.adapter, self.data, o.ablation, o.acdc_tau, relative=True, evaluator=ev)
        return self.row("acdc", f"tau {o.acdc_tau:g} x empty KL", self.circuit(res.circuit.edges, "acdc"), clk,
                        tested=res.tested)


# ----- output ------------------------------------------------------------------------
def _fmt(v, key: str) -> str:
    if v is None:
        return ""
    if key == "exact":
        return "yes" if v else "no"
    if key in ("kl",):
        return f"{v:.2e}" if v >= 1e-3 or v == 0 else f"{v:.1e}"
    if key in ("sparsity", "agreement"):
        return f"{v:.3f}"
    if key == "metric":
        return f"{v:.4g}"
    if key in ("seconds", "cpu_seconds"):
        return f"{v:.1f}"
    return str(v)


def markdown_table(rows: list[Row], ablation: str) -> str:
    """One line per row; the exact/truth columns only with a ground truth, the metric column only with a task."""
    cols = [("program", "program"), ("method", "method"), ("setting", "setting"), ("edges", "edges"),
            ("sparsity", "sparsity"), ("kl", f"KL ({ablation})"), ("agreement", "agreement")]
    names = sorted({r.metric_name for r in rows if r.metric_name})
    if names:
        cols.append(("metric", names[0] if len(names) == 1 else "metric"))
    if any(r.truth_edges is not None for r in rows) or not names:
        cols += [("exact", "exact"), ("truth_edges", "truth")]
    cols += [("seconds", "wall s"), ("cpu_seconds", "cpu s")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r.error:
            lines.append(f"| {r.program} | {r.method} | error: {r.error} |" + " |" * (len(cols) - 3))
            continue
        lines.append("| " + " | ".join(_fmt(getattr(r, k), k) for k, _ in cols) + " |")
    return "\n".join(lines)


def _main_rows(rows: list[Row]) -> dict[tuple[str, str], Row]:
    """The first row of each (program, method): the method's own choice, before any --sparsities rows."""
    main: dict[tuple[str, str], Row] = {}
    for r in rows:
        main.setdefault((r.program, r.method), r)
    return main


def program_table(rows: list[Row]) -> str:
    """--all: one line per program (truth size, each method's edges / exact, EP and HAP CPU time), exact counts last."""
    main = _main_rows(rows)
    programs = list(dict.fromkeys(r.program for r in rows))
    methods = [m for m in ALL_METHODS if any(r.method == m for r in rows)]
    timed = [m for m in ("ep", "hap") if m in methods]
    head = ["program", "truth"] + [f"{m} edges / exact" for m in methods] + [f"{m.upper()} cpu s" for m in timed]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    exact = {m: 0 for m in methods}
    total = {m: 0 for m in methods}
    for p in programs:
        broken = main.get((p, "-"))
        truth = next((r.truth_edges for r in rows if r.program == p and r.truth_edges is not None), None)
        cells, times = [], []
        for m in methods:
            r = main.get((p, m))
            if r is None and broken is None:
                cells.append("")
                continue
            total[m] += 1
            if r is None or r.error:
                cells.append("error")
                continue
            exact[m] += bool(r.exact)
            cells.append(f"{r.edges} / {_fmt(r.exact, 'exact') or '?'}")
        for m in timed:
            r = main.get((p, m))
            times.append("" if r is None or r.error else _fmt(r.cpu_seconds, "cpu_seconds"))
        lines.append("| " + " | ".join([p, "" if truth is None else str(truth)] + cells + times) + " |")
    last = ["**exact**", ""] + [f"**{exact[m]}/{total[m]}**" for m in methods] + [""] * len(timed)
    lines.append("| " + " | ".join(last) + " |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """Exact recoveries per method (main rows only: the first row of each method per program)."""
    if all(r.exact is None for r in rows):
        return ""  # no ground truth (a language model): nothing to count
    exact, total = {}, {}
    for (_, method), r in _main_rows(rows).items():
        total[method] = total.get(method, 0) + 1
        exact[method] = exact.get(method, 0) + bool(r.exact)
    parts = [f"{m}: {exact[m]}/{total[m]}" for m in total]
    return "exact recoveries - " + ", ".join(parts)


def hap_vs_ep(rows: list[Row]) -> str:
    """Wall time ratio and KL of HAP against Edge Pruning on the programs where both ran (main rows)."""
    main = _main_rows(rows)
    pairs = [(main[(p, "ep")], main[(p, "hap")]) for p, m in list(main) if m == "ep" and (p, "hap") in main]
    pairs = [(e, h) for e, h in pairs if not e.error and not h.error]
    if not pairs:
        return ""
    te, th = sum(e.seconds for e, _ in pairs), sum(h.seconds for _, h in pairs)
    ce, ch = sum(e.cpu_seconds for e, _ in pairs), sum(h.cpu_seconds for _, h in pairs)
    better = sum(h.kl <= e.kl + 1e-9 for e, h in pairs)
    text = (f"HAP vs EP on {len(pairs)} program(s): wall {th:.1f} s vs {te:.1f} s (ratio {th / max(te, 1e-9):.2f}), "
            f"cpu {ch:.1f} s vs {ce:.1f} s (ratio {ch / max(ce, 1e-9):.2f}); HAP KL <= EP KL on {better}/{len(pairs)}")
    if any(e.exact is not None for e, _ in pairs):
        text += (f"; exact: HAP {sum(bool(h.exact) for _, h in pairs)}, "
                 f"EP {sum(bool(e.exact) for e, _ in pairs)}")
    return text


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(COLUMNS) + ["error"])
        for r in rows:
            w.writerow([getattr(r, k) for k in COLUMNS] + [r.error])


def plot(rows: list[Row], path: Path, title: str) -> None:
    """KL against sparsity; ranked methods' whole top-k curves come from their main rows (``extra["curve"]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-8
    colors = {"ep": "tab:blue", "hap": "tab:orange", "eap": "tab:green", "eap-ig": "tab:red", "acdc": "tab:purple"}
    markers = {"ep": ("o", 11), "hap": ("s", 8), "eap": ("^", 7), "eap-ig": ("v", 7), "acdc": ("x", 9)}  # overlaps stay visible
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in RANKED:
        pts = next((r.extra["curve"] for r in rows if r.method == m and r.extra.get("curve")), None)
        if pts:
            xs, ys = zip(*sorted(map(tuple, pts)))
            ax.plot(xs, [max(y, floor) for y in ys], "-", color=colors.get(m), alpha=0.6, label=f"{m} (top-k)")
    for m in ALL_METHODS:
        pts = sorted((r.sparsity, r.kl) for r in rows if r.method == m and not r.error and r.kl is not None)
        if pts:
            xs, ys = zip(*pts)
            mk, size = markers[m]
            ax.plot(xs, [max(y, floor) for y in ys], mk + ("--" if len(pts) > 1 else ""), color=colors.get(m), label=m,
                    markersize=size, markerfacecolor="none" if m in ("ep", "hap") else colors.get(m))
    ax.set_yscale("log")
    ax.set_xlabel("edge sparsity")
    ax.set_ylabel(f"KL to the full model (floored at {floor:g})")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save(rows: list[Row], out: Path, ablation: str, title: str, plot_it: bool, notes: list[str] | None = None,
          per_program: bool = False) -> str:
    out.mkdir(parents=True, exist_ok=True)
    parts = [program_table(rows)] if per_program else []
    parts.append(markdown_table(rows, ablation))
    lines = [x for x in [*(notes or []), summary(rows), hap_vs_ep(rows)] if x]
    text = "\n\n".join(parts) + "\n\n" + "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    write_csv(rows, out / "table.csv")
    (out / "rows.json").write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    if plot_it:
        plot(rows, out / "kl_vs_sparsity.png", title)
    return text


def _save_circuits(bench: _Bench, out: Path) -> None:
    """Each circuit as scored, for ``edgeprune draw`` (and ``evaluate`` on a language model)."""
    if not bench.circuits:
        return
    (out / "circuits").mkdir(parents=True, exist_ok=True)
    for stem, circuit in bench.circuits.items():
        circuit.save(out / "circuits" / f"{stem}.json")


# ----- several programs: rows.jsonl, --resume, --jobs -------------------------------------
def read_rows(path: Path) -> list[Row]:
    """The rows of an earlier run's rows.jsonl; a line cut short by a killed run is skipped (and said so)."""
    names = {f.name for f in dataclasses.fields(Row)}
    rows, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append(Row(**{k: v for k, v in d.items() if k in names}))
        except (ValueError, TypeError, AttributeError):
            bad += 1
    if bad:
        print(f"compare-methods: skipped {bad} unreadable line(s) of {path}; their programs run again",
              file=sys.stderr)
    return rows


def registry_order(rows: list[Row]) -> list[Row]:
    """Programs in registry order (others after them, by name), methods as ALL_METHODS, then as they came."""
    from edgeprune.programs.registry import program_names

    prog = {n: i for i, n in enumerate(program_names())}
    meth = {m: i for i, m in enumerate(ALL_METHODS)}
    return sorted(rows, key=lambda r: (prog.get(r.program, len(prog)), r.program if r.program not in prog else "",
                                       meth.get(r.method, len(meth))))


def _program_job(job: dict) -> list[dict]:
    """One program's methods, in a worker process or here; rows come back as plain dicts (JSON-safe)."""
    name = job["name"]
    try:
        rows = CompiledBench(name, Options.from_dict(job["options"])).run_all()
    except EdgePruneError as exc:
        rows = [Row(name, "-", "", error=str(exc))]
    except Exception as exc:  # noqa: BLE001 - an error row; --resume runs the program again
        rows = [Row(name, "-", "", error=f"{type(exc).__name__}: {exc}")]
    return [asdict(r) for r in rows]


def _lost_job(job: dict) -> list[dict]:
    return [asdict(Row(job["name"], "-", "", error="a worker process died (killed, e.g. out of memory) before this "
                                                   "program finished, twice; rerun with --resume and fewer --jobs"))]


def _check_options(out: Path, opts: Options, resume: bool) -> None:
    """Rows of one table must share ablation and seed: --resume refuses a directory written with others."""
    path = out / OPTIONS_FILE
    now = {"ablation": opts.ablation, "seed": opts.seed}
    if resume and path.exists():
        try:
            before = json.loads(path.read_text())
        except ValueError:
            before = {}
        diff = [k for k in now if k in before and before[k] != now[k]]
        if diff:
            was = ", ".join(f"--{k} {before[k]}" for k in diff)
            raise EdgePruneError(f"--resume: the rows in {out} were made with {was}, this run has "
                                 f"{', '.join(f'--{k} {now[k]}' for k in diff)}; resume with the same options or "
                                 "choose another --out")
    path.write_text(json.dumps(now) + "\n")


def run_programs(names: list[str], opts: Options, out: Path, resume: bool = False, jobs: int = 1, plot_it: bool = True,
                 progress: bool = False) -> list[Row]:
    """Every program's rows appended to OUT/rows.jsonl as it finishes; returns old (resumed) and new rows in
    registry order."""
    from tqdm import tqdm

    from edgeprune.usecases.parallel import run_jobs

    if jobs < 1:
        raise EdgePruneError(f"--jobs must be at least 1, got {jobs}")
    out.mkdir(parents=True, exist_ok=True)
    _check_options(out, opts, resume)
    path = out / ROWS_FILE
    old = read_rows(path) if resume and path.exists() else []
    done = {(r.program, r.method) for r in old if r.method != "-"}
    todo = []
    for name in names:
        missing = tuple(m for m in opts.methods if (name, m) not in done)
        if missing:
            todo.append({"name": name, "options": asdict(dataclasses.replace(opts, methods=missing))})
    rerun = {job["name"] for job in todo}
    has_rows = {p for p, _ in done}
    last_error = {r.program: r for r in old if r.method == "-"}  # a failed program's latest attempt
    rows = [r for r in old if r.method != "-"]
    rows += [r for p, r in last_error.items() if p not in has_rows and p not in rerun]
    if resume:
        print(f"compare-methods: {len(rows)} row(s) kept from {path}; {len(todo)} program(s) to run", file=sys.stderr)
    mode = "a" if resume else "w"
    with path.open(mode) as f, tqdm(total=len(todo), desc="compare-methods", file=sys.stderr,
                                    disable=not progress) as bar:
        if mode == "a" and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            f.write("\n")  # a line cut short by a killed run stays on its own (and is skipped when read)
        for i, result in run_jobs(_program_job, todo, jobs, lost=_lost_job):
            name = todo[i]["name"]
            new = [Row(**d) for d in result]
            for r in new:
                f.write(json.dumps(asdict(r)) + "\n")
            f.flush()
            rows += new
            bar.update(1)
            if plot_it and any(not r.error for r in new):
                (out / name).mkdir(exist_ok=True)
                plot([r for r in rows if r.program == name], out / name / "kl_vs_sparsity.png",
                     f"{name} ({opts.ablation} ablation)")
    return registry_order(rows)


# ----- command -----------------------------------------------------------------------
#: HAP's defaults, (programs, language models).  Programs: EAP-IG, because Tracr's saturated blocks give
#: EAP's single gradient nothing to see (on palindrome 2 of 188 edges score non-zero, and keep 0.5 drops 3
#: ground-truth edges); 0.6 of the edges, because on 13-edge graphs such as trend the last needed edge ranks
#: 8th; half the steps: measured on the library (docs/compare-methods), pruning converges sooner on the
#: kept subgraph.  Language models: the HAP setting (EAP, half the edges, Edge Pruning's schedule).
HAP_DEFAULTS = {"keep": (0.6, 0.5), "method": ("eap-ig", "eap")}


def _options(args: argparse.Namespace, lm: bool) -> Options:
    if args.hap_keep is None:
        args.hap_keep = HAP_DEFAULTS["keep"][lm]
    if args.hap_method is None:
        args.hap_method = HAP_DEFAULTS["method"][lm]
    if not 0.0 < args.hap_keep <= 1.0:
        raise EdgePruneError(f"--hap-keep must lie in (0, 1], got {args.hap_keep}")
    if args.kl_tol < 0 or args.acdc_tau < 0:
        raise EdgePruneError("--kl-tol and --acdc-tau must be >= 0")
    if args.target_sparsity is not None and not 0.0 <= args.target_sparsity <= 1.0:
        raise EdgePruneError(f"--target-sparsity {args.target_sparsity} is not in [0, 1]; "
                             "e.g. 0.98 keeps 2% of the edges")
    if args.batch_size is not None and args.batch_size < 1:
        raise EdgePruneError(f"--batch-size must be at least 1, got {args.batch_size}")
    ablation = args.ablation or ("interchange" if lm else "zero")
    return Options(parse_methods(args.methods), parse_sparsities(args.sparsities), ablation, args.seed, args.steps,
                   args.hap_keep, args.hap_method, args.hap_steps, args.ig_steps, args.kl_tol, args.acdc_tau,
                   args.target_sparsity, args.batch_size)


def _check_args(args: argparse.Namespace) -> tuple[bool, bool]:
    """(language model?, several programs?) after refusing combinations that mean nothing."""
    lm = args.model is not None or args.task is not None
    many = args.all or args.programs is not None
    if lm:
        if args.model is None or args.task is None:
            raise EdgePruneError("--model and --task go together: give both, e.g. --model gpt2 --task ioi")
        if args.target or many:
            raise EdgePruneError("give either a program (or --all/--programs) or --model/--task, not both")
    else:
        if many and args.target:
            raise EdgePruneError("give either a program or --all/--programs, not both")
        if not many and not args.target:
            raise EdgePruneError("name a program (see `edgeprune programs`) or a compiled model directory, pass --all, "
                                 "or give --model and --task for a language model")
        lm_only = [f"--{k.replace('_', '-')}" for k in ("examples", "dtype", "device", "target_sparsity", "batch_size")
                   if getattr(args, k) is not None]
        if lm_only:
            raise EdgePruneError(f"{', '.join(lm_only)} apply to language models; add --model and --task, or drop them")
    if not many and (args.resume or args.jobs != 1):
        raise EdgePruneError("--resume and --jobs apply to several programs; add --all (or --programs a,b,c)")
    return lm, many


def run(args: argparse.Namespace) -> int:
    lm, many = _check_args(args)
    opts = _options(args, lm)
    if lm:
        from edgeprune.pruning.language_models import parse_sizes

        label = f"{Path(args.model).name or args.model}-{Path(args.task).stem}"
        out = Path(args.out or f"results/compare-methods/{label}-{opts.ablation}")
        bench = LMBench(args.model, args.task, opts, parse_sizes(args.examples), args.dtype or "float32",
                        args.device or "cpu")
        rows = bench.run_all()
        text = _save(rows, out, opts.ablation, f"{bench.name} ({opts.ablation} ablation)", not args.no_plot,
                     bench.notes())
        _save_circuits(bench, out)
    elif many:
        out = Path(args.out or f"results/compare-methods/all-{opts.ablation}")
        rows = run_programs(selected_programs(args), opts, out, args.resume, args.jobs, not args.no_plot,
                            progress=not (args.no_progress or args.json) and sys.stderr.isatty())
        text = _save(rows, out, opts.ablation, "", False, per_program=True)
    else:
        stem = Path(args.target).name.replace(":", "-")
        out = Path(args.out or f"results/compare-methods/{stem}-{opts.ablation}")
        bench = CompiledBench(args.target, opts, program_options(args))
        rows = bench.run_all()
        text = _save(rows, out, opts.ablation, f"{bench.name} ({opts.ablation} ablation)", not args.no_plot)
        _save_circuits(bench, out)
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
    else:
        print(text, end="")
        written = "table.md, table.csv, rows.json" + (", rows.jsonl" if many else ", circuits/")
        written += "" if args.no_plot else (", a PNG per program" if many else ", PNG")
        print(f"(written to {out}/: {written})")
    return 0
