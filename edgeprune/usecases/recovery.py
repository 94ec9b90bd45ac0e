"""Compile (or load) a model, prune it, compare with its ground truth: the main job of the project."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core.circuit import Circuit
from edgeprune.core.errors import EdgePruneError
from edgeprune.pruning.adapters.compiled import CompiledAdapter
from edgeprune.pruning.data import Corrupt, build_data, shuffle_corruption
from edgeprune.pruning.defaults import recovery_config
from edgeprune.pruning.train import PruneConfig, PruneData, Pruner
from edgeprune.verify.compare import Comparison, compare
from edgeprune.verify.verdict import Verdict

MAX_ENUMERATED = 1000  # train on every input when there are at most this many, else on a sample
N_SAMPLED = 512


@dataclass
class RecoveryResult:
    name: str
    ablation: str
    seed: int
    comparison: Comparison
    circuit: Circuit
    truth: Circuit
    steps: int
    seconds: float  # pruning time (the training loop only)
    total_seconds: float  # compile + data + prune + compare
    config: PruneConfig
    layers: int = 0  # of the compiled model
    graph_edges: int = 0  # edges of the model's computational graph (what pruning chooses from)
    judgement: Verdict | None = None  # exact / alternative / not-minimal / unfaithful (``verify.verdict``)
    check: dict | None = None  # the checker's inputs (``verify.checker.InputPlan``): exhaustive or sampled, how many

    @property
    def verdict(self) -> str:
        if self.judgement is not None:
            return self.judgement.verdict
        return "exact" if self.comparison.exact else "unjudged"

    def to_dict(self) -> dict:
        judged = self.judgement.to_dict() if self.judgement is not None else {"verdict": self.verdict}
        return {
            "program": self.name,
            "ablation": self.ablation,
            "seed": self.seed,
            **self.comparison.to_dict(),
            **judged,
            "truth_rule": self.truth.meta.get("rule", "static"),
            "edges": len(self.comparison.recovered),
            "truth_edges": len(self.comparison.truth),
            "layers": self.layers,
            "graph_edges": self.graph_edges,
            "steps": self.steps,
            "check": self.check,
            "seconds": round(self.seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
        }


def _registry_spec(name: str) -> Any | None:
    try:
        from edgeprune.programs.registry import get_program
    except ImportError:
        return None
    try:
        return get_program(name)
    except EdgePruneError:
        return None


def _own_settings(spec: Any, model: CompiledTransformer) -> Any:
    """A registry spec at the model's own vocab and length (a saved or imported model keeps its own)."""
    from edgeprune.programs.registry import sorted_vocab, with_settings

    meta = model.metadata
    vocab = sorted_vocab(meta.vocab)
    if vocab == spec.vocab and meta.max_seq_len == spec.max_seq_len:
        return spec
    return with_settings(spec, vocab, meta.max_seq_len)


def load_target(
    target: str,
    vocab: Sequence[Any] | None = None,
    max_seq_len: int | None = None,
    *,
    causal: bool = False,
    compiler: str = "own",
) -> tuple[CompiledTransformer, Any | None, Path | None]:
    """(model, program spec or None, directory or None) for a program name, a program reference or a model dir.

    A model directory is recovered on its own vocab and length: a registry
    program of the same name lends its sampler and settings, at the model's vocab.
    """
    from edgeprune.compiled.resolve import compile_spec, program_spec_for, resolve_model

    p = Path(target)
    if not p.is_dir():
        try:
            spec = program_spec_for(target, vocab, max_seq_len)
        except EdgePruneError:
            if "/" in target and ":" not in target:
                resolve_model(target)  # the "model directory does not exist" error
            raise
        return compile_spec(spec, compiler=compiler, causal=causal), spec, None
    model = resolve_model(target, vocab, max_seq_len, causal=causal, compiler=compiler)
    spec = None
    for key in (model.metadata.extra.get("program"), model.metadata.name):
        if key:
            spec = _registry_spec(str(key))
            if spec is not None:
                spec = _own_settings(spec, model)
                break
    return model, spec, p


def training_inputs(model: CompiledTransformer, spec: Any | None, directory: Path | None, seed: int) -> list[list]:
    """Every valid input when few, else a seeded sample: from the program's spec, the reference samples, or the
    model's own vocab and length."""
    if spec is not None:
        if spec.count_inputs() <= MAX_ENUMERATED:
            return spec.enumerate_inputs()
        return spec.sample_inputs(random.Random(seed), N_SAMPLED)
    if directory is not None and (directory / "samples.json").is_file():
        from edgeprune.compiled.tracr_import import load_reference_samples

        return [s["input"] for s in load_reference_samples(directory)]
    from edgeprune.verify.checker import enumerate_inputs

    meta = model.metadata
    return enumerate_inputs(
        meta.vocab, meta.max_seq_len, meta.extra.get("input_constraint"), limit=MAX_ENUMERATED, seed=seed
    )


def prepare(target: str, ablation: str, seed: int, **program: Any) -> tuple[CompiledTransformer, Any | None, PruneData]:
    model, spec, directory = load_target(target, **program)
    inputs = training_inputs(model, spec, directory, seed)
    corrupt = None
    if ablation == "interchange":
        corrupt = spec.corrupt if spec is not None else shuffle_corruption(inputs)
    return model, spec, build_data(model, inputs, corrupt, seed)


def recover(
    target: str,
    ablation: str = "zero",
    seed: int = 0,
    steps: int | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    *,
    vocab: Sequence[Any] | None = None,
    max_seq_len: int | None = None,
    causal: bool = False,
    compiler: str = "own",
    **overrides: Any,
) -> RecoveryResult:
    """Prune ``target`` (program name, ``file.py:function`` reference or model directory) and compare with its
    ground truth; ``vocab``/``max_seq_len`` override a program's own, ``compiler`` is ``own`` or ``tracr``."""
    t0 = time.perf_counter()
    model, spec, data = prepare(
        target, ablation, seed, vocab=vocab, max_seq_len=max_seq_len, causal=causal, compiler=compiler
    )
    name = spec.name if spec is not None else model.metadata.name
    overrides.setdefault("alternatives", known_alternatives(spec, ablation))
    return _prune_and_compare(
        model,
        data,
        name,
        getattr(spec, "pruning", None),
        ablation,
        seed,
        steps,
        run_dir,
        resume,
        progress,
        t0,
        overrides,
    )


def known_alternatives(spec: Any | None, ablation: str) -> list:
    """The other minimal circuits the program's spec records for ``ablation`` (``ProgramSpec.alternative_circuits``)."""
    return list((getattr(spec, "alternative_circuits", None) or {}).get(ablation, ()))


@dataclass
class ProgramRecovery:
    """``recover_program``'s answer: the compiled model, its checked ground truth and the recovered circuit."""

    model: CompiledTransformer
    spec: Any  # the ProgramSpec used (inputs, corruptions)
    truth_check: Any  # verify.checker.CheckReport of the ground truth: sufficient, every edge necessary
    result: RecoveryResult

    @property
    def circuit(self) -> Circuit:
        return self.result.circuit

    @property
    def truth(self) -> Circuit:
        return self.result.truth

    @property
    def exact(self) -> bool:
        return self.result.comparison.exact

    @property
    def verdict(self) -> str:
        v = getattr(self.result, "verdict", None)
        if v is not None:
            return v
        return "exact" if self.exact else "not exact"


def recover_program(
    program: Any,
    vocab: Sequence[Any] | None = None,
    max_seq_len: int | None = None,
    ablation: str = "zero",
    seed: int = 0,
    steps: int | None = None,
    *,
    name: str = "program",
    causal: bool = False,
    compiler: str = "own",
    check_truth: bool = True,
    **overrides: Any,
) -> ProgramRecovery:
    """Compile a program object, check its ground truth, prune it and compare: recovery without the registry.

    ``program`` is a RASP SOp (``edgeprune.programs.rasp``, or Tracr's ``rasp`` with
    ``compiler="tracr"``), a ``(program, vocab, max_seq_len)`` tuple, or a ``ProgramSpec``.
    Inputs and corruptions follow the registry's defaults (``programs/user.py``).
    """
    from edgeprune.compiled.resolve import compile_spec
    from edgeprune.programs.user import spec_from_value
    from edgeprune.verify.checker import check_ground_truth

    t0 = time.perf_counter()
    spec = spec_from_value(program, name, name, "", vocab, max_seq_len)
    model = compile_spec(spec, compiler=compiler, causal=causal)
    inputs = training_inputs(model, spec, None, seed)
    truth_check = None
    if check_truth:
        from edgeprune.compiled.ground_truth import ground_truth

        truth_check = check_ground_truth(model, ground_truth(model, ablation), ablation, inputs=inputs)
    corrupt = None
    if ablation == "interchange":  # a Tracr rasp object is not evaluated here: swap same-length inputs instead
        tracr_object = (type(spec.program).__module__ or "").startswith("tracr.")
        corrupt = shuffle_corruption(inputs) if tracr_object else spec.corrupt
    data = build_data(model, inputs, corrupt, seed)
    result = _prune_and_compare(
        model, data, spec.name, spec.pruning or None, ablation, seed, steps, None, False, False, t0, overrides
    )
    return ProgramRecovery(model, spec, truth_check, result)


def recover_model(
    model: CompiledTransformer,
    inputs: Sequence[Sequence[Any]],
    ablation: str = "zero",
    seed: int = 0,
    steps: int | None = None,
    *,
    name: str | None = None,
    corrupt: Corrupt | None = None,
    pruning: dict | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    **overrides: Any,
) -> RecoveryResult:
    """``recover`` for a model built in memory (e.g. a generated program) trained on the given inputs.

    Why: programs that are neither registered nor saved (random-program recovery)
    still go through the very same pruning settings and comparison. Interchange
    ablation uses ``corrupt`` (rng, clean) -> same-length input, else a swap
    with another input of the same length.
    """
    t0 = time.perf_counter()
    if ablation == "interchange" and corrupt is None:
        corrupt = shuffle_corruption(inputs)
    data = build_data(model, inputs, corrupt if ablation == "interchange" else None, seed)
    return _prune_and_compare(
        model,
        data,
        name or model.metadata.name,
        pruning,
        ablation,
        seed,
        steps,
        run_dir,
        resume,
        progress,
        t0,
        overrides,
    )


def _prune_and_compare(
    model: CompiledTransformer,
    data: PruneData,
    name: str,
    spec_pruning: dict | None,
    ablation: str,
    seed: int,
    steps: int | None,
    run_dir: str | Path | None,
    resume: bool,
    progress: bool,
    t0: float,
    overrides: dict,
) -> RecoveryResult:
    from edgeprune.verify.checker import Oracle, model_input_plan
    from edgeprune.verify.verdict import checked_ground_truth, judge

    alternatives = overrides.pop("alternatives", ())
    config = recovery_config(name, spec_pruning, ablation=ablation, seed=seed, steps=steps, **overrides)
    adapter = CompiledAdapter(model)
    pruner = Pruner(adapter, data, config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # compiled models are tiny: intra-op threads only add overhead (20 s vs 29 s on reverse)
    try:
        result = pruner.run(run_dir, resume=resume, progress=progress)
    finally:
        torch.set_num_threads(threads)
    # the ground truth checked on the model (derived from it where the static rule fails), and the verdict
    check_inputs, plan = model_input_plan(model, limit=MAX_ENUMERATED)
    oracle = Oracle(model, ablation, check_inputs, plan=plan)
    truth = checked_ground_truth(model, ablation, oracle=oracle)
    comparison = compare(result.circuit, truth)
    judgement = judge(
        model, result.circuit, truth, ablation, oracle=oracle, comparison=comparison, alternatives=alternatives
    )
    return RecoveryResult(
        name,
        ablation,
        seed,
        comparison,
        result.circuit,
        truth,
        result.steps,
        result.seconds,
        time.perf_counter() - t0,
        config,
        layers=model.config.n_layers,
        graph_edges=adapter.graph.n_edges,
        judgement=judgement,
        check=plan.to_dict(),
    )


def recover_recipe(
    recipe: dict, ablation: str = "zero", seed: int = 0, steps: int | None = None, **overrides: Any
) -> RecoveryResult:
    """Recover a generated program (``programs.random_programs`` recipe), trained on every input."""
    from edgeprune.compiled.compiler import compile_program
    from edgeprune.programs import random_programs

    item = random_programs.build(recipe)
    model = compile_program(item.sop, set(recipe["vocab"]), recipe["max_seq_len"], name="random_program")
    return recover_model(model, random_programs.all_inputs(recipe), ablation, seed, steps, **overrides)


def summary_row(result: RecoveryResult) -> dict:
    """JSON-ready row for tables and reports: the comparison plus both circuits' edges (for drawing)."""
    row = result.to_dict()
    row["circuit"] = [list(e) for e in result.circuit.edges]
    row["truth"] = [list(e) for e in result.truth.edges]
    return row


def _recover_job(job: dict) -> dict:
    """One program in a worker process; errors come back as rows so one bad program does not stop the rest."""
    kind = job.pop("kind")
    label = job.get("label") or job.get("target") or "random_program"
    try:
        if kind == "recipe":
            res = recover_recipe(job["recipe"], job["ablation"], job["seed"], job.get("steps"))
        else:
            res = recover(job["target"], job["ablation"], job["seed"], job.get("steps"), **job.get("program", {}))
    except EdgePruneError as exc:
        return {"program": label, "exact": False, "verdict": "error", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported in the table, and the run exits non-zero
        return {"program": label, "exact": False, "verdict": "error", "error": f"{type(exc).__name__}: {exc}"}
    row = summary_row(res)
    if job.get("label"):
        row["program"] = job["label"]
    return row


def _lost_row(job: dict) -> dict:
    return {
        "program": job.get("label") or job.get("target") or "random_program",
        "exact": False,
        "verdict": "error",
        "error": "a worker process died (killed, e.g. out of memory) before this program finished, twice; "
        "rerun it alone or with fewer --jobs",
    }


def recover_many(jobs_: Sequence[dict], jobs: int = 1) -> Iterator[tuple[int, dict]]:
    """Run recovery jobs (``{"kind": "program"|"recipe", "target"|"recipe": ..., "ablation", "seed", "steps"}``),
    ``jobs`` at a time in worker processes (``edgeprune.usecases.parallel.run_jobs``); yields ``(index, row)`` as each
    finishes."""
    from edgeprune.usecases.parallel import run_jobs

    yield from run_jobs(_recover_job, [dict(j) for j in jobs_], jobs, _lost_row)
