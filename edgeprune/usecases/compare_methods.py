"""The method comparison behind ``edgeprune compare-methods``: every registered method on one graph, as rows.

Every method runs on the engine's graph with the same ablation and data, and
every circuit is scored the same way.

Compiled programs (a program name, a model directory, ``--all`` or ``--programs``):
dangling edges dropped (``prune_dangling``), then KL to the full model (the
pruning loss: ``kl``, ``seq_kl`` for numerical programs), agreement with the
full model's decoded output (argmax at every scored position, or within 0.05
for numerical outputs), graph-exact comparison with the ground truth (checked on the
model, as ``recover`` has it) and the circuit's verdict (``verify.verdict.judge``:
exact, alternative, not-minimal or unfaithful).  Every method also ranks all edges
(EAP/EAP-IG by |score|, Edge Pruning by learned log-alpha, HAP by kept subgraph then
log-alpha then |attribution|, ACDC by each tested edge's KL rise): the ranking's ROC
curve and AUC against the ground truth (``verify.roc``) go in the row, the ranking
itself in ``scores/<method>.json`` (which ``edgeprune export --scores`` reads), and
with ``--faithfulness`` its curve at MIB's edge budgets with CPR and CMD
(``edgeprune.usecases.faithfulness``), on compiled programs and language models alike.
Methods come from the registry (``edgeprune.usecases.methods``); how each picks its circuit without looking at the ground truth:

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
method (EAP and EAP-IG as whole curves), like the paper's Figures 2 and 3; tables and plot are
rendered by ``edgeprune.usecases.comparison_report``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeprune.core.errors import EdgePruneError
from edgeprune.core.options import METHODS as METHOD_NAMES
from edgeprune.usecases import comparison_report as report
from edgeprune.usecases.methods import Row, run_methods

CURVE_POINTS = 40  # sparsities at which ranked methods are drawn (compiled programs)
LM_CURVE_POINTS = 20  # fewer on language models: each point is an evaluation of the held-out split
LM_STEPS = 400  # a comparison on small models; `edgeprune prune` uses the paper's 3000
LM_BATCH_SIZE = 32
ROWS_FILE = "rows.jsonl"
OPTIONS_FILE = "options.json"


@dataclass
class Options:
    methods: tuple[str, ...] = METHOD_NAMES
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
    faithfulness: bool = False  # MIB's faithfulness curves, CPR and CMD of every ranking (both ablation modes)
    plot_format: str = "png"  # png or svg

    @classmethod
    def from_dict(cls, d: dict) -> Options:
        """Back from ``asdict`` (a worker's job): tuples came as lists."""
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


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


def _finite(x: float | None) -> float | None:
    """NaN and infinities as None: rows go to JSON, which has no NaN."""
    return None if x is None or not math.isfinite(x) else float(x)


def attribution_ranking(graph, scores) -> dict:
    """EAP/EAP-IG: |score|, the order their top-k cuts take."""
    return {e: abs(float(s)) for e, s in zip(graph.edges, scores.scores.tolist())}


def gate_ranking(masks) -> dict:
    """Edge Pruning: the learned log-alpha of every edge that has one (the gate's openness)."""
    return dict(zip(masks.graph.edges, masks.edge_log_alpha.detach().float().cpu().tolist()))


def hap_ranking(graph, res) -> dict:
    """HAP: the kept subgraph first, inside it by learned log-alpha, outside it by |attribution|."""
    from edgeprune.verify.roc import lexicographic_scores

    kept = {e: 1.0 for e in res.subset}
    attribution = attribution_ranking(graph, res.scores)
    return lexicographic_scores(kept, gate_ranking(res.prune.masks), attribution, universe=graph.edges)


def acdc_ranking(res) -> dict:
    """ACDC: each tested edge's KL rise when removed (kept edges rose by more than tau); untested edges last."""
    return {(e["edge"][0], e["edge"][1]): float(e["delta"]) for e in res.log}


def _hap_subtarget(sparsity: float, keep_fraction: float, n_edges: int) -> float:
    """The pruner's sparsity counts kept edges only: the global target translated to the kept subgraph."""
    kept = max(1, math.ceil(keep_fraction * n_edges))
    return min(1.0, max(0.0, 1.0 - (1.0 - sparsity) * n_edges / kept))


class _Bench:
    """The method loop shared by compiled programs and language models; subclasses score and run methods."""

    name: str
    opts: Options
    scorer: Any  # edgeprune.pruning.scoring.CircuitScorer
    adapter: Any
    data: Any
    graph: Any
    circuits: dict  # file stem -> Circuit as scored

    def row(self, method: str, setting: str, circuit: Any, clock: Any, key: str | None = None, **extra: Any) -> Row:
        raise NotImplementedError

    def run_ep(self, sparsity: float | None = None) -> Row:
        raise NotImplementedError

    rankings: dict  # file stem -> {edge: score}: each method's ranking of the edges (larger = kept first)

    def hap_row(self, setting: str, circuit: Any, clock: Any, key: str | None, steps: int, res: Any) -> Row:
        """HAP's row: the circuit scored as any other, with its two phases' times and kept-edge count."""
        return self.row(
            "hap",
            setting,
            circuit,
            clock,
            key,
            steps=steps,
            attribution_seconds=res.attribution_seconds,
            prune_seconds=res.prune_seconds,
            kept=len(res.subset),
            ranking=hap_ranking(self.graph, res),
        )

    # ----- faithfulness at MIB's budgets (edgeprune.usecases.faithfulness) -----------------
    def faith_metric(self, edges: list) -> float:
        """m of the circuit that keeps exactly ``edges``."""
        raise NotImplementedError

    def faith_bounds(self) -> tuple[float, float]:
        """(m(full), m(empty))."""
        raise NotImplementedError

    def faithfulness_of(self, ranking: dict) -> dict:
        """Both ablation modes' curves of one ranking, as dicts (``FaithfulnessCurve.to_dict``)."""
        from edgeprune.usecases.faithfulness import MODES, faithfulness_curve, ranking_order

        order = ranking_order(ranking, self.graph.edges)
        full, empty = self.faith_bounds()
        return {
            mode: faithfulness_curve(
                order, self.faith_metric, full, empty, mode, embeddings=self.graph.embeddings, ablation=self.ablation
            ).to_dict()
            for mode in MODES
        }

    def ranked_fields(self, ranking: dict | None, stem: str, main: bool, extra: dict) -> dict:
        """Keep ``ranking`` (for the scores/ files); on a main row with --faithfulness add its curves to ``extra``
        and return the row's cpr and cmd (the complement mode's)."""
        if ranking is None:
            return {}
        self.rankings[stem] = ranking
        if not (self.opts.faithfulness and main):
            return {}
        curves = self.faithfulness_of(ranking)
        extra["faithfulness"] = curves
        return {"cpr": _finite(curves["complement"]["cpr"]), "cmd": _finite(curves["complement"]["cmd"])}

    def run_hap(self, sparsity: float | None = None) -> Row:
        raise NotImplementedError

    def run_ranked(self, method: str) -> list[Row]:
        raise NotImplementedError

    def run_acdc(self) -> Row:
        raise NotImplementedError

    # ----- the Bench interface of the method registry -----------------------------
    @property
    def ablation(self) -> str:
        return self.opts.ablation

    @property
    def sparsities(self) -> tuple[float, ...]:
        return self.opts.sparsities

    def score(self, mask) -> float:
        """KL of a circuit (dense mask) on the bench's training data: the one circuit scorer."""
        return self.scorer(mask)

    def run_all(self) -> list[Row]:
        """Every method of ``opts.methods``, as the registry runs it."""
        return run_methods(self, self.opts.methods)

    def notes(self) -> list[str]:
        return []


class CompiledBench(_Bench):
    """One compiled program: data, ground truth and the shared circuit scorer."""

    def __init__(self, target: str, opts: Options, program: dict | None = None):
        from edgeprune.core.dangling import prune_dangling
        from edgeprune.pruning.adapters.compiled import CompiledAdapter
        from edgeprune.pruning.scoring import CircuitScorer
        from edgeprune.usecases.recovery import MAX_ENUMERATED, known_alternatives, prepare
        from edgeprune.verify.checker import Oracle, model_inputs
        from edgeprune.verify.verdict import checked_ground_truth

        self.opts = opts
        self.model, self.spec, self.data = prepare(target, opts.ablation, opts.seed, **(program or {}))
        self.name = self.spec.name if self.spec is not None else self.model.metadata.name
        self.adapter = CompiledAdapter(self.model)
        self.graph = self.adapter.graph
        # the ground truth as recover has it: checked on the model (derived from it where the static rule
        # fails); every circuit's verdict comes from the same oracle (verify.verdict)
        self.oracle = Oracle(self.model, opts.ablation, model_inputs(self.model, limit=MAX_ENUMERATED))
        self.truth = checked_ground_truth(self.model, opts.ablation, oracle=self.oracle)
        self.alternatives = known_alternatives(self.spec, opts.ablation)
        self.truth_set = prune_dangling(self.truth.edges, self.graph.embeddings, opts.ablation)
        self.ev = self.scorer = CircuitScorer(self.adapter, self.data, opts.ablation)
        self.empty_kl = self.ev.empty()
        self.full_out = self.ev.outputs(self.graph.allowed_mask())
        self.scored = self.adapter.loss_mask(self.data.ids, self.data.key_mask)
        self.curves: dict[str, list[tuple[float, float]]] = {}
        self.circuits: dict = {}  # file stem -> Circuit as scored (dangling edges dropped)
        self.rankings: dict = {}
        self._full_kl: float | None = None

    # ----- scoring a circuit -------------------------------------------------------
    def faith_metric(self, edges: list) -> float:
        return -self.kl_of(edges)  # m = -KL, so f = 1 - KL(C) / KL(empty)

    def faith_bounds(self) -> tuple[float, float]:
        if self._full_kl is None:
            self._full_kl = self.kl_of(self.graph.edges)
        return -self._full_kl, -self.empty_kl

    def kl_of(self, edges) -> float:
        from edgeprune.pruning.attribution import circuit_mask

        return self.ev(circuit_mask(self.graph, edges))

    def row(self, method: str, setting: str, circuit, clock: _Clock, key: str | None = None, **extra) -> Row:
        from edgeprune.core.circuit import Circuit
        from edgeprune.core.dangling import prune_dangling
        from edgeprune.pruning.attribution import circuit_mask
        from edgeprune.verify.compare import compare
        from edgeprune.verify.roc import roc_curve
        from edgeprune.verify.verdict import judge

        ranking = extra.pop("ranking", None)
        scored: dict[str, Any] = self.ranked_fields(ranking, key or method, key is None, extra)
        if ranking is not None:
            fpr, tpr, auc = roc_curve(ranking, self.truth_set, self.graph.edges)
            scored["auc"] = _finite(auc)
            extra["roc"] = [[a, b] for a, b in zip(fpr, tpr)]
        edges = sorted(prune_dangling(circuit.edges, self.graph.embeddings, self.opts.ablation))
        out = self.ev.outputs(circuit_mask(self.graph, edges))
        if self.adapter.output_kind == "categorical":
            same = (out.argmax(-1) == self.full_out.argmax(-1)) | ~self.scored
        else:
            same = ((out - self.full_out).abs() <= 0.05) | ~self.scored
        agreement = float(same.all(-1).float().mean())
        kl = self.kl_of(edges)
        cmp = compare(circuit, self.truth)
        verdict = judge(
            self.model,
            circuit,
            self.truth,
            self.opts.ablation,
            oracle=self.oracle,
            comparison=cmp,
            alternatives=self.alternatives,
        )
        n = self.graph.n_edges
        self.circuits[key or method] = Circuit(
            edges=list(edges),
            model=self.graph.model,
            meta={**circuit.meta, "method": method, "ablation": self.opts.ablation, "n_edges_total": n},
        )
        return Row(
            self.name,
            method,
            setting,
            len(edges),
            1 - len(edges) / n,
            kl,
            agreement,
            cmp.exact,
            len(cmp.truth),
            clock.wall,
            clock.cpu,
            extra=extra,
            verdict=verdict.verdict,
            **scored,
        )

    # ----- methods -------------------------------------------------------------------
    def ep_config(self, steps: int | None, sparsity: float | None = None):
        from edgeprune.pruning.defaults import recovery_config

        over = {}
        if sparsity is not None:
            over = {"edge_target": sparsity, "edge_sparsity": sparsity}
        return recovery_config(
            self.name,
            getattr(self.spec, "pruning", None),
            ablation=self.opts.ablation,
            seed=self.opts.seed,
            steps=steps,
            **over,
        )

    def run_ep(self, sparsity: float | None = None) -> Row:
        from edgeprune.pruning.train import Pruner

        cfg = self.ep_config(self.opts.steps, sparsity)
        with _Clock() as clk:
            res = Pruner(self.adapter, self.data, cfg).run(progress=False)
        setting = f"{cfg.steps} steps" + (f", sparsity {sparsity:g}" if sparsity is not None else "")
        key = None if sparsity is None else f"ep-sparsity-{sparsity:g}"
        return self.row("ep", setting, res.circuit, clk, key, steps=cfg.steps, ranking=gate_ranking(res.masks))

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
        setting = f"{o.hap_method} keep {o.hap_keep:g}, {cfg.steps} steps" + (
            f", sparsity {sparsity:g}" if sparsity is not None else ""
        )
        key = None if sparsity is None else f"hap-sparsity-{sparsity:g}"
        return self.hap_row(setting, res.circuit, clk, key, cfg.steps, res)

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
        ranking = attribution_ranking(self.graph, scores)
        rows = [
            self.row(
                method,
                f"smallest k with KL <= {o.kl_tol:g} x empty (k={k})",
                circuit,
                clk,
                k=k,
                curve=[list(p) for p in curve],
                ranking=ranking,
            )
        ]
        for s in o.sparsities:
            with _Clock() as c2:
                circ = scores.at_sparsity(s)
            rows.append(
                self.row(method, f"top-k at sparsity {s:g}", circ, c2, f"{method}-sparsity-{s:g}", ranking=ranking)
            )
        return rows

    def run_acdc(self) -> Row:
        from edgeprune.pruning.acdc import acdc

        with _Clock() as clk:
            res = acdc(
                self.adapter, self.data, self.opts.ablation, self.opts.acdc_tau, relative=True, evaluator=self.ev
            )
        return self.row(
            "acdc",
            f"tau {self.opts.acdc_tau:g} x empty KL",
            res.circuit,
            clk,
            tested=res.tested,
            ranking=acdc_ranking(res),
        )

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


def task_kl(adapter, data, ablation: str, batch_size: int):
    """ACDC's metric on a task: KL to the full model summed over the task's scored positions, mean over examples.

    The same loss the pruner trains on (``kl`` at ``PruneData.loss_mask``): the one circuit scorer
    at the task's positions (``pruning.acdc``'s default scores every position the adapter marks).
    """
    from edgeprune.pruning.scoring import CircuitScorer

    return CircuitScorer(adapter, data, ablation, "kl", batch_size, scored="task")


class LMBench(_Bench):
    """A ``transformers`` language model on a task: no ground truth, so rows carry KL and the task's metrics.

    Every method trains or scores on the train split; circuits are scored on the test split (the
    validation split when a task has no test examples) with ``evaluate_circuit``, as
    ``edgeprune evaluate`` does, so a row's numbers match ``evaluate`` of its circuit file.
    """

    def __init__(self, model: str, task: str, opts: Options, sizes=None, dtype: str = "float32", device: str = "cpu"):
        from edgeprune.pruning.language_models import (
            DEFAULT_TARGET_SPARSITY,
            load_model,
            load_task,
            prune_data,
            task_key,
        )
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
            raise EdgePruneError(
                f"task {self.task} has no test or validation examples to score circuits on; "
                'give some (--examples TRAIN,VAL,TEST, or "split" entries in the JSONL file)'
            )
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
        self.rankings: dict = {}
        self._scorer = None
        self.full_metrics = self.metrics(None)
        self.empty_metrics = self.metrics(self.circuit([], "empty"))

    # ----- scoring a circuit -------------------------------------------------------
    @property
    def scorer(self):
        """KL at the task's positions on the training data (ACDC's metric), built on first use."""
        if self._scorer is None:
            self._scorer = task_kl(self.adapter, self.data, self.opts.ablation, self.batch_size)
        return self._scorer

    def circuit(self, edges, method: str):
        from edgeprune.core.circuit import Circuit

        meta = {
            "method": method,
            "ablation": self.opts.ablation,
            "n_edges_total": self.graph.n_edges,
            "task": self.task,
            "source": self.loaded.source,
        }  # model_id: stamped on the saved circuits only
        return Circuit(edges=list(edges), model=self.graph.model, meta=meta)

    def metrics(self, circuit) -> dict[str, float]:
        from edgeprune.pruning.language_models import evaluate_circuit

        return evaluate_circuit(self.adapter, self.eval_batch, circuit, self.key, self.opts.ablation, self.batch_size)

    def faith_metric(self, edges: list) -> float:
        return float(self.metrics(self.circuit(edges, "faithfulness"))[self.metric_name])

    def faith_bounds(self) -> tuple[float, float]:
        return float(self.full_metrics[self.metric_name]), float(self.empty_metrics[self.metric_name])

    def row(self, method: str, setting: str, circuit, clock: _Clock, key: str | None = None, **extra) -> Row:
        scored = self.ranked_fields(extra.pop("ranking", None), key or method, key is None, extra)
        m = self.metrics(circuit)
        n = self.graph.n_edges
        circuit.meta["model_id"] = self.model_id  # after scoring: evaluate_circuit would hash the weights again
        self.circuits[key or method] = circuit
        return Row(
            self.name,
            method,
            setting,
            len(circuit),
            1 - len(circuit) / n,
            m["kl"],
            m.get("exact_match"),
            None,
            None,
            clock.wall,
            clock.cpu,
            extra={**extra, "metrics": m},
            metric=m[self.metric_name],
            metric_name=self.metric_name,
            **scored,
        )

    def notes(self) -> list[str]:
        f, e = self.full_metrics, self.empty_metrics
        name = self.metric_name
        return [
            f"{self.name}: circuits scored on the {self.split} split ({len(self.eval_batch)} examples), "
            f"{self.opts.ablation} ablation, {self.graph.n_edges} edges; full model {name} {f[name]:.4g}; "
            f"empty circuit KL {e['kl']:.4g}, {name} {e[name]:.4g}"
        ]

    # ----- methods -------------------------------------------------------------------
    def config(self, steps: int | None, sparsity: float):
        from edgeprune.pruning.language_models import lm_config

        return lm_config(
            sparsity,
            steps=steps or LM_STEPS,
            batch_size=self.batch_size,
            ablation=self.opts.ablation,
            seed=self.opts.seed,
        )

    def run_ep(self, sparsity: float | None = None) -> Row:
        from edgeprune.pruning.language_models import cut_at_sparsity
        from edgeprune.pruning.train import Pruner

        s = self.target if sparsity is None else sparsity
        cfg = self.config(self.opts.steps, s)
        with _Clock() as clk:
            res = Pruner(self.adapter, self.data, cfg).run(progress=False)
            cut = cut_at_sparsity(res.masks, s)
        key = None if sparsity is None else f"ep-sparsity-{s:g}"
        return self.row(
            "ep",
            f"{cfg.steps} steps, sparsity {s:g}",
            self.circuit(cut.edges, "ep"),
            clk,
            key,
            steps=cfg.steps,
            ranking=gate_ranking(res.masks),
        )

    def run_hap(self, sparsity: float | None = None) -> Row:
        from edgeprune.pruning.hap import hap
        from edgeprune.pruning.language_models import cut_at_sparsity

        o = self.opts
        s = self.target if sparsity is None else sparsity
        sub = _hap_subtarget(s, o.hap_keep, self.graph.n_edges)
        cfg = self.config(o.hap_steps or o.steps, sub)
        with _Clock() as clk:
            res = hap(
                self.adapter,
                self.data,
                cfg,
                keep_fraction=o.hap_keep,
                method=o.hap_method,
                metric=self.answer,
                ig_steps=o.ig_steps,
            )
            cut = cut_at_sparsity(res.prune.masks, sub)  # the masks cover the kept edges only
        outside = set(cut.edges) - set(res.subset)
        if outside:  # the contract of HAP; a failure here is a bug, not a user error
            raise RuntimeError(f"HAP returned edges outside its kept subgraph: {sorted(outside)}")
        key = None if sparsity is None else f"hap-sparsity-{s:g}"
        self.subsets[key or "hap"] = list(res.subset)
        setting = f"{o.hap_method} keep {o.hap_keep:g}, {cfg.steps} steps, sparsity {s:g}"
        return self.hap_row(setting, self.circuit(cut.edges, "hap"), clk, key, cfg.steps, res)

    def run_ranked(self, method: str) -> list[Row]:
        from edgeprune.pruning.attribution import edge_scores

        o, n = self.opts, self.graph.n_edges

        def top(s: float) -> tuple[int, list]:
            k = int(round((1.0 - s) * n))  # exactly k edges, as Edge Pruning's cut (dangling ones kept)
            return k, scores.top_edges(k)

        with _Clock() as clk:
            scores = edge_scores(
                self.adapter, self.data, method, o.ablation, self.answer, steps=o.ig_steps, batch_size=self.batch_size
            )
            k, edges = top(self.target)
        curve = []
        for i in range(LM_CURVE_POINTS + 1):
            kk = int(round(n * i / LM_CURVE_POINTS))
            curve.append((1 - kk / n, self.metrics(self.circuit(scores.top_edges(kk), method))["kl"]))
        self.curves[method] = curve
        rows = [
            self.row(
                method,
                f"top-k at sparsity {self.target:g} (k={k})",
                self.circuit(edges, method),
                clk,
                k=k,
                curve=[list(p) for p in curve],
                ranking=attribution_ranking(self.graph, scores),
            )
        ]
        for s in o.sparsities:
            with _Clock() as c2:
                k, edges = top(s)
            rows.append(
                self.row(
                    method,
                    f"top-k at sparsity {s:g} (k={k})",
                    self.circuit(edges, method),
                    c2,
                    f"{method}-sparsity-{s:g}",
                    k=k,
                )
            )
        return rows

    def run_acdc(self) -> Row:
        from edgeprune.pruning.acdc import acdc

        o = self.opts
        with _Clock() as clk:  # the evaluator is ACDC's own cost here: no other method uses it
            ev = self.scorer  # built here, the first time: its cost is ACDC's
            res = acdc(self.adapter, self.data, o.ablation, o.acdc_tau, relative=True, evaluator=ev)
        return self.row(
            "acdc",
            f"tau {o.acdc_tau:g} x empty KL",
            self.circuit(res.circuit.edges, "acdc"),
            clk,
            tested=res.tested,
            ranking=acdc_ranking(res),
        )


def save(
    rows: list[Row],
    out: Path,
    ablation: str,
    title: str,
    plot_it: bool,
    notes: list[str] | None = None,
    per_program: bool = False,
    fmt: str = "png",
) -> tuple[str, bool]:
    """table.md, table.csv, rows.json (and the plots when asked and matplotlib is there) in ``out``;
    returns table.md's text and whether the plots were drawn."""
    text = report.write_tables(rows, out, ablation, notes, per_program)
    drawn = plot_it and report.try_plots(rows, out, title, fmt)
    return text, drawn


def save_circuits(bench: _Bench, out: Path) -> None:
    """Each circuit as scored, for ``edgeprune draw`` (and ``evaluate`` on a language model)."""
    if not bench.circuits:
        return
    (out / "circuits").mkdir(parents=True, exist_ok=True)
    for stem, circuit in bench.circuits.items():
        circuit.save(out / "circuits" / f"{stem}.json")
    if bench.rankings:  # every edge's score per method: `edgeprune export --scores` writes them into MIB's format
        from edgeprune.core.mib_format import scores_to_dict

        (out / "scores").mkdir(exist_ok=True)
        for stem, ranking in bench.rankings.items():
            meta = {"method": stem, "ablation": bench.ablation, "larger": "ranked first"}
            doc = scores_to_dict(ranking, bench.graph.model, meta)
            (out / "scores" / f"{stem}.json").write_text(json.dumps(doc) + "\n")


# ----- several programs: rows.jsonl, --resume, --jobs -------------------------------------
_ROW_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,)}


def _row_value_ok(annotation: str, value: Any) -> bool:
    """Whether a rows.jsonl value has its Row field's declared type (a damaged line would crash the tables)."""
    parts = [t.strip() for t in annotation.split("|")]
    if value is None:
        return "None" in parts
    if isinstance(value, bool) and "bool" not in parts:
        return False
    return any(isinstance(value, _ROW_TYPES.get(t, ())) for t in parts)


def read_rows(path: Path) -> list[Row]:
    """The rows of an earlier run's rows.jsonl; a line cut short by a killed run is skipped (and said so)."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(Row)}
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            kept = {k: v for k, v in d.items() if k in fields}
            if not all(_row_value_ok(fields[k], v) for k, v in kept.items()):
                raise TypeError("a field of the wrong type")
            rows.append(Row(**kept))
        except (ValueError, TypeError, AttributeError, RecursionError):
            bad += 1
    if bad:
        print(f"compare-methods: skipped {bad} unreadable line(s) of {path}; their programs run again", file=sys.stderr)
    return rows


def registry_order(rows: list[Row]) -> list[Row]:
    """Programs in registry order (others after them, by name), methods in registry order, then as they came."""
    from edgeprune.programs.registry import program_names

    prog = {n: i for i, n in enumerate(program_names())}
    meth: dict[str, int] = {m: i for i, m in enumerate(METHOD_NAMES)}
    return sorted(
        rows,
        key=lambda r: (
            prog.get(r.program, len(prog)),
            r.program if r.program not in prog else "",
            meth.get(r.method, len(meth)),
        ),
    )


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
    return [
        asdict(
            Row(
                job["name"],
                "-",
                "",
                error="a worker process died (killed, e.g. out of memory) before this "
                "program finished, twice; rerun with --resume and fewer --jobs",
            )
        )
    ]


def _check_options(out: Path, opts: Options, resume: bool) -> None:
    """Rows of one table must share ablation and seed: --resume refuses a directory written with others."""
    path = out / OPTIONS_FILE
    now = {"ablation": opts.ablation, "seed": opts.seed}
    if resume and path.exists():
        try:
            before = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        except ValueError:
            before = {}
        if not isinstance(before, dict):  # a damaged options file constrains nothing
            before = {}
        diff = [k for k in now if k in before and before[k] != now[k]]
        if diff:
            was = ", ".join(f"--{k} {before[k]}" for k in diff)
            raise EdgePruneError(
                f"--resume: the rows in {out} were made with {was}, this run has "
                f"{', '.join(f'--{k} {now[k]}' for k in diff)}; resume with the same options or "
                "choose another --out"
            )
    path.write_text(json.dumps(now) + "\n")


def run_programs(
    names: list[str],
    opts: Options,
    out: Path,
    resume: bool = False,
    jobs: int = 1,
    plot_it: bool = True,
    progress: bool = False,
) -> list[Row]:
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
    todo: list[dict[str, Any]] = []
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
    with (
        path.open(mode) as f,
        tqdm(total=len(todo), desc="compare-methods", file=sys.stderr, disable=not progress) as bar,
    ):
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
                plot_it = report.try_plots(
                    [r for r in rows if r.program == name],
                    out / name,
                    f"{name} ({opts.ablation} ablation)",
                    opts.plot_format,
                )  # False: no matplotlib, stop trying
    return registry_order(rows)


# ----- one call per kind of target -------------------------------------------------------
@dataclass
class Comparison:
    """What a comparison wrote: its rows (registry order), table.md's text, and whether plots were drawn."""

    rows: list[Row]
    text: str
    plotted: bool


def compare_program(
    target: str, opts: Options, out: Path, plot_it: bool = True, program: dict | None = None
) -> Comparison:
    """One compiled program (a name, a program reference or a model directory): rows, tables, plot, circuits."""
    bench = CompiledBench(target, opts, program)
    rows = bench.run_all()
    text, drawn = save(
        rows, out, opts.ablation, f"{bench.name} ({opts.ablation} ablation)", plot_it, fmt=opts.plot_format
    )
    save_circuits(bench, out)
    return Comparison(rows, text, drawn)


def compare_language_model(
    model: str,
    task: str,
    opts: Options,
    out: Path,
    plot_it: bool = True,
    sizes=None,
    dtype: str = "float32",
    device: str = "cpu",
) -> Comparison:
    """A language model on a task: rows scored on the held-out split, tables, plot, circuits."""
    bench = LMBench(model, task, opts, sizes, dtype, device)
    rows = bench.run_all()
    text, drawn = save(
        rows,
        out,
        opts.ablation,
        f"{bench.name} ({opts.ablation} ablation)",
        plot_it,
        bench.notes(),
        fmt=opts.plot_format,
    )
    save_circuits(bench, out)
    return Comparison(rows, text, drawn)


def compare_programs(
    names: list[str],
    opts: Options,
    out: Path,
    resume: bool = False,
    jobs: int = 1,
    plot_it: bool = True,
    progress: bool = False,
) -> Comparison:
    """Several programs: rows.jsonl as they finish (``resume`` continues it), a plot per program, one table."""
    rows = run_programs(names, opts, out, resume, jobs, plot_it, progress)
    text, _ = save(rows, out, opts.ablation, "", False, per_program=True)
    return Comparison(rows, text, plot_it and report.plot_available())
