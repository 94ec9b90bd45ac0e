"""Compile (or load) a model, prune it, compare with its ground truth: the main job of the project."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compiled.model import CompiledTransformer
from edgeprune.errors import EdgePruneError
from pruning.adapters.compiled import CompiledAdapter
from pruning.data import build_data, shuffle_corruption
from pruning.defaults import recovery_config
from pruning.train import PruneConfig, PruneData, Pruner
from verify.circuit import Circuit
from verify.compare import Comparison, compare

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

    def to_dict(self) -> dict:
        return {"program": self.name, "ablation": self.ablation, "seed": self.seed, **self.comparison.to_dict(),
                "edges": len(self.comparison.recovered), "truth_edges": len(self.comparison.truth),
                "steps": self.steps, "seconds": round(self.seconds, 3), "total_seconds": round(self.total_seconds, 3)}


def _registry_spec(name: str) -> Any | None:
    try:
        from programs.registry import get_program
    except ImportError:
        return None
    try:
        return get_program(name)
    except EdgePruneError:
        return None


def load_target(target: str) -> tuple[CompiledTransformer, Any | None, Path | None]:
    """(model, registry spec or None, directory or None) for a program name or a model directory."""
    from compiled.resolve import resolve_model

    p = Path(target)
    model = resolve_model(target)
    spec = None
    for key in (model.metadata.extra.get("program"), model.metadata.name, None if p.is_dir() else target):
        if key:
            spec = _registry_spec(str(key))
            if spec is not None:
                break
    return model, spec, (p if p.is_dir() else None)


def training_inputs(model: CompiledTransformer, spec: Any | None, directory: Path | None, seed: int) -> list[list]:
    """Every valid input when few, else a seeded sample; from the registry, or the reference samples."""
    if spec is not None:
        if spec.count_inputs() <= MAX_ENUMERATED:
            return spec.enumerate_inputs()
        return spec.sample_inputs(random.Random(seed), N_SAMPLED)
    if directory is not None and (directory / "samples.json").is_file():
        from compiled.tracr_import import load_reference_samples

        return [s["input"] for s in load_reference_samples(directory)]
    raise EdgePruneError(
        f"no inputs for {model.metadata.name!r}: it is not a registered program and its directory has no samples.json; "
        "register the program in programs/registry.py"
    )


def prepare(target: str, ablation: str, seed: int) -> tuple[CompiledTransformer, Any | None, PruneData]:
    model, spec, directory = load_target(target)
    inputs = training_inputs(model, spec, directory, seed)
    corrupt = None
    if ablation == "interchange":
        corrupt = spec.corrupt if spec is not None else shuffle_corruption(inputs)
    return model, spec, build_data(model, inputs, corrupt, seed)


def recover(target: str, ablation: str = "zero", seed: int = 0, steps: int | None = None,
            run_dir: str | Path | None = None, resume: bool = False, progress: bool = False,
            **overrides: Any) -> RecoveryResult:
    """Prune ``target`` (program name or model directory) and compare with its ground truth."""
    from compiled.ground_truth import ground_truth

    t0 = time.perf_counter()
    model, spec, data = prepare(target, ablation, seed)
    name = spec.name if spec is not None else model.metadata.name
    config = recovery_config(name, getattr(spec, "pruning", None), ablation=ablation, seed=seed, steps=steps, **overrides)
    pruner = Pruner(CompiledAdapter(model), data, config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # compiled models are tiny: intra-op threads only add overhead (20 s vs 29 s on reverse)
    try:
        result = pruner.run(run_dir, resume=resume, progress=progress)
    finally:
        torch.set_num_threads(threads)
    truth = ground_truth(model, ablation)
    comparison = compare(result.circuit, truth)
    return RecoveryResult(name, ablation, seed, comparison, result.circuit, truth, result.steps, result.seconds,
                          time.perf_counter() - t0, config)
